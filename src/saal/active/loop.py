"""The active-learning loop: label -> train -> evaluate -> query, round after round.

The loop's whole state is one directory, written atomically step by step, so a
process killed at any point resumes with nothing lost and nothing counted twice:

``config.json``            the settings; a resumed loop must use the same ones
``state.json``             the labeled set (:class:`~saal.active.pool.ActiveSet`): id, round, source
``rounds.jsonl``           one record per finished round (n_labeled, Dice, IoU, HD95, ..., seconds)
``labeled_round_N.csv``    the ids labeled when round N was trained
``eval/round_N.csv``       per-test-image metrics of round N's model
``stopset.csv``, ``stopset/round_N.npy``  round N's predicted masks of a fixed sample of pool images
                           (:mod:`saal.active.stopset`), for the label-free stopping signal of ``saal advise``
``models/latest.pt``       the newest model (what the next query scores with), ``model.json`` beside it
``models/round_N.pt``      every round's model when ``save_models`` is set
``labels/<id>.png``        masks imported from annotators (simulated labels come from the data)
``learning_curve.png``     Dice against the number of labeled images

Each round's labels are committed (``state.json``) before its training starts,
and its record (``rounds.jsonl``) only after its model and evaluation are on
disk. Training is deterministic per (seed, round), so redoing an interrupted
round gives the same model as an uninterrupted run.
"""

from __future__ import annotations

import io
import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from ..config import DEFAULTS, FINETUNE_MODES, INITS, Preset, check_options
from ..data.dataset import LesionData
from ..errors import DataError, SaalError
from ..io import (atomic_write_bytes, atomic_write_text, load_state, read_json, read_jsonl, save_state, write_csv,
                  write_json)
from ..models.unet import UNet, UNetConfig
from ..render.figures import plot_round_curve
from ..runtime import generator
from ..segmentation import SegConfig, evaluate, iter_predictions, train_segmentation
from ..selection.registry import make_cold_start
from .effort import round_effort
from .oracle import SimulatedOracle
from .pool import ActiveSet
from .queries import Query, make_query
from .stopset import save_stop_predictions

#: Rounds a loop can have: what keeps :meth:`LoopConfig.round_seed` distinct across seeds.
MAX_ROUNDS = 1000
RECORD_METRICS = ("dice", "iou", "hd95", "assd", "precision", "recall")


