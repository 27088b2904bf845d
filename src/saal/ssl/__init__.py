"""Self-supervised pretraining of the U-Net on the unlabeled pool (:mod:`.pretrain`).

The objectives (:mod:`.objectives`): Models Genesis restoration of damaged images
(:mod:`.transforms`; trains encoder and decoder), SimCLR's contrastive loss on
two views of each image (:mod:`.views`, :mod:`.contrastive`; trains the encoder
only), or both.
"""

from .objectives import OBJECTIVES, describe_objective, sample_columns
from .pretrain import (
    PretrainConfig,
    PretrainResult,
    load_pretrained,
    load_result,
    pretrain,
    split_validation,
)
from .transforms import (
    GenesisConfig,
    corrupt,
    local_pixel_shuffle,
    nonlinear_intensity,
    paint,
    random_flip,
)

__all__ = [
    "OBJECTIVES", "GenesisConfig", "PretrainConfig", "PretrainResult", "corrupt", "describe_objective",
    "load_pretrained", "load_result", "local_pixel_shuffle", "nonlinear_intensity", "paint", "pretrain",
    "random_flip", "sample_columns", "split_validation",
]
