"""A segmentation step and self-supervised steps (each objective) on CUDA with mixed precision (no GPU: skipped).

``benchmarks/gpu_check.sh`` runs these first; every other test runs on the CPU, where autocast is off.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from saal.data.dataset import LesionData
from saal.runtime import MixedPrecision
from saal.segmentation import SegConfig, train_segmentation
from saal.ssl import OBJECTIVES, PretrainConfig, pretrain

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def lesions(n: int, size: int = 32) -> LesionData:
    """Dark discs on a noisy bright background."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.uniform(0.3 * size, 0.7 * size, (2, n, 1, 1))
    masks = ((yy - cy) ** 2 + (xx - cx) ** 2 <= (0.2 * size) ** 2).astype(np.uint8)
    images = 170 + rng.normal(0, 20, (n, size, size, 1)) - 90 * masks[..., None]
    return LesionData(ids=[f"cuda{i}" for i in range(n)], images=np.clip(images, 0, 255).astype(np.uint8),
                      masks=masks)


def test_cuda_uses_mixed_precision():
    precision = MixedPrecision.for_device(torch.device("cuda"))
    assert precision.dtype in (torch.bfloat16, torch.float16)
    assert (precision.scaler is None) == (precision.dtype == torch.bfloat16)


def test_cuda_segmentation_step_has_a_finite_loss():
    config = SegConfig(steps=2, batch_size=4, base_width=8, augment="flips", device="cuda", precision="auto")
    model, log = train_segmentation(lesions(8), config, progress=False)
    assert log.device.startswith("cuda") and len(log.losses) == 2
    assert all(math.isfinite(x) for x in log.losses)
    assert next(model.parameters()).is_cuda


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_cuda_ssl_step_has_a_finite_loss(tmp_path, objective):
    config = PretrainConfig(epochs=1, steps_per_epoch=2, batch_size=4, base_width=8, patience=0, n_samples=2,
                            objective=objective)
    result = pretrain(lesions(16), tmp_path, config=config, device="cuda", progress=False)
    assert result.epochs_run == 1
    first = result.history[0]
    assert math.isfinite(first["train_loss"]) and math.isfinite(first["val_loss"])
    # each objective's own terms, computed under autocast: restoration MSE and/or NT-Xent of the views
    assert (first["val_restore"] is not None) == (objective != "contrastive")
    assert (first["val_contrastive"] is not None) == (objective != "genesis")
    assert all(math.isfinite(first[k]) for k in ("val_restore", "val_contrastive") if first[k] is not None)
    assert (tmp_path / "ssl" / "samples.png").is_file()