@dataclass(frozen=True)
class LoopConfig:
    """What defines a loop (saved as ``config.json``; a resume must agree with it).

    Parameters
    ----------
    budgets : tuple of int
        Cumulative labeled counts per round; round 0 is the cold start.
    seg : SegConfig
        The segmentation training of every round.
    cold_start : str
        A :mod:`saal.selection` cold start (round 0), e.g. ``"saal"``; the ``cold-start-rule`` query continues it.
    query : str
        A :mod:`saal.active.queries` query (rounds >= 1), e.g. ``"entropy"``.
    query_then, switch_at : str, int
        The query that replaces ``query`` once ``switch_at`` images are labeled (``"none"``: never).
    reduction : {"mean", "top10"}
        How the uncertainty queries score an image from its pixels (:mod:`saal.active.heuristics`).
    init : {"ssl", "scratch"}
        Start every round's network from the self-supervised weights, or from random weights.
    finetune : {"restart", "continue"}
        Train every round from the init weights, or continue from the previous round's model.
    mc_samples : int
        Dropout samples of the MC-dropout queries (``bald``, ``variance``).
    n_clusters : int
        k of the clustering cold starts and queries (the cold start, the representative and
        cold-start-rule queries).
    seed : int
        Seeds the cold start, the queries and every round's training (see :meth:`round_seed`).
    save_models : bool
        Keep every round's model, not only the latest.

    Build it with :meth:`from_preset` rather than field by field, so that every
    caller (``saal run``, ``saal train``, the experiment harness) makes the same loop;
    the field defaults are :data:`saal.config.DEFAULTS`' and every value is checked
    against :data:`saal.config.PARAMETER_CONSTRAINTS`.
    """

    budgets: tuple[int, ...]
    seg: SegConfig = field(default_factory=SegConfig)
    cold_start: str = DEFAULTS.cold_start
    query: str = DEFAULTS.query
    query_then: str = DEFAULTS.query_then
    switch_at: int = DEFAULTS.query_switch_at
    reduction: str = DEFAULTS.query_reduction
    init: str = DEFAULTS.init
    finetune: str = "restart"
    mc_samples: int = DEFAULTS.mc_samples
    n_clusters: int = DEFAULTS.n_clusters
    seed: int = 0
    save_models: bool = False

    def __post_init__(self):
        if not self.budgets:
            raise SaalError("budgets must list at least one label count")
        check_options(budgets=self.budgets, cold_start=self.cold_start, query=self.query, query_then=self.query_then,
                      query_switch_at=self.switch_at, query_reduction=self.reduction, init=self.init,
                      finetune=self.finetune, mc_samples=self.mc_samples, n_clusters=self.n_clusters, seed=self.seed)
        object.__setattr__(self, "budgets", tuple(int(b) for b in self.budgets))

    @classmethod
    def from_preset(cls, preset: Preset, *, in_channels: int, budgets: tuple[int, ...] | None = None,
                    steps: int | None = None, train: str | None = None, **options: Any) -> "LoopConfig":
        """The loop a preset defines for images of ``in_channels`` channels.

        ``budgets`` (default: the preset's) and ``steps`` (segmentation steps,
        default: the preset's) override the schedule, ``train`` the training mode
        (``supervised`` or ``semi``, default: the preset's); ``options`` set the other
        fields (``cold_start``, ``query``, ``reduction``, ``init``, ``n_clusters``, all
        defaulting to the preset's, ``finetune``, ``seed``, ``save_models``); None values are ignored.
        """
        options = {k: v for k, v in options.items() if v is not None}
        overrides = {k: v for k, v in (("steps", steps), ("train", train)) if v is not None}
        seg = SegConfig.from_preset(preset, in_channels=in_channels, **overrides)
        defaults = {"cold_start": preset.cold_start, "query": preset.query, "reduction": preset.query_reduction,
                    "init": preset.init, "n_clusters": preset.n_clusters, "query_then": preset.query_then,
                    "switch_at": preset.query_switch_at}
        return cls(budgets=tuple(budgets or preset.budgets), seg=seg, mc_samples=preset.mc_samples,
                   **{**defaults, **options})

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> "LoopConfig":
        """The config a ``config.json`` describes; fields it predates take the value they had then."""
        known = {f for f in cls.__dataclass_fields__ if f in record}
        values = {"reduction": "mean", "query_then": "none", **{k: record[k] for k in known}}
        # inference settings a record predates: the plain arg-max mask it was evaluated with
        seg = {"prior": "none", "threshold": "argmax", "tta": False, **record.get("seg", {})}
        values["seg"] = SegConfig(**{k: v for k, v in seg.items() if k in SegConfig.__dataclass_fields__})
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["budgets"] = list(self.budgets)
        return d

    def extends(self, earlier: "LoopConfig") -> bool:
        """Whether this loop is ``earlier`` with more rounds appended (same settings, its budgets a prefix).

        Such a loop continues from ``earlier``'s folder: a finished 10-label run can grow to 10, 20, 40 labels
        without recomputing its first round.
        """
        n = len(earlier.budgets)
        return (len(self.budgets) > n and self.budgets[:n] == earlier.budgets
                and replace(self, budgets=earlier.budgets) == earlier)

    def round_seed(self, round: int) -> int:
        """Training and query seed of a round: the same for every cell, so seeds pair across cells.

        ``seed * 1000 + round`` for rounds 0-999: distinct for every (seed, round) pair, and kept as it has
        always been so that every recorded run resumes and grows with the models it started with. Any other
        stream of a loop is a :func:`saal.runtime.stream_seed` key, which cannot meet these small numbers.
        """
        if not 0 <= round < MAX_ROUNDS:
            raise SaalError(f"round {round} is outside 0-{MAX_ROUNDS - 1}")
        return self.seed * MAX_ROUNDS + round


