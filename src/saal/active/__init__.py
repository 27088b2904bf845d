"""Active learning: the labeled/unlabeled split, uncertainty heuristics, queries, the oracle, annotation batches.

* :class:`ActiveSet` -- which pool ids are labeled, when and by whom (JSON-saveable);
* :mod:`.heuristics` -- one uncertainty score per image: ``entropy``, ``bald``, ``variance``;
* :mod:`.queries` -- the next batch: ``random``, ``entropy`` / ``bald`` / ``variance`` (top scores),
  ``uncertainty-diversity``, ``representative``, ``cold-start-rule``, ``cluster-entropy``
  (:func:`make_query`);
* :class:`SimulatedOracle` -- ground-truth masks on request, for simulated rounds;
* :func:`export_batch` / :func:`import_batch` -- a folder for human annotators and
  the checked masks that come back;
* :mod:`.loop` -- the rounds themselves (:class:`LoopConfig`, :func:`run_simulated`).
"""

from .annotate import export_batch, import_batch, import_masks, read_manifest
from .heuristics import BALD, HEURISTICS, REDUCTIONS, Entropy, Heuristic, Variance
from .loop import INITS, LoopConfig, LoopDir, run_simulated
from .oracle import SimulatedOracle
from .pool import ActiveSet
from .queries import (QUERIES, ClusterUncertainty, Diverse, Query, RandomQuery, Representative, TopScores,
                      make_query)

__all__ = [
    "LoopConfig", "LoopDir", "run_simulated", "INITS",
    "ActiveSet", "Heuristic", "Entropy", "BALD", "Variance", "HEURISTICS", "REDUCTIONS",
    "Query", "RandomQuery", "TopScores", "Diverse", "Representative", "ClusterUncertainty", "QUERIES", "make_query",
    "SimulatedOracle", "export_batch", "import_batch", "import_masks", "read_manifest",
]
