"""Stage 3: fine-tune the U-Net for lesion segmentation, predict, and evaluate.

* :mod:`.losses`   -- CE, soft Dice, 0.5 * (CE + Dice);
* :mod:`.metrics`  -- per-image Dice, IoU, HD95, ASSD, precision, recall;
* :mod:`.augment`  -- batched flips / 90-degree rotations / small affine;
* :mod:`.trainer`  -- step-based training from a preset (:class:`SegConfig`);
* :mod:`.predict`  -- streaming softmax and MC-dropout predictions;
* :mod:`.evaluate` -- test-set evaluation, CSV rows and overlay figures.
"""

from .augment import AUGMENTATIONS, augment_batch
from .evaluate import EvalResult, evaluate, save_prediction_overlays
from .losses import LOSSES, make_loss
from .metrics import METRICS, overlap_metrics, segmentation_metrics, summarise, surface_distances
from .predict import iter_predictions, predict_proba
from .trainer import INIT_MODES, SegConfig, TrainLog, train_segmentation

__all__ = [
    "AUGMENTATIONS", "INIT_MODES", "LOSSES", "METRICS", "EvalResult", "SegConfig", "TrainLog", "augment_batch",
    "evaluate", "iter_predictions", "make_loss", "overlap_metrics", "predict_proba", "save_prediction_overlays",
    "segmentation_metrics", "summarise", "surface_distances", "train_segmentation",
]
