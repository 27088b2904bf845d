"""Self-supervised pretraining of the U-Net on the unlabeled pool.

The objective (:mod:`saal.ssl.objectives`) is the paper's Models Genesis
restoration (undo the damage of :mod:`saal.ssl.transforms`: sigmoid output, MSE
to the original), SimCLR's contrastive loss on two views of every image, or
both. None needs labels: the whole pool is used, so the bottleneck features are
meaningful for cold-start selection and the weights give segmentation a head
start.

Files written to ``<run_dir>/ssl/`` (all atomically, by rank 0 only):

* ``checkpoint.pt`` -- after every epoch: model, optimiser, scheduler, counters,
  history and the settings fingerprint; what ``resume`` continues from.
* ``weights.pt``    -- the best weights so far (plain state dict), for
  :func:`saal.models.unet.transfer_weights` and feature extraction.
* ``model.json``    -- written when the run finishes: U-Net config, training
  config, seed, metrics, validation ids. Its presence marks a finished run.
* ``history.csv``   -- per epoch: train_loss, val_loss (what early stopping
  watches), val_restore (restoration MSE), val_identity (the MSE of the trivial
  answer, returning the damaged input), restoration_gain (1 - val_restore /
  val_identity: 0 = no better than doing nothing), val_contrastive (NT-Xent),
  lr, seconds; a term the objective lacks is empty.
* ``samples.png``   -- (damaged | restored | original) rows for a few
  validation images, redrawn with every new best, for a human to look at
  (view 1 | view 2 | original for the contrastive objective alone).

Resume semantics: every random stream (split, initialisation, batch order,
damage, validation damage) is derived from ``(seed, stream, epoch, rank)``
instead of being carried along, so restarting at an epoch boundary replays
exactly the same draws: an interrupted and resumed run ends with the same
weights as an uninterrupted one. Rerunning with an unfinished checkpoint
continues it (``resume=True`` additionally insists that there is one); a
finished run is returned as it is unless ``force=True``; a checkpoint or
finished run made with other settings is an error, never silently mixed.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from ..config import DEFAULTS, PRECISIONS, SSL_SCHEDULES, Preset, get_preset
from ..data.dataset import LesionData
from ..errors import SaalError
from ..io import load_state, read_csv, read_json, save_state, write_csv, write_json
from ..models.unet import UNet, UNetConfig
from ..progress import StepProgress
from ..render.figures import image_grid
from ..runtime import MixedPrecision, Stream, generator, stream_seed
from . import distributed as ddp
from .contrastive import ProjectionHead, nt_xent
from .objectives import OBJECTIVES, Objective, PretrainNet, identity_mse, sample_columns
from .transforms import GenesisConfig
from .views import ViewConfig

SSL_DIR = "ssl"
CHECKPOINT_FORMAT = 2
HISTORY_FIELDS = ("epoch", "train_loss", "val_loss", "val_restore", "val_identity", "restoration_gain",
                  "val_contrastive", "lr", "seconds")
LR_SCHEDULES = SSL_SCHEDULES
#: What a pretraining record made before a setting existed ran with (see :meth:`PretrainConfig.from_dict`).
BEFORE_THE_FIELD = {"objective": "genesis", "lr_schedule": "step", "precision": "auto"}


@dataclass(frozen=True)
class PretrainConfig:
    """Training settings; :meth:`from_preset` fills them from a preset.

    The method defaults are :data:`saal.config.DEFAULTS`' (the ``demo`` preset's ``ssl_*`` fields); the
    others are this stage's own knobs, which no preset sets.
    """

    epochs: int = DEFAULTS.ssl_epochs
    batch_size: int = DEFAULTS.ssl_batch  # global batch: split over the ranks under torchrun
    lr: float = DEFAULTS.ssl_lr
    patience: int = DEFAULTS.ssl_patience  # epochs without validation improvement before stopping; 0 = never
    val_fraction: float = DEFAULTS.ssl_val_fraction
    base_width: int = DEFAULTS.base_width
    optimizer: str = "adam"  # or "sgd" (momentum 0.9, as Models Genesis)
    lr_schedule: str = DEFAULTS.ssl_schedule  # step (Models Genesis), cosine (to 1 % over `epochs`), plateau
    lr_step: int | None = None  # step schedule: epochs between LR decays; None: 0.8 x patience, as Models Genesis
    lr_gamma: float = 0.5  # step and plateau schedules: the decay factor
    steps_per_epoch: int | None = None  # None: one pass over the training part
    precision: str = DEFAULTS.precision  # of the training steps: auto, fp32 or bf16 (saal.runtime.MixedPrecision)
    channels_last: bool = True  # NHWC convolutions: ~1.6x faster on CPU at 16 channels, good on GPU
    n_samples: int = 4  # validation images shown in samples.png
    objective: str = DEFAULTS.ssl_objective  # genesis, contrastive or genesis+contrastive (saal.ssl.objectives)
    temperature: float = 0.2  # of the NT-Xent loss
    contrastive_weight: float = 0.01  # NT-Xent's weight beside the restoration MSE (~100x smaller in scale)
    proj_dim: int = 64  # output of the contrastive projection head
    genesis: GenesisConfig = field(default_factory=GenesisConfig)
    views: ViewConfig = field(default_factory=ViewConfig)

    def __post_init__(self):
        if isinstance(self.genesis, dict):
            object.__setattr__(self, "genesis", GenesisConfig(**self.genesis))
        if isinstance(self.views, dict):
            object.__setattr__(self, "views", ViewConfig(**{k: tuple(v) if isinstance(v, list) else v
                                                           for k, v in self.views.items()}))
        if self.objective not in OBJECTIVES:
            raise SaalError(f"pretraining objective {self.objective!r}: choose one of {', '.join(OBJECTIVES)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise SaalError(f"pretraining lr_schedule {self.lr_schedule!r}: choose one of {', '.join(LR_SCHEDULES)}")
        if not self.temperature > 0 or not self.contrastive_weight > 0 or self.proj_dim < 1:
            raise SaalError("pretraining options temperature and contrastive_weight must be positive, proj_dim >= 1")
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "base_width": self.base_width}
        for name, value in positive.items():
            if int(value) < 1:
                raise SaalError(f"pretraining option {name}={value!r} must be at least 1")
        if not self.lr > 0:
            raise SaalError(f"pretraining option lr={self.lr!r} must be positive")
        if self.patience < 0:
            raise SaalError(f"pretraining option patience={self.patience!r} must be 0 (off) or more")
        if not 0.0 < self.val_fraction < 1.0:
            raise SaalError(f"pretraining option val_fraction={self.val_fraction!r} must lie strictly between 0 and 1")
        if self.precision not in PRECISIONS:
            raise SaalError(f"pretraining option precision={self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if self.optimizer not in ("adam", "sgd"):
            raise SaalError(f"pretraining option optimizer={self.optimizer!r}: choose 'adam' or 'sgd'")
        if self.lr_step is not None and self.lr_step < 1:
            raise SaalError(f"pretraining option lr_step={self.lr_step!r} must be at least 1")
        if not 0.0 < self.lr_gamma <= 1.0:
            raise SaalError(f"pretraining option lr_gamma={self.lr_gamma!r} must lie in (0, 1]")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise SaalError(f"pretraining option steps_per_epoch={self.steps_per_epoch!r} must be at least 1")
        if self.n_samples < 0:
            raise SaalError(f"pretraining option n_samples={self.n_samples!r} must be 0 or more")

    @classmethod
    def from_preset(cls, preset: Preset | str = "demo", **overrides) -> "PretrainConfig":
        """The preset's ``ssl_*`` settings and width; ``overrides`` (None ignored) replace fields."""
        p = get_preset(preset) if isinstance(preset, str) else preset
        base = dict(epochs=p.ssl_epochs, batch_size=p.ssl_batch, lr=p.ssl_lr, patience=p.ssl_patience,
                    val_fraction=p.ssl_val_fraction, base_width=p.base_width, objective=p.ssl_objective,
                    lr_schedule=p.ssl_schedule, precision=p.precision)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise SaalError(f"unknown pretraining option {unknown[0]!r}; options: {', '.join(sorted(known))}")
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)

    @property
    def step_epochs(self) -> int:
        """Epochs between learning-rate decays (never decays when there is no patience to size it)."""
        if self.lr_step is not None:
            return self.lr_step
        return max(1, int(0.8 * self.patience)) if self.patience else self.epochs

    @classmethod
    def from_dict(cls, record: dict) -> "PretrainConfig":
        """The config a ``model.json`` or checkpoint recorded.

        A field the record predates takes the value the run was made with (:data:`BEFORE_THE_FIELD`), else
        today's default.
        """
        known = {f.name for f in fields(cls)}
        return cls(**{**BEFORE_THE_FIELD, **{k: v for k, v in record.items() if k in known}})

    def to_dict(self) -> dict:
        """JSON-ready (tuples as lists), as the fingerprint and ``model.json`` store it."""
        return json.loads(json.dumps(asdict(self)))