# ------------------------------------------------------------------------------ the directory
class LoopDir:
    """Paths and atomic reads/writes of one loop directory."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def file(self, *parts: str) -> Path:
        return self.path.joinpath(*parts)

    # labeled set
    def load_active(self, pool_ids: Sequence[str]) -> ActiveSet:
        state = self.file("state.json")
        if not state.is_file():
            return ActiveSet(pool_ids)
        active = ActiveSet.load(state)
        if active.pool_ids != list(pool_ids):
            raise SaalError(f"{state} belongs to another pool ({len(active)} images, not {len(pool_ids)}); "
                            "use a new run directory")
        return active

    def save_active(self, active: ActiveSet) -> None:
        active.save(self.file("state.json"))

    # round records
    def rounds(self) -> list[dict[str, Any]]:
        return read_jsonl(self.file("rounds.jsonl"))

    def save_record(self, record: dict[str, Any]) -> None:
        """Add (or replace) the record of ``record['round']``; the file is rewritten atomically."""
        kept = [r for r in self.rounds() if r["round"] != record["round"]]
        rows = sorted([*kept, record], key=lambda r: r["round"])
        atomic_write_text(self.file("rounds.jsonl"), "".join(json.dumps(r) + "\n" for r in rows))

    # models
    def save_model(self, model: UNet, name: str, meta: Mapping[str, Any]) -> Path:
        path = self.file("models", f"{name}.pt")
        save_state(path, {k: v.detach().cpu() for k, v in model.state_dict().items()})
        write_json(self.file("models", f"{name}.json"), {"unet": model.config.to_dict(), **meta})
        return path

    def load_model(self, name: str = "latest") -> tuple[UNet, dict[str, Any]] | None:
        path, meta_path = self.file("models", f"{name}.pt"), self.file("models", f"{name}.json")
        if not (path.is_file() and meta_path.is_file()):
            return None
        meta = read_json(meta_path)
        try:
            model = UNet(UNetConfig(**meta["unet"]))
            model.load_state_dict(load_state(path))
        except (KeyError, TypeError, RuntimeError) as exc:
            if isinstance(exc, DataError):
                raise
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise DataError(f"does not match its {meta_path.name} ({first}); 'saal train' makes it again", path) \
                from None
        return model.eval(), meta

    # annotator masks
    def label_path(self, image_id: str) -> Path:
        return self.file("labels", f"{image_id}.png")

    def read_label(self, image_id: str) -> np.ndarray:
        """The imported mask of ``image_id``, bool (S, S)."""
        try:
            with Image.open(self.label_path(image_id)) as im:
                return np.asarray(im.convert("L")) >= 128
        except (OSError, SyntaxError, ValueError) as exc:
            raise DataError(f"imported mask not readable ({type(exc).__name__}); import its batch again",
                            self.label_path(image_id)) from None

    def save_label(self, image_id: str, mask: np.ndarray) -> None:
        buf = io.BytesIO()
        Image.fromarray((np.asarray(mask) > 0).astype(np.uint8) * np.uint8(255)).save(buf, format="PNG")
        atomic_write_bytes(self.label_path(image_id), buf.getvalue())

    def check_config(self, config: LoopConfig) -> None:
        """Write ``config.json`` on first use; afterwards refuse a different configuration.

        A configuration that only appends budgets to the recorded one (:meth:`LoopConfig.extends`) is
        accepted and recorded: the loop continues with more rounds.
        """
        path = self.file("config.json")
        wanted = config.to_dict()
        if path.is_file():
            recorded = LoopConfig.from_dict(read_json(path))
            have = recorded.to_dict()
            if have == wanted:
                return
            if not config.extends(recorded):
                diff = sorted(k for k in set(have) | set(wanted) if have.get(k) != wanted.get(k))
                raise SaalError(f"{self.path} holds a loop with other settings ({', '.join(diff)}); "
                                "use a new directory to change them")
        write_json(path, wanted)


# ------------------------------------------------------------------------------ the steps
def labeled_masks(loop: LoopDir, active: ActiveSet, pool: LesionData, ids: Sequence[str]) -> np.ndarray:
    """Masks of labeled ``ids``: annotators' imported PNGs, the rest from the simulated oracle (the data's own)."""
    out = np.zeros((len(ids), pool.image_size, pool.image_size), dtype=np.uint8)
    simulated = [j for j, k in enumerate(ids) if active.source_of(k) != "annotator"]
    if simulated:
        if pool.masks is None:
            raise SaalError(f"no mask for labeled image {ids[simulated[0]]}: it was not imported and the data "
                            "has no masks")
        revealed = SimulatedOracle(pool).reveal([ids[j] for j in simulated])
        out[simulated] = np.stack(list(revealed.values()))
    for j, k in enumerate(ids):
        if active.source_of(k) == "annotator":
            out[j] = loop.read_label(k)
    return out


def labeled_set(loop: LoopDir, active: ActiveSet, pool: LesionData) -> LesionData:
    """The labeled part of the pool, with its masks, in labeling order."""
    ids = active.labeled_ids
    part = pool.select_ids(ids)
    part.masks = labeled_masks(loop, active, pool, ids)
    return part


def cold_start_ids(pool: LesionData, budget: int, *, config: LoopConfig, features: np.ndarray | None) -> list[str]:
    """The first ``budget`` pool ids to annotate, by the loop's :mod:`saal.selection` cold start."""
    if features is None:
        if config.cold_start != "random":
            raise SaalError(f"the {config.cold_start} cold start needs the pool's features")
        features = np.zeros((len(pool), 1), dtype=np.float32)
    strategy = make_cold_start(config.cold_start, n_clusters=config.n_clusters)
    return [pool.ids[i] for i in strategy.select(features, budget, seed=config.seed).indices]


