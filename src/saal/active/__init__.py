"""Active learning: the labeled/unlabeled split, query heuristics, the oracle, annotation batches.

* :class:`ActiveSet` -- which pool ids are labeled, when and by whom (JSON-saveable);
* :mod:`.heuristics` -- ``random``, ``entropy``, ``bald``, ``variance``,
  ``representative``, ``uncertainty-diversity`` (:func:`get_heuristic`);
* :class:`SimulatedOracle` -- ground-truth masks on request, for simulated rounds;
* :func:`export_batch` / :func:`import_batch` -- a folder for human annotators and
  the checked masks that come back.
"""

from .annotate import export_batch, import_batch, import_masks, read_manifest
from .heuristics import (BALD, QUERY_STRATEGIES, Entropy, Heuristic, Random, Representative,
                         UncertaintyDiversity, Variance, get_heuristic)
from .loop import LoopConfig, LoopDir, run_simulated
from .oracle import SimulatedOracle
from .pool import ActiveSet

__all__ = [
    "LoopConfig", "LoopDir", "run_simulated",
    "ActiveSet", "Heuristic", "Random", "Entropy", "BALD", "Variance", "Representative", "UncertaintyDiversity",
    "QUERY_STRATEGIES", "get_heuristic", "SimulatedOracle", "export_batch", "import_batch", "import_masks",
    "read_manifest",
]
