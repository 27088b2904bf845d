"""Annotation batches for people: export the queried images (with the model's proposals), import their masks.

* :mod:`.folder` -- the batch folder every format starts from: images, ``manifest.csv``,
  a README, an empty ``masks/`` for PNG masks;
* :mod:`.preannotate` -- the newest model's masks and per-image uncertainty.
"""

from .folder import export_batch, import_batch, import_masks, read_manifest
from .preannotate import Preannotations, preannotate

__all__ = ["export_batch", "import_batch", "import_masks", "read_manifest", "Preannotations", "preannotate"]