def loop_query(config: LoopConfig, n_labeled: int) -> Query:
    """The query that picks the next batch once ``n_labeled`` images are labeled, built from the loop's settings.

    ``config.query`` (``cold-start-rule`` continues ``config.cold_start``), or ``config.query_then`` from
    ``config.switch_at`` labels on.
    """
    switched = config.query_then != "none" and n_labeled >= config.switch_at
    return make_query(config.query_then if switched else config.query, seed=config.seed, n_clusters=config.n_clusters,
                      reduction=config.reduction, cold_start=config.cold_start)


def query_ids(model: UNet | None, active: ActiveSet, pool: LesionData, k: int, *, query: Query,
              features: np.ndarray | None, mc_samples: int, seed: int, device: str = "auto") -> list[str]:
    """The next ``k`` unlabeled ids by ``query``, scoring the model's predictions when it needs them."""
    scores = None
    if query.needs_predictions:
        if model is None:
            raise SaalError(f"the {query.name} query needs a trained model: run 'saal train' first")
        unlabeled = pool.subset(active.unlabeled_indices)
        samples = mc_samples if query.heuristic.min_samples > 1 else 0
        batches = iter_predictions(model, unlabeled, device=device, mc_samples=samples, generator=generator(seed))
        scores = query.heuristic.score_batches(batches, n=len(unlabeled))
    return query.select(active, k, scores=scores, features=features)


def train_and_evaluate(loop: LoopDir, active: ActiveSet, pool: LesionData, test: LesionData | None, *,
                       config: LoopConfig, round: int, ssl_state: Mapping[str, torch.Tensor] | None,
                       progress: bool = True) -> tuple[UNet, dict[str, Any]]:
    """Train round ``round``'s model on the labeled set, evaluate it, write its files and record."""
    labeled = labeled_set(loop, active, pool)
    seg = config.seg
    init_state, transfer = (ssl_state, seg.transfer) if config.init == "ssl" else (None, None)
    if config.finetune == "continue" and round > 0 and (previous := loop.load_model("latest")) is not None:
        init_state, transfer = previous[0].state_dict(), "full"
    if config.init == "ssl" and init_state is None:
        raise SaalError("SSL initialisation needs the self-supervised weights (run 'saal pretrain')")
    unlabeled = None
    if seg.train == "semi":  # the pool minus the labeled set, without its masks: only images reach the trainer
        unlabeled = pool.subset(active.unlabeled_indices)
        unlabeled.masks = None
    model, log = train_segmentation(labeled, seg, unlabeled=unlabeled, init_state=init_state, transfer=transfer,
                                    seed=config.round_seed(round), progress=progress)
    record: dict[str, Any] = {
        "round": round, "n_labeled": len(labeled), "cold_start": config.cold_start, "init": config.init,
        "query": config.query, "train": log.train, "seed": config.seed, "train_seconds": round_to(log.wall_s, 2),
        "steps": log.steps,
    }
    write_csv(loop.file(f"labeled_round_{round}.csv"),
              [{"image_id": k, "round": active.round_of(k), "source": active.source_of(k)} for k in labeled.ids],
              ["image_id", "round", "source"])
    meta = {"round": round, "n_labeled": len(labeled), "labeled_ids": labeled.ids}
    if config.save_models:
        loop.save_model(model, f"round_{round}", meta)
    loop.save_model(model, "latest", meta)
    save_stop_predictions(loop.path, model, pool, round=round, seed=config.seed, device=seg.device, prior=seg.prior,
                          threshold=seg.threshold, tta=seg.tta)
    if test is not None:
        result = evaluate(model, test, device=seg.device, prior=seg.prior, threshold=seg.threshold, tta=seg.tta)
        result.write_csv(loop.file("eval", f"round_{round}.csv"))
        summary = result.summary
        for m in RECORD_METRICS:
            record[m] = summary[m]["mean"]
        record["dice_std"] = summary["dice"]["std"]
    loop.save_record(record)
    return model, record


