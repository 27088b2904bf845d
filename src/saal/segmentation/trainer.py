"""Fine-tune the U-Net for lesion segmentation on the labeled images.

Training length is a number of **optimisation steps**, the same whatever the
labeled budget: with 20 labels an epoch is 2 steps at batch 16, so an epoch
schedule would leave small budgets (the ones active learning is about) barely
trained. Batches are always full: the sampler concatenates independent random
permutations of the labeled set (every image is seen once per pass, passes run
on across batch boundaries), so a labeled set smaller than the batch is simply
repeated. The paper's epoch schedule stays available (``epochs``): it runs
``epochs * ceil(N / batch_size)`` steps from the same sampler, the step count of
a loader that keeps the last partial batch.

Optimiser: Adam; learning rate constant or cosine-annealed to 0 over the run
(``lr_schedule``; cosine is the default of the step presets, the paper preset
keeps the paper's constant 1e-4).

Randomness: ``seed`` is split (``numpy.random.SeedSequence``) into independent
streams for the weight initialisation / dropout, the batch sampler and the
augmentation, so changing e.g. the augmentation does not change the batch
order. The global torch RNG is forked and restored around training, so callers'
random state is untouched. On the CPU the same seed gives bit-identical weights.

The labeled set lives on the device as one uint8 tensor; a step indexes it with
a precomputed row of indices, so there is no per-sample Python work.

Modes (``train``): ``supervised`` learns from the labeled images alone;
``semi`` adds, at every step, a batch of unlabeled pool images and the
pseudo-label loss of :mod:`saal.segmentation.semi` (FixMatch for segmentation),
weighted by ``unlabeled_weight``. The step count is the same in both modes, so a
semi-supervised step costs one extra forward pass without gradient and a
forward/backward pass over twice the batch.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np
import torch

from ..config import DEFAULTS, TRAIN_MODES, Preset, check_options
from ..data.dataset import LesionData
from ..errors import SaalError
from ..models.unet import TRANSFER_MODES, UNet, UNetConfig, transfer_weights
from ..progress import StepProgress, say
from ..runtime import MixedPrecision, resolve_device, spawn_seeds
from .augment import augment_batch, check_policy
from .losses import LOSSES, make_loss
from .semi import masked_cross_entropy, strong_view_and_targets

INIT_MODES = (*TRANSFER_MODES, "full")
LR_SCHEDULES = ("constant", "cosine")


def transferred(preset: Preset) -> str:
    """The transfer mode of ``preset.seg_transfer``: ``trained`` becomes what its objective trained."""
    if preset.seg_transfer != "trained":
        return preset.seg_transfer
    return "encoder" if preset.ssl_objective == "contrastive" else "all-but-head"


@dataclass(frozen=True)
class SegConfig:
    """Everything that defines a segmentation training run (saved with its log).

    The method defaults are :data:`saal.config.DEFAULTS`' (the ``demo`` preset); :meth:`from_preset` takes
    another preset's.
    """

    steps: int = DEFAULTS.seg_steps
    epochs: int | None = DEFAULTS.seg_epochs  # set: the paper's epoch schedule instead of ``steps``
    batch_size: int = DEFAULTS.seg_batch
    lr: float = DEFAULTS.seg_lr
    lr_schedule: str = "cosine"
    loss: str = DEFAULTS.loss
    augment: str = DEFAULTS.seg_augment
    weight_decay: float = 0.0
    base_width: int = DEFAULTS.base_width
    dropout: float = DEFAULTS.dropout
    in_channels: int = 1
    transfer: str = DEFAULTS.seg_transfer  # how ``init_state`` is loaded; see :data:`INIT_MODES`
    prior: str = DEFAULTS.seg_prior  # inference: the lesion prior of :mod:`saal.segmentation.prior`
    threshold: str = DEFAULTS.seg_threshold  # inference: probabilities to masks, :mod:`saal.segmentation.threshold`
    tta: bool = DEFAULTS.seg_tta  # inference: average over the 8 symmetries of the square
    train: str = DEFAULTS.seg_train  # see :data:`saal.config.TRAIN_MODES`; the fields below apply to ``semi``
    unlabeled_batch: int = 16
    confidence: float = 0.95  # pseudo-labels kept where the softmax reaches this (FixMatch's threshold)
    unlabeled_weight: float = 1.0
    device: str = "auto"
    precision: str = DEFAULTS.precision  # of the training steps: auto, fp32 or bf16 (saal.runtime.MixedPrecision)
    channels_last: bool = True  # NHWC activations: ~25 % less CPU time per step at 64 px, width 16

    @classmethod
    def from_preset(cls, preset: Preset, **overrides: Any) -> "SegConfig":
        """The segmentation settings of ``preset``; ``overrides`` replace single fields."""
        base = dict(
            steps=preset.seg_steps, epochs=preset.seg_epochs, batch_size=preset.seg_batch, lr=preset.seg_lr,
            lr_schedule="constant" if preset.seg_epochs else "cosine", loss=preset.loss, augment=preset.seg_augment,
            base_width=preset.base_width, dropout=preset.dropout, in_channels=1 if preset.channels == "gray" else 3,
            train=preset.seg_train, prior=preset.seg_prior, threshold=preset.seg_threshold, tta=preset.seg_tta,
            transfer=transferred(preset), precision=preset.precision,
        )
        return cls(**{**base, **overrides}).validated()

    def validated(self) -> "SegConfig":
        """``self``, after checking every field (SaalError naming the bad option)."""
        if self.epochs is not None:
            if self.epochs < 1:
                raise SaalError(f"segmentation epochs must be a positive count, got {self.epochs}")
        elif self.steps < 1:
            raise SaalError(f"segmentation steps must be a positive count, got {self.steps}")
        if self.batch_size < 1:
            raise SaalError(f"segmentation batch size must be at least 1, got {self.batch_size}")
        if not self.lr > 0:
            raise SaalError(f"segmentation learning rate must be positive, got {self.lr}")
        if self.weight_decay < 0:
            raise SaalError(f"weight decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.dropout < 1:
            raise SaalError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise SaalError(f"unknown lr schedule {self.lr_schedule!r}; choose one of {', '.join(LR_SCHEDULES)}")
        if self.loss not in LOSSES:
            raise SaalError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        if self.transfer not in INIT_MODES:
            raise SaalError(f"unknown transfer mode {self.transfer!r}; choose one of {', '.join(INIT_MODES)}")
        if self.train not in TRAIN_MODES:
            raise SaalError(f"unknown training mode {self.train!r}; choose one of {', '.join(TRAIN_MODES)}")
        if self.unlabeled_batch < 1:
            raise SaalError(f"unlabeled batch size must be at least 1, got {self.unlabeled_batch}")
        if not 0 < self.confidence < 1:
            raise SaalError(f"pseudo-label confidence must be in (0, 1), got {self.confidence}")
        if self.unlabeled_weight < 0:
            raise SaalError(f"unlabeled loss weight must be >= 0, got {self.unlabeled_weight}")
        check_policy(self.augment)
        check_options(seg_prior=self.prior, seg_threshold=self.threshold, seg_tta=self.tta,
                      precision=self.precision)
        return self

    def total_steps(self, n_labeled: int) -> int:
        """Optimisation steps for ``n_labeled`` images: ``steps``, or ``epochs * ceil(N / batch)``."""
        if self.epochs is not None:
            return self.epochs * math.ceil(n_labeled / self.batch_size)
        return self.steps

    def unet_config(self) -> UNetConfig:
        return UNetConfig(in_channels=self.in_channels, out_channels=2, base_width=self.base_width,
                          dropout=self.dropout)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainLog:
    """What happened in one run: the loss of every step, its length and cost."""

    losses: list[float]
    steps: int
    images_seen: int
    wall_s: float
    seed: int
    transfer: str
    loaded: int  # tensors copied from ``init_state``
    device: str
    config: dict = field(default_factory=dict)
    train: str = "supervised"  # the mode that ran: ``semi`` falls back to supervised without unlabeled images
    unlabeled_losses: list[float] = field(default_factory=list)  # per step, ``semi`` only

    def to_dict(self) -> dict:
        return asdict(self)


def batch_schedule(n: int, steps: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """``(steps, batch_size)`` image indices: concatenated random permutations of ``range(n)``."""
    passes = math.ceil(steps * batch_size / n)
    order = torch.cat([torch.randperm(n, generator=generator) for _ in range(passes)])
    return order[: steps * batch_size].view(steps, batch_size)


def load_initial_weights(model: UNet, state: Mapping[str, torch.Tensor], mode: str) -> list[str]:
    """Copy ``state`` into ``model`` as ``mode`` says; returns the tensor names copied.

    ``full`` loads every tensor (head included, to continue from a previous
    round) and requires an exact match; the other modes are
    :func:`saal.models.unet.transfer_weights`.
    """
    if mode == "full":
        own = model.state_dict()
        for key in own:
            if key not in state:
                raise SaalError(f"initial weights lack tensor {key!r} (transfer 'full' needs a complete "
                                "segmentation model)")
            if tuple(state[key].shape) != tuple(own[key].shape):
                raise SaalError(f"initial tensor {key!r} has shape {tuple(state[key].shape)}, the network expects "
                                f"{tuple(own[key].shape)} (different width or channels?)")
        extra = sorted(set(state) - set(own))
        if extra:
            raise SaalError(f"initial weights hold {len(extra)} tensors the network lacks, e.g. {extra[0]!r}")
        model.load_state_dict(state)
        return sorted(own)
    try:
        return transfer_weights(model, state, mode)
    except ValueError as exc:
        raise SaalError(f"initial weights ({mode}): {exc}") from None


def train_segmentation(labeled: LesionData, config: SegConfig, *, unlabeled: LesionData | None = None,
                       init_state: Mapping[str, torch.Tensor] | None = None, transfer: str | None = None,
                       seed: int = 0, progress: bool = True) -> tuple[UNet, TrainLog]:
    """Train a segmentation U-Net on ``labeled`` and return it (eval mode) with its log.

    ``unlabeled``: images without labels for ``config.train == "semi"`` (the pool minus the
    labeled set; never test images); their masks, if any, are not read. Semi-supervised training
    without unlabeled images falls back to supervised training and says so in one line.
    ``init_state`` is a state dict to start from (self-supervised weights, or a
    previous round's model); ``transfer`` (default ``config.transfer``) says
    which part of it to load: ``all-but-head``, ``encoder``, ``none`` (random
    init) or ``full`` (everything, head included). Without ``init_state`` the
    network starts from its random initialisation.
    """
    if transfer is not None:
        config = SegConfig(**{**config.to_dict(), "transfer": transfer})
    config = config.validated()
    if labeled.masks is None:
        raise SaalError("segmentation training needs masks, but the labeled set has none")
    if len(labeled) == 0:
        raise SaalError("segmentation training needs at least one labeled image")
    if labeled.channels != config.in_channels:
        raise SaalError(f"the labeled images have {labeled.channels} channel(s), the network expects "
                        f"{config.in_channels} (grayscale option?)")
    if config.train == "semi" and (unlabeled is None or len(unlabeled) == 0):
        say(f"semi-supervised training: no unlabeled images left, training supervised on the {len(labeled)} "
            "labeled images")
        unlabeled = None
    elif config.train == "supervised":
        unlabeled = None
    if unlabeled is not None and (unlabeled.channels, unlabeled.image_size) != (labeled.channels, labeled.image_size):
        raise SaalError(f"the unlabeled images ({unlabeled.channels} channel(s), {unlabeled.image_size} px) differ "
                        f"from the labeled ones ({labeled.channels}, {labeled.image_size} px)")
    device = resolve_device(config.device)
    steps = config.total_steps(len(labeled))
    init_seed, sampler_seed, augment_seed, unlabeled_sampler_seed, semi_seed = spawn_seeds(seed, 5)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(init_seed)
        model = UNet(config.unet_config())
        loaded = [] if init_state is None else load_initial_weights(model, init_state, config.transfer)
        loss_fn = make_loss(config.loss)  # before the clock: the first call imports MONAI
        started = time.perf_counter()
        semi = None if unlabeled is None else _SemiStream(unlabeled, config, steps, device, unlabeled_sampler_seed,
                                                          semi_seed)
        losses, unlabeled_losses = _fit(model, loss_fn, labeled, config, steps, device, sampler_seed, augment_seed,
                                        semi, progress)
        wall = time.perf_counter() - started
    model.eval()
    log = TrainLog(losses=losses, steps=steps, images_seen=steps * config.batch_size, wall_s=wall, seed=seed,
                   transfer=config.transfer, loaded=len(loaded), device=str(device), config=config.to_dict(),
                   train="semi" if semi is not None else "supervised", unlabeled_losses=unlabeled_losses)
    return model, log


class _SemiStream:
    """The unlabeled images on the device and their batch schedule: what a semi-supervised step draws from."""

    def __init__(self, unlabeled: LesionData, config: SegConfig, steps: int, device: torch.device,
                 sampler_seed: int, augment_seed: int):
        self.images = _images_on(unlabeled, device)  # images only: the unlabeled masks never reach the device
        self.schedule = batch_schedule(len(unlabeled), steps, config.unlabeled_batch,
                                       torch.Generator().manual_seed(sampler_seed)).to(device)
        self.generator = torch.Generator().manual_seed(augment_seed)
        self.confidence, self.weight = config.confidence, config.unlabeled_weight

    def batch(self, step: int) -> torch.Tensor:
        return self.images[self.schedule[step]].float().div_(255.0)


def _images_on(data: LesionData, device: torch.device) -> torch.Tensor:
    """``(N, C, S, S)`` uint8 images of ``data`` on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(data.images)).permute(0, 3, 1, 2).contiguous().to(device)


