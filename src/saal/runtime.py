"""Seeding, device choice and CPU threading: the few global knobs of a run."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so that a run repeats exactly."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else CPU; anything else is passed to torch."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def configure_threads(n: int | None = None) -> int:
    """Use all cores for intra-op work unless ``SAAL_THREADS`` or ``n`` says otherwise."""
    n = n or int(os.environ.get("SAAL_THREADS", "0")) or os.cpu_count() or 1
    torch.set_num_threads(n)
    return n


def generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch RNG stream of its own, so that one stage's draws never shift another's."""
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g
