"""Cold-start selection without labels: pool features, strategies, manifest, pictures.

Typical use::

    feats = extract_features(model, data)               # (N, D), dataset order
    sel = make_cold_start("saal", n_clusters=10).select(feats, budget=40, seed=0)
    write_selection_manifest(run / "selection.csv", sel, data.ids, data.sources)

See docs/selection.md for the criterion, the strategies and the incremental semantics.
"""

from saal.selection.base import ColdStartStrategy, Extension, Selection
from saal.selection.cluster import SaalStrategy, SaalTypicalStrategy, allocate
from saal.selection.coverage import (
    EXPECTED_UNIFORM,
    CoverageRow,
    CoverageTable,
    HitRate,
    coverage_table,
    group_coverage,
    hit_probability,
    hit_rate,
)
from saal.selection.features import (
    extract_features,
    l2_normalize,
    load_features,
    model_fingerprint,
    normalise_features,
    pca_reduce,
    save_features,
    standardize,
    whiten,
)
from saal.selection.kcenter import KCenterStrategy, farthest_first
from saal.selection.kmeans import Clustering, fit_kmeans
from saal.selection.manifest import ManifestRow, read_selection_manifest, write_selection_manifest
from saal.selection.probcover import ProbCoverStrategy
from saal.selection.registry import COLD_STARTS, get_cold_start, make_cold_start
from saal.selection.typiclust import TypiclustStrategy
from saal.selection.uniform import RandomStrategy

__all__ = [
    "ColdStartStrategy", "Extension", "Selection", "COLD_STARTS", "get_cold_start", "make_cold_start",
    "SaalStrategy", "SaalTypicalStrategy", "RandomStrategy", "KCenterStrategy", "farthest_first",
    "TypiclustStrategy", "ProbCoverStrategy",
    "Clustering", "fit_kmeans", "allocate",
    "extract_features", "l2_normalize", "normalise_features", "pca_reduce", "standardize", "whiten",
    "save_features", "load_features", "model_fingerprint",
    "ManifestRow", "read_selection_manifest", "write_selection_manifest",
    "group_coverage", "coverage_table", "hit_probability", "hit_rate", "HitRate", "CoverageRow", "CoverageTable",
    "EXPECTED_UNIFORM",
]
