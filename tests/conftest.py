"""Shared test fixtures: small generated data, the real ISIC files when present."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

# Tiny test tensors gain nothing from threads, and on a busy machine OpenMP waits make them much slower;
# one thread also makes results bit-identical whatever the machine.
torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def isic_val_256() -> Path:
    """The real ISIC 2017 validation set (150 pairs, 256x256) in the official layout."""
    path = SHARED_DATA / "isic2017-val-256"
    if not path.is_dir():
        pytest.skip(f"real ISIC 2017 files not found at {path} (they live in ../shared/data beside the checkout)")
    return path


@pytest.fixture(scope="session")
def isic_val_fullres() -> Path:
    """Six real ISIC 2017 validation pairs at original resolution (up to 2592x1936)."""
    path = SHARED_DATA / "isic2017-val-fullres"
    if not path.is_dir():
        pytest.skip(f"real ISIC 2017 files not found at {path} (they live in ../shared/data beside the checkout)")
    return path