def _fit(model: UNet, loss_fn: torch.nn.Module, labeled: LesionData, config: SegConfig, steps: int,
         device: torch.device, sampler_seed: int, augment_seed: int, semi: _SemiStream | None,
         progress: bool) -> tuple[list[float], list[float]]:
    """The optimisation loop; returns the loss of every step, and its unlabeled part in ``semi`` mode."""
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model.to(device=device, memory_format=memory_format).train()
    images = _images_on(labeled, device)
    masks = torch.from_numpy(np.ascontiguousarray(labeled.masks)).to(device).long()
    schedule = batch_schedule(len(labeled), steps, config.batch_size,
                              torch.Generator().manual_seed(sampler_seed)).to(device)
    augment_generator = torch.Generator().manual_seed(augment_seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
                 if config.lr_schedule == "cosine" else None)
    precision = MixedPrecision.for_device(device, config.precision)

    def forward(x: torch.Tensor) -> torch.Tensor:
        with precision.autocast(device):
            return model(x.contiguous(memory_format=memory_format))

    losses = torch.zeros(steps, device=device)
    unlabeled_losses = torch.zeros(steps if semi is not None else 0, device=device)
    report_every = max(1, steps // 50)
    label = "segmentation" if semi is None else "segmentation (semi-supervised)"
    with StepProgress(label, steps, enabled=progress, transient=True) as bar:
        for step in range(steps):
            index = schedule[step]
            x, y = augment_batch(images[index].float().div_(255.0), masks[index], augment_generator, config.augment)
            if semi is None:
                loss = loss_fn(forward(x), y)
            else:
                strong, targets = strong_view_and_targets(forward, semi.batch(step), semi.generator, semi.confidence)
                logits = forward(torch.cat([x, strong]))  # one batch: BatchNorm sees labeled and unlabeled together
                unlabeled_loss = masked_cross_entropy(logits[len(x):], targets)
                loss = loss_fn(logits[: len(x)], y) + semi.weight * unlabeled_loss
                unlabeled_losses[step] = unlabeled_loss.detach()
            optimizer.zero_grad(set_to_none=True)
            precision.step(loss, optimizer)
            if scheduler is not None:
                scheduler.step()
            losses[step] = loss.detach()
            if (step + 1) % report_every == 0 or step + 1 == steps:
                current = float(losses[step])  # one device sync per report, not per step
                if not math.isfinite(current):
                    raise SaalError(f"segmentation training diverged (loss {current} at step {step + 1}); "
                                    f"lower the learning rate (now {config.lr})")
                bar.update(completed=step + 1, loss=current)
    return losses.cpu().tolist(), unlabeled_losses.cpu().tolist()
