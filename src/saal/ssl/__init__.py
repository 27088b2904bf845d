"""Self-supervised pretraining: Models Genesis damage (:mod:`.transforms`) and
the restoration training of the U-Net on the unlabeled pool (:mod:`.pretrain`)."""

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
    "GenesisConfig", "PretrainConfig", "PretrainResult", "corrupt", "load_pretrained", "load_result",
    "local_pixel_shuffle", "nonlinear_intensity", "paint", "pretrain", "random_flip", "split_validation",
]
