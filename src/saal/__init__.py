"""saal: self-supervised assisted active learning for skin lesion segmentation.

The pipeline, one sub-package a stage, each reading and writing plain files in a
run directory:

``saal.data`` -> ``saal.ssl`` -> ``saal.selection`` -> ``saal.segmentation`` /
``saal.active`` -> ``saal.experiments``.
"""

__version__ = "0.1.0"
