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


@dataclass(frozen=True)
class MixedPrecision:
    """How a training step runs its forward pass: autocast dtype (None: fp32) and gradient scaling.

    bf16 where the GPU has it (no loss scaling needed), else fp16 with a
    :class:`torch.amp.GradScaler`; CPUs train in fp32, where autocast brings
    nothing for these small convolutions.
    """

    dtype: torch.dtype | None
    scaler: torch.amp.GradScaler | None

    @classmethod
    def for_device(cls, device: torch.device, enabled: bool = True) -> "MixedPrecision":
        if not enabled or device.type != "cuda":
            return cls(None, None)
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