@dataclass
class PretrainResult:
    """What a pretraining run produced (also what :func:`load_result` reads back)."""

    ssl_dir: Path
    unet: UNetConfig
    best_val_loss: float
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    val_ids: list[str]
    history: list[dict]
    wall_seconds: float
    reused: bool = False  # an existing finished run was returned, nothing was recomputed

    @property
    def weights_path(self) -> Path:
        return self.ssl_dir / "weights.pt"


# ----------------------------------------------------------------------------- small helpers


def split_validation(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, validation) positions of a pool of ``n`` images, each sorted."""
    if n < 2:
        raise SaalError(f"the pool has {n} image(s); self-supervised pretraining needs at least 2 "
                        "(training + validation)")
    n_val = min(n - 1, max(1, round(fraction * n)))
    perm = np.random.default_rng(stream_seed(seed, Stream.SSL_SPLIT)).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _fingerprint(config: PretrainConfig, seed: int, pool: LesionData, world_size: int) -> dict:
    """The settings that must match for a checkpoint to be continued (JSON-normalised)."""
    ids_hash = hashlib.sha1("\n".join(pool.ids).encode("utf-8")).hexdigest()
    fp = {"config": config.to_dict(), "seed": int(seed), "pool_ids_sha1": ids_hash,
          "image_shape": list(pool.images.shape[1:]), "world_size": int(world_size)}
    return json.loads(json.dumps(fp))


def _check_fingerprint(found: dict, expected: dict, path: Path) -> None:
    if isinstance(found.get("config"), dict):  # settings added since the run was made: the values it had then
        found = {**found, "config": PretrainConfig.from_dict(found["config"]).to_dict()}
    if found != expected:
        diff = sorted(k for k in expected if found.get(k) != expected[k])
        if "config" in diff:
            cf, ce = found.get("config", {}), expected["config"]
            diff = [f"config.{k}" for k in sorted(ce) if cf.get(k) != ce[k]] + [d for d in diff if d != "config"]
        raise SaalError(f"{path} was made with other settings (differs in: {', '.join(diff)}); "
                        "pass --force to start over or use another run directory")


def _scheduler(opt: torch.optim.Optimizer, config: PretrainConfig):
    """The learning-rate schedule, stepped once per epoch (``plateau`` with the validation loss).

    ``step`` halves the rate every ``step_epochs`` (Models Genesis: 1e-3 falls to 8e-6 by epoch 30 at
    patience 5); ``cosine`` anneals it to 1 % over the epoch cap; ``plateau`` multiplies it by
    ``lr_gamma`` only once the validation loss has not improved for more than ``max(1, patience // 2)``
    epochs, so it keeps learning while the loss still falls.
    """
    if config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs, eta_min=0.01 * config.lr)
    if config.lr_schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=config.lr_gamma,
                                                          patience=max(1, config.patience // 2))
    return torch.optim.lr_scheduler.StepLR(opt, step_size=config.step_epochs, gamma=config.lr_gamma)


def _uint8_images(t: torch.Tensor) -> np.ndarray:
    """float ``(N, C, H, W)`` in [0, 1] -> uint8 ``(N, H, W, C)``."""
    return (t.float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def _number(text: str | None) -> float | None:
    """A history cell: empty (a term the objective lacks, or a file from before the column) reads as None."""
    return float(text) if text not in (None, "") else None


# ----------------------------------------------------------------------------- reading results


def load_result(run_dir: str | Path, reused: bool = True) -> PretrainResult:
    """The result of a finished pretraining run in ``run_dir`` (SaalError if there is none)."""
    ssl_dir = Path(run_dir) / SSL_DIR
    meta_path = ssl_dir / "model.json"
    if not meta_path.exists():
        raise SaalError(f"{meta_path} not found: no finished self-supervised pretraining in {run_dir}")
    meta = read_json(meta_path)
    hist_path = ssl_dir / "history.csv"
    history = [
        {"epoch": int(r["epoch"]), **{k: _number(r.get(k)) for k in HISTORY_FIELDS if k != "epoch"}}
        for r in (read_csv(hist_path) if hist_path.exists() else [])
    ]
    m = meta["metrics"]
    return PretrainResult(
        ssl_dir=ssl_dir, unet=UNetConfig(**meta["unet"]), best_val_loss=float(m["best_val_loss"]),
        best_epoch=int(m["best_epoch"]), epochs_run=int(m["epochs_run"]), stopped_early=bool(m["stopped_early"]),
        val_ids=list(meta["val_ids"]), history=history, wall_seconds=float(m["wall_seconds"]), reused=reused,
    )


def load_pretrained(run_dir: str | Path, device: str | torch.device = "cpu") -> UNet:
    """The best pretrained U-Net of a finished run (any objective), in eval mode (for feature extraction)."""
    result = load_result(run_dir)
    if not result.weights_path.exists():
        raise SaalError(f"{result.weights_path} not found: the pretraining run in {run_dir} is incomplete")
    model = UNet(result.unet)
    model.load_state_dict(load_state(result.weights_path))
    return model.to(device).eval()


# ----------------------------------------------------------------------------- training


class _Run:
    """One pretraining run on one rank: state, epoch loop, files."""

    def __init__(self, pool: LesionData, ssl_dir: Path, config: PretrainConfig, seed: int,
                 ctx: ddp.DistContext, fingerprint: dict, progress: bool):
        self.cfg, self.seed, self.ctx, self.ssl_dir = config, seed, ctx, ssl_dir
        self.fingerprint = fingerprint
        self.show = progress and ctx.is_main
        self.dev = ctx.device
        self.train_pos, self.val_pos = split_validation(len(pool), config.val_fraction, seed)
        self.val_ids = [pool.ids[i] for i in self.val_pos]
        # Kept as one uint8 tensor on the device: a batch is an index, a cast and a division.
        self.data = torch.from_numpy(np.ascontiguousarray(pool.images)).to(self.dev)
        self.local_batch = self._local_batch(len(self.train_pos))
        self.steps = config.steps_per_epoch or len(self.train_pos) // (self.local_batch * ctx.world_size)

        self.unet_cfg = UNetConfig(in_channels=pool.channels, out_channels=pool.channels,
                                   base_width=config.base_width, dropout=0.0)
        self.objective = Objective(config.objective, config.genesis, config.views, config.temperature,
                                   config.contrastive_weight)
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
            torch.manual_seed(stream_seed(seed, Stream.SSL_INIT))
            self.model = UNet(self.unet_cfg)
            head = (ProjectionHead(self.model.feature_channels, out_dim=config.proj_dim)
                    if self.objective.contrasts else None)
        self.container = PretrainNet(self.model, head).to(self.dev)
        if config.channels_last:
            self.container.to(memory_format=torch.channels_last)
        self.net = self.container
        if ctx.enabled:
            from torch.nn.parallel import DistributedDataParallel

            device_ids = [self.dev.index] if self.dev.type == "cuda" else None
            # the contrastive objective alone never uses the decoder
            self.net = DistributedDataParallel(self.container, device_ids=device_ids,
                                               find_unused_parameters=not self.objective.restores)
        params = self.container.parameters()
        if config.optimizer == "adam":
            self.opt = torch.optim.Adam(params, lr=config.lr)
        else:
            self.opt = torch.optim.SGD(params, lr=config.lr, momentum=0.9)
        self.sched = _scheduler(self.opt, config)
        self.precision = MixedPrecision.for_device(self.dev, config.precision)

        self.epoch = 0
        self.best_val = math.inf
        self.best_epoch = 0
        self.bad_epochs = 0
        self.stopped_early = False
        self.history: list[dict] = []

    def _local_batch(self, n_train: int) -> int:
        world = self.ctx.world_size
        global_batch = min(self.cfg.batch_size, n_train)
        if global_batch < world:
            raise SaalError(f"pretraining batch {global_batch} is smaller than the {world} processes; "
                            "raise the pretraining batch size or use fewer processes")
        return global_batch // world

    # -- state ---------------------------------------------------------------

    @property
    def ckpt_path(self) -> Path:
        return self.ssl_dir / "checkpoint.pt"

    def _state(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT, "fingerprint": self.fingerprint,
            "model": self.model.state_dict(),
            "head": self.container.head.state_dict() if self.container.head is not None else {},
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "scaler": self.precision.scaler.state_dict() if self.precision.scaler else {},
            "epoch": self.epoch, "best_val": self.best_val, "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs, "stopped_early": self.stopped_early, "history": self.history,
        }

    def load(self) -> None:
        state = load_state(self.ckpt_path, map_location=self.dev)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise SaalError(f"{self.ckpt_path} has checkpoint format {state.get('format')!r}, expected "
                            f"{CHECKPOINT_FORMAT}; pass --force to start over")
        _check_fingerprint(state["fingerprint"], self.fingerprint, self.ckpt_path)
        self.model.load_state_dict(state["model"])
        if self.container.head is not None:
            self.container.head.load_state_dict(state["head"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        if self.precision.scaler and state["scaler"]:
            self.precision.scaler.load_state_dict(state["scaler"])
        self.epoch, self.best_val = int(state["epoch"]), float(state["best_val"])
        self.best_epoch, self.bad_epochs = int(state["best_epoch"]), int(state["bad_epochs"])
        self.stopped_early = bool(state["stopped_early"])
        self.history = list(state["history"])

    @property
    def done(self) -> bool:
        return self.stopped_early or self.epoch >= self.cfg.epochs

    # -- batches ---------------------------------------------------------------

    def _batch(self, pos: torch.Tensor) -> torch.Tensor:
        """uint8 (B, S, S, C) rows -> float (B, C, S, S) in [0, 1], contiguous for the transforms."""
        return self.data[pos].permute(0, 3, 1, 2).float().div_(255.0).contiguous()

    def _to_net(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.cfg.channels_last else x

    def _epoch_batches(self, epoch: int) -> torch.Tensor:
        """(steps, local batch) pool positions for this rank: one seeded order per epoch, sharded by rank."""
        world, rank = self.ctx.world_size, self.ctx.rank
        global_batch = self.local_batch * world
        need = self.steps * global_batch
        rng = np.random.default_rng(stream_seed(self.seed, Stream.SSL_ORDER, epoch))
        order = np.concatenate([rng.permutation(self.train_pos) for _ in range(-(-need // len(self.train_pos)))])
        batches = order[:need].reshape(self.steps, global_batch)[:, rank::world]
        return torch.from_numpy(np.ascontiguousarray(batches)).to(self.dev)

    # -- epoch -----------------------------------------------------------------

    def train_epoch(self, epoch: int, bar: StepProgress) -> float:
        self.net.train()
        batches = self._epoch_batches(epoch)
        g = generator(stream_seed(self.seed, Stream.SSL_DAMAGE, epoch, self.ctx.rank), self.dev)
        total = torch.zeros((), device=self.dev)
        for step in range(self.steps):
            draw = self.objective.draw(self._batch(batches[step]), g)
            terms = self.objective.terms(self.net, draw, self.precision, self.dev, self._to_net, self.ctx)
            loss = self.objective.total(terms)
            self.opt.zero_grad(set_to_none=True)
            self.precision.step(loss, self.opt)
            total += loss.detach()
            # reading the loss syncs a GPU: refresh the figure every 10 steps only
            refresh = bar.enabled and (step % 10 == 9 or step == self.steps - 1)
            bar.update(advance=1, loss=float(total) / (step + 1) if refresh else None)
        return float(self.ctx.all_mean(total / self.steps))

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """The loss terms on the validation part, with the same random draws every epoch.

        ``val_loss`` (what early stopping watches) combines them as training does; the restoration
        is also compared with the trivial answer (the damaged input itself).
        """
        self.container.eval()
        pos = torch.from_numpy(self.val_pos[self.ctx.rank::self.ctx.world_size]).to(self.dev)
        g = generator(stream_seed(self.seed, Stream.SSL_VAL, self.ctx.rank), self.dev)
        sums = torch.zeros(4, device=self.dev, dtype=torch.float64)  # restore, identity, contrastive x n, n
        pairs = []
        for chunk in pos.split(self.local_batch):
            draw = self.objective.draw(self._batch(chunk), g)
            restore, chunk_pairs = self.objective.outputs(self.container, draw, self.precision, self.dev,
                                                          self._to_net)
            if restore is not None:
                sums[0] += restore.sum().double()
                sums[1] += identity_mse(draw).sum().double()
            if chunk_pairs is not None:
                pairs.append(chunk_pairs)
            sums[3] += len(chunk)
        if self.objective.contrasts:
            contrastive = self._contrastive_sum(pairs)  # a collective: every rank computes the same sum
            if self.ctx.is_main:  # so it is counted once in the sum over ranks below
                sums[2] = contrastive
        restore, identity, contrastive, n = self.ctx.all_sum(sums).tolist()
        restores, contrasts = self.objective.restores, self.objective.contrasts
        return {  # None: a term this objective does not have (an empty cell in history.csv)
            "val_loss": (restore / n if restores else 0.0) + (self.objective.weight * contrastive / n if contrasts
                                                              else 0.0),
            "val_restore": restore / n if restores else None,
            "val_identity": identity / n if restores else None,
            "restoration_gain": 1.0 - restore / identity if restores and identity > 0 else None,
            "val_contrastive": contrastive / n if contrasts else None,
        }

    def _contrastive_sum(self, pairs: list[torch.Tensor]) -> torch.Tensor:
        """NT-Xent x images over the validation part, in chunks of the global batch in validation order.

        Training contrasts each image with a global batch, so validation does too:
        under DDP every rank gathers all ranks' projection pairs back into the
        order of the validation part, so that the chunks, and with them the loss,
        are those of one process.
        """
        local = torch.cat(pairs) if pairs else torch.zeros(0, 2, self.cfg.proj_dim, device=self.dev)
        ordered = self.ctx.gather_shards(local, len(self.val_pos))
        total = torch.zeros((), device=self.dev, dtype=torch.float64)
        for chunk in ordered.split(self.local_batch * self.ctx.world_size):
            total += nt_xent(chunk[:, 0], chunk[:, 1], self.objective.temperature).double() * len(chunk)
        return total

    @torch.no_grad()
    def write_samples(self) -> None:
        """A few validation images with what the network makes of them (the restoration, or the two views)."""
        k = min(self.cfg.n_samples, len(self.val_pos))
        if k == 0:
            return
        self.container.eval()
        g = generator(stream_seed(self.seed, Stream.SSL_SAMPLES), self.dev)
        clean = self._batch(torch.from_numpy(self.val_pos[:k]).to(self.dev))
        draw = self.objective.draw(clean, g)
        if self.objective.restores:
            with self.precision.autocast(self.dev):
                restored = torch.sigmoid(self.model(self._to_net(draw.damaged)).float())
            images = (draw.damaged, restored, draw.targets)
        else:
            images = (*draw.views.chunk(2), clean)
        columns = [_uint8_images(t) for t in images]
        image_grid(self.ssl_dir / "samples.png", [list(row) for row in zip(*columns)],
                   column_titles=sample_columns(self.objective.name))

    def end_epoch(self, epoch: int, train_loss: float, val: dict[str, float], lr: float, seconds: float) -> bool:
        """Book-keeping after an epoch; returns whether validation improved."""
        self.history.append({"epoch": epoch + 1, "train_loss": train_loss, **val, "lr": lr, "seconds": seconds})
        val_loss = val["val_loss"]
        improved = val_loss < self.best_val
        if improved:
            self.best_val, self.best_epoch, self.bad_epochs = val_loss, epoch + 1, 0
        else:
            self.bad_epochs += 1
        self.epoch = epoch + 1
        if self.cfg.patience and self.bad_epochs >= self.cfg.patience and self.epoch < self.cfg.epochs:
            self.stopped_early = True
        return improved

    # -- files -----------------------------------------------------------------

    def save(self, improved: bool) -> None:
        """Best weights first, then the checkpoint: a crash in between only repeats the epoch."""
        if not self.ctx.is_main:
            return
        if improved:
            save_state(self.ssl_dir / "weights.pt", self.model.state_dict())
            self.write_samples()  # the restorations of the weights just saved
        write_csv(self.ssl_dir / "history.csv", self.history, HISTORY_FIELDS)
        save_state(self.ckpt_path, self._state())

    def finish(self) -> PretrainResult:
        wall = float(sum(h["seconds"] for h in self.history))
        result = PretrainResult(
            ssl_dir=self.ssl_dir, unet=self.unet_cfg, best_val_loss=self.best_val, best_epoch=self.best_epoch,
            epochs_run=self.epoch, stopped_early=self.stopped_early, val_ids=self.val_ids,
            history=list(self.history), wall_seconds=wall,
        )
        if self.ctx.is_main:
            write_json(self.ssl_dir / "model.json", {
                "unet": self.unet_cfg.to_dict(),
                "training": self.cfg.to_dict(),
                "seed": self.seed,
                "fingerprint": self.fingerprint,
                "device": str(self.dev),
                "world_size": self.ctx.world_size,
                "metrics": {
                    "best_val_loss": self.best_val, "best_epoch": self.best_epoch, "epochs_run": self.epoch,
                    "stopped_early": self.stopped_early, "wall_seconds": wall,
                    "n_train": len(self.train_pos), "n_val": len(self.val_pos),
                },
                "val_ids": self.val_ids,
            })
        self.ctx.barrier()
        return result

    def run(self) -> PretrainResult:
        with StepProgress("ssl", self.cfg.epochs * self.steps, enabled=self.show,
                          completed=self.epoch * self.steps) as bar:
            for epoch in range(self.epoch, self.cfg.epochs):
                if self.done:
                    break
                t0 = time.perf_counter()
                lr = self.opt.param_groups[0]["lr"]
                bar.describe(f"ssl epoch {epoch + 1}/{self.cfg.epochs}")
                train_loss = self.train_epoch(epoch, bar)
                val = self.validate()
                if isinstance(self.sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    self.sched.step(val["val_loss"])
                else:
                    self.sched.step()
                improved = self.end_epoch(epoch, train_loss, val, lr, time.perf_counter() - t0)
                self.save(improved)
                gain = f"  restoration gain {val['restoration_gain']:.2f}" if val.get("restoration_gain") is not None \
                    else ""
                bar.log(f"ssl epoch {epoch + 1}/{self.cfg.epochs}  train {train_loss:.5f}  val {val['val_loss']:.5f}"
                        f"{gain}{'  (best)' if improved else ''}  lr {lr:.2g}  {self.history[-1]['seconds']:.1f} s")
            if self.stopped_early:
                bar.log(f"stopped early: no validation improvement for {self.cfg.patience} epochs "
                        f"(best {self.best_val:.5f} at epoch {self.best_epoch})")
            bar.finish()
        return self.finish()


def pretrain(pool: LesionData, run_dir: str | Path, *, preset: Preset | str | None = None,
             config: PretrainConfig | None = None, seed: int = 0, device: str = "auto",
             resume: bool = False, force: bool = False, progress: bool = True,
             distributed: bool | None = None) -> PretrainResult:
    """Pretrain the U-Net on ``pool`` with the config's objective and write ``run_dir/ssl/``.

    ``pool`` must not contain test images (a seeded ``val_fraction`` of it is
    held out for validation and early stopping). Settings come from ``config``
    or, failing that, from ``preset`` (default ``demo``). An unfinished
    checkpoint with the same settings is continued; ``resume=True`` makes its
    absence an error. A finished run is returned without recomputation unless
    ``force=True``, which starts over. Under ``torchrun`` (``WORLD_SIZE`` > 1)
    or with ``distributed=True`` the run is data-parallel (DDP); only rank 0
    writes files.
    """
    if config is not None and preset is not None:
        raise SaalError("pass either a preset or a pretraining config, not both")
    config = config or PretrainConfig.from_preset(preset or "demo")
    ssl_dir = Path(run_dir) / SSL_DIR
    meta_path, ckpt_path = ssl_dir / "model.json", ssl_dir / "checkpoint.pt"
    ctx = ddp.setup(device, distributed)
    try:
        fingerprint = _fingerprint(config, seed, pool, ctx.world_size)
        if force:
            if ctx.is_main:  # an interrupted forced run must not pass for the old finished one
                meta_path.unlink(missing_ok=True)
                ckpt_path.unlink(missing_ok=True)
            ctx.barrier()
        elif meta_path.exists():  # a finished run serves any number of processes, whatever it ran on
            found = read_json(meta_path).get("fingerprint", {})
            _check_fingerprint({**found, "world_size": fingerprint["world_size"]}, fingerprint, meta_path)
            return load_result(run_dir, reused=True)
        elif resume and not ckpt_path.exists():
            raise SaalError(f"nothing to resume: {ckpt_path} does not exist")
        run = _Run(pool, ssl_dir, config, seed, ctx, fingerprint, progress)
        if ckpt_path.exists():
            run.load()
        result = run.run()
        del run  # DDP's reducer goes before its process group (ctx.close), or gloo may abort at exit
        return result
    finally:
        ctx.close()