def round_to(x: float, digits: int) -> float:
    return float(round(x, digits))


def plot_curve(loop: LoopDir, title: str) -> Path | None:
    """``learning_curve.png`` (Dice and HD95 per round) from the records; None without a test set."""
    rows = [r for r in loop.rounds() if r.get("dice") is not None]
    return plot_round_curve(loop.file("learning_curve.png"), rows, title=title) if rows else None


# ------------------------------------------------------------------------------ the simulated loop
def run_simulated(loop_dir: str | os.PathLike, pool: LesionData, test: LesionData | None, *,
                  config: LoopConfig, features: np.ndarray | None,
                  ssl_state: Mapping[str, torch.Tensor] | None, plan: Sequence[str] | None = None,
                  progress: bool = True) -> list[dict[str, Any]]:
    """Run every round with the pool's own masks as the annotator (the paper's simulation).

    Round 0 labels the cold-start selection (the first ``budgets[0]`` ids of
    ``plan``, a selection manifest's ids, when given; else the ``cold_start``
    strategy picks them); each later round queries up to the next budget.
    Whatever ``loop_dir`` already holds is reused, so an interrupted loop
    continues where it stopped; a finished one returns its records without
    recomputation.
    """
    if pool.masks is None:
        raise SaalError("a simulated loop needs masks for the pool; with unlabeled data use "
                        "'saal query' and 'saal annotate import'")
    if config.budgets[-1] > len(pool):
        raise SaalError(f"the largest budget {config.budgets[-1]} exceeds the pool of {len(pool)} images")
    loop = LoopDir(loop_dir)
    loop.path.mkdir(parents=True, exist_ok=True)
    loop.check_config(config)
    active = loop.load_active(pool.ids)
    done = {r["round"] for r in loop.rounds()}
    model: UNet | None = None
    for r, budget in enumerate(config.budgets):
        n_by_round = sum(1 for k in active.labeled_ids if (active.round_of(k) or 0) <= r)
        if n_by_round > budget or (n_by_round < budget and active.n_labeled > n_by_round):
            raise SaalError(f"{loop.path}: {n_by_round} images are labeled by round {r}, not its budget {budget}; "
                            "the directory belongs to another schedule")
        if active.n_labeled < budget:
            t0 = time.perf_counter()
            k = budget - active.n_labeled
            if r == 0 and plan is not None:
                if len(plan) < budget:
                    raise SaalError(f"the selection plan lists {len(plan)} images, fewer than the first budget "
                                    f"{budget}")
                new = list(plan[:budget])
            elif r == 0:
                new = cold_start_ids(pool, budget, config=config, features=features)
            else:
                query = loop_query(config, active.n_labeled)
                if model is None and query.needs_predictions:
                    loaded = loop.load_model("latest")
                    model = None if loaded is None else loaded[0]
                new = query_ids(model, active, pool, k, query=query, features=features,
                                mc_samples=config.mc_samples, seed=config.round_seed(r), device=config.seg.device)
            active.label(new, round=r, source="cold-start" if r == 0 else "oracle")
            loop.save_active(active)
            query_seconds = time.perf_counter() - t0
        else:
            query_seconds = None
        if r in done:
            model = None  # the next query reloads the newest model from disk
            continue
        asked = [k for k in active.labeled_ids if active.round_of(k) == r] if r else []
        extra = round_effort(loop.load_model("latest") if r else None, pool, asked, labeled_masks(
            loop, active, pool, asked), round=r, seg=config.seg)  # before it is replaced
        model, record = train_and_evaluate(loop, active, pool, test, config=config, round=r,
                                           ssl_state=ssl_state, progress=progress)
        if query_seconds is not None:
            extra["query_seconds"] = round_to(query_seconds, 2)
        if extra:
            loop.save_record({**record, **extra})
    if test is not None:
        plot_curve(loop, title=f"{config.cold_start} cold start, {config.init} init, {config.query} query")
    return loop.rounds()
