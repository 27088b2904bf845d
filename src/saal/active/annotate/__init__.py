"""Annotation batches for people: export the queried images (with the model's proposals), import their masks.

* :mod:`.folder` -- the batch folder every format starts from: images, ``manifest.csv``,
  a README, the model's ``predictions/``, an empty ``masks/`` for PNG masks;
* :mod:`.preannotate` -- the newest model's masks and per-image uncertainty;
* :mod:`.labelstudio`, :mod:`.cvat` -- the files those tools import, and reading their exports;
* :mod:`.formats` -- choosing the tool, and importing whatever comes back through the same checks.
"""

from .folder import export_batch, import_batch, import_masks, read_manifest
from .formats import FORMATS, format_writer, import_annotations_from, is_batch_folder
from .preannotate import Preannotations, preannotate

__all__ = ["export_batch", "import_batch", "import_masks", "read_manifest", "Preannotations", "preannotate",
           "FORMATS", "format_writer", "import_annotations_from", "is_batch_folder"]
