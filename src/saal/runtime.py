"""The few global knobs of a run: device, CPU threads, random streams, mixed precision.

Every stage that trains (self-supervised pretraining, segmentation) draws its
randomness from *streams*: seeds derived from the run's seed and a stream key,
so that changing one source of randomness (say the augmentation) never shifts
another (the batch order), and a resumed run can re-create any stream at any
epoch without carrying generator state along.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass

import numpy as np
import torch

from .config import PRECISIONS
from .errors import SaalError


#: Where ``auto`` runs when a command chose a device (``--device``); inherited by worker processes and jobs.
DEVICE_ENV = "SAAL_DEVICE"
DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` is the device the command chose (:func:`use_device`), else CUDA when available, else CPU.

    Anything else is passed to torch. Every stage's settings keep ``auto``, so the device is where a run
    executes, not part of what it computes: a run started on a CPU may resume on a GPU.
    """
    if name == "auto":
        name = os.environ.get(DEVICE_ENV, "auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def check_device(name: str) -> str:
    """``name`` if it is one of :data:`DEVICES` (a SaalError naming the choices otherwise)."""
    if name not in DEVICES:
        raise SaalError(f"--device: choose {', '.join(DEVICES)}, got {name!r}")
    return name


def use_device(name: str) -> str:
    """Make ``auto`` mean ``name`` in this process and in the processes it starts (through :data:`DEVICE_ENV`).

    ``cuda`` without a visible GPU is an error here rather than a torch traceback in the middle of a run.
    """
    if check_device(name) == "cuda" and not torch.cuda.is_available():
        raise SaalError("--device cuda: torch sees no CUDA device here (torch.cuda.is_available() is False); "
                        "use --device cpu or auto")
    os.environ[DEVICE_ENV] = name
    return name


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


class Stream(enum.IntEnum):
    """The first key of every random stream drawn from a run's seed: one name per source of randomness.

    Keeping every stream's name in one place is what guarantees that no two of them ever draw the same
    numbers (a query's picks and the stop set's sample, say). The segmentation round seed
    (:meth:`saal.active.LoopConfig.round_seed`) is the one seed made otherwise: the numbers it gives are far
    below the 63-bit seeds of these streams.
    """

    SSL_SPLIT = 0  # pretraining: which pool images validate
    SSL_INIT = 1  # pretraining: initial weights
    SSL_ORDER = 2  # pretraining: batch order, per epoch
    SSL_DAMAGE = 3  # pretraining: transforms / views, per epoch and rank
    SSL_VAL = 4  # pretraining: the fixed validation draws
    SSL_SAMPLES = 5  # pretraining: samples.png
    STOP_SET = 6  # the pool sample whose predictions are kept every round (saal advise)
    RANDOM_QUERY = 7  # the random query's picks, per labeled count
    CROSSVAL_FOLDS = 8  # saal advise's cross-validation folds
    CROSSVAL_TRAINING = 9  # the training seed of each cross-validation model


def stream_seed(seed: int, *key: int) -> int:
    """A 63-bit seed for the stream ``key`` of ``seed`` (e.g. ``(Stream.SSL_DAMAGE, epoch, rank)``).

    Any key can be re-derived at any time: pretraining uses this to replay an
    epoch's draws exactly when it resumes. The first key is a :class:`Stream`.
    """
    state = np.random.SeedSequence([int(seed), *(int(k) for k in key)]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def spawn_seeds(seed: int, n: int) -> list[int]:
    """``n`` independent 63-bit seeds spawned from ``seed`` (one per stream of a short run).

    A segmentation run needs a fixed handful of streams (initialisation,
    batch order, augmentation) and never resumes mid-run, so spawning them
    once is enough; :func:`stream_seed` is for streams keyed by epoch or rank.
    """
    return [int(s.generate_state(1, np.uint64)[0] >> np.uint64(1)) for s in np.random.SeedSequence(seed).spawn(n)]


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AMX tiles or AVX512-BF16).

    There bf16 autocast halves the time of a U-Net training step (measured in
    ``benchmarks/bench_precision.py``); elsewhere bf16 is emulated and slower than fp32.
    """
    probes = (getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))
    return any(probe() for probe in probes if probe is not None)


@dataclass(frozen=True)
class MixedPrecision:
    """How a training step runs its forward pass: autocast dtype (None: fp32) and gradient scaling.

    Only training steps use it (pretraining, segmentation); inference, and so the
    selection features and every evaluation, stays in fp32.
    """

    dtype: torch.dtype | None
    scaler: torch.amp.GradScaler | None

    @classmethod
    def for_device(cls, device: torch.device, precision: str = "auto") -> "MixedPrecision":
        """The arithmetic ``precision`` asks for on ``device``.

        ``auto``: on a GPU bf16 where it has it (no loss scaling needed), else fp16
        with a :class:`torch.amp.GradScaler`; fp32 on a CPU. ``fp32``: no autocast.
        ``bf16``: bf16 autocast on any device (on a CPU, fast where
        :func:`cpu_has_native_bf16`); a GPU without bf16 is an error.
        """
        if precision not in PRECISIONS:
            raise SaalError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
        if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
            return cls(None, None)
        if device.type != "cuda":
            return cls(torch.bfloat16, None)
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            raise SaalError("precision bf16: this GPU has no bf16 arithmetic; use precision=auto (fp16) or fp32")
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return cls(dtype, torch.amp.GradScaler("cuda") if dtype == torch.float16 else None)

    def autocast(self, device: torch.device):
        """The autocast context of a forward pass (a no-op in fp32)."""
        return torch.autocast(device.type, dtype=self.dtype, enabled=self.dtype is not None)

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Backward pass and optimiser step, through the gradient scaler when there is one."""
        if self.scaler is None:
            loss.backward()
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()
