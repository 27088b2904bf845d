"""The ML backend without HTTP: Label Studio's questions answered from the run directory, its annotations learned.

The run directory stays the one truth: every mask is recorded by :func:`saal.pipeline.import_mask` (the checks and
atomic writes of ``saal annotate import``), every training is :func:`saal.pipeline.train_model` and every batch
:func:`saal.pipeline.query_next`, so the CLI and the backend can take turns on one run, and what the backend keeps
in memory (the model, the batch's ranks) is only ever a copy of those files.

Three kinds of work share the process:

* request threads answer ``/predict`` from the published :class:`Snapshot`, a model and the batch it chose under
  one version string (Label Studio keeps predictions per version: a new model or a new batch is a new version,
  and only then does it ask again);
* request threads record webhook annotations, under ``_writing``, which the choice of a batch holds too (both
  rewrite the labeled set, ``state.json``);
* one worker thread trains when due, chooses the next batch once the waiting one is complete, then publishes.
  Training holds the run (:func:`saal.workspace.run_lock`, shared by the process's threads) but not
  ``_writing``: annotations keep arriving while the model trains. The worker holds the run only while it
  trains or chooses, never while idle, so CLI commands (``saal advise``, ``saal annotate import``) work
  between trainings.

Crash safety is the files': a mask is written before the labeled set names it, a round's record after its
model, so a process killed at any moment (``kill -9``) restarts with every recorded mask and none counted
twice, and the worker, which derives what is due from the files alone, redoes an interrupted training or
batch choice on its first turn.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Mapping
from urllib.parse import parse_qs, unquote, urlparse
from xml.etree import ElementTree

from ..active.annotate import Preannotations, preannotate, read_manifest
from ..active.annotate.labelstudio import FROM_NAME, LABEL, LABEL_CONFIG_FILE, TO_NAME, annotation_mask, prediction
from ..active.pool import ActiveSet
from ..data.names import shown
from ..errors import SaalError
from ..io import read_json
from ..locks import FileLock
from ..models.unet import UNet
from ..pipeline import import_mask, loop_dir, next_increment, query_next, run_loop_config, train_model
from ..pipeline.rounds import ANNOTATE_DIR, pending_batch
from ..pipeline.select import run_plan
from ..progress import say
from ..workspace import Workspace

#: Webhook actions whose annotations are learned; ``START_TRAINING`` (Label Studio's "Start Training") trains now.
ANNOTATION_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED")
#: Seconds between the worker's looks at the run when nothing wakes it (CLI commands change it too).
POLL_S = 2.0
#: Held by the serving process: two backends on one run would train and choose batches against each other.
SERVE_LOCK = ".saal.serve.lock"
_UPLOAD_PREFIX = re.compile(r"[0-9a-f]{8}-(.+)")  # Label Studio names an uploaded file <8 hex digits>-<its name>


class BadRequest(SaalError):
    """A request that is not what Label Studio's protocol sends (HTTP 400); nothing is recorded for it."""


def check_label_config(config: str) -> None:
    """Refuse a labeling interface whose brush label is not saal's: predictions would name regions it lacks."""
    try:
        root = ElementTree.fromstring(config)
    except ElementTree.ParseError as exc:
        raise BadRequest(f"the project's labeling interface is not XML ({exc})") from None
    images = {e.get("name") for e in root.iter("Image")}
    for brush in root.iter("BrushLabels"):
        if (brush.get("name"), brush.get("toName")) == (FROM_NAME, TO_NAME) and TO_NAME in images \
                and LABEL in {label.get("value") for label in brush.iter("Label")}:
            return
    raise BadRequest(f"the project's labeling interface lacks <BrushLabels name=\"{FROM_NAME}\" toName=\"{TO_NAME}\"> "
                     f"with <Label value=\"{LABEL}\"/> on <Image name=\"{TO_NAME}\">: paste saal's label config "
                     f"(RUN/annotate/round_N/labelstudio/{LABEL_CONFIG_FILE})")


def task_image_id(task: Any, pool: set[str] | frozenset[str]) -> str | None:
    """The pool image a Label Studio task shows, or None.

    ``data.saal_id`` when the task has one (saal's ``tasks.json``); else the file name of ``data.image`` without
    its extension, which is the image id for tasks made from the data folder itself (a local-files storage, or
    an upload, whose ``<8 hex digits>-`` prefix is dropped).

    >>> task_image_id({"data": {"image": "/data/local-files/?d=isic/ISIC_0000001.jpg"}}, {"ISIC_0000001"})
    'ISIC_0000001'
    >>> task_image_id({"data": {"image": "/data/upload/3/1a2b3c4d-ISIC_0000001.jpg"}}, {"ISIC_0000001"})
    'ISIC_0000001'
    """
    data = task.get("data") if isinstance(task, dict) else None
    if not isinstance(data, dict):
        return None
    if data.get("saal_id") is not None:
        return data["saal_id"] if isinstance(data["saal_id"], str) and data["saal_id"] in pool else None
    reference = data.get(TO_NAME)
    if not isinstance(reference, str):
        return None
    url = urlparse(reference)
    name = PurePosixPath(unquote(parse_qs(url.query).get("d", [url.path])[0])).stem
    if name in pool:
        return name
    uploaded = _UPLOAD_PREFIX.fullmatch(name)
    return uploaded.group(1) if uploaded and uploaded.group(1) in pool else None


@dataclass
class RunState:
    """The run's files between two steps of the worker: labeled set, waiting batch, newest model."""

    active: ActiveSet
    pending: dict[str, Any] | None  # :func:`saal.pipeline.rounds.pending_batch`
    meta: dict[str, Any] | None  # models/latest.json
    recorded: bool  # the newest model's round has its record (a killed training has none)

    @property
    def trained(self) -> set[str]:
        return set(self.meta.get("labeled_ids", [])) if self.meta else set()

    @property
    def current(self) -> bool:
        """Whether the newest model was trained, and recorded, on exactly the labeled set."""
        return self.meta is not None and self.recorded and self.trained == set(self.active.labeled_ids)

    @property
    def waiting(self) -> list[str]:
        """The images of the waiting batch still without a mask."""
        labeled = set(self.active.labeled_ids)
        return [] if self.pending is None else [i for i in self.pending["ids"] if i not in labeled]


@dataclass(frozen=True)
class Snapshot:
    """What predictions are made from: a model and the batch it chose, under one version string."""

    version: str
    model: UNet | None
    batch_round: int | None
    ranks: Mapping[str, int]  # images of the waiting batch without a mask -> rank (1: the query's first pick)
    batch_size: int
    labeled: frozenset[str]
    sizes: Mapping[str, tuple[int, int]]  # (width, height) of every exported image, from the manifests
    proposals: dict[str, Preannotations] = field(default_factory=dict)  # the model's, filled as asked

    def score(self, image_id: str) -> float:
        """Usefulness for the next batch: 1 for the query's first pick, down by rank to 1/k for its k-th, 0 else."""
        rank = self.ranks.get(image_id)
        return 0.0 if rank is None else (self.batch_size - rank + 1) / self.batch_size


def _stderr(line: str) -> None:
    say(f"{time.strftime('%H:%M:%S')} {line}")


class Backend:
    """The run ``ws`` as a Label Studio ML backend (see the module docstring).

    ``retrain_every``: train after that many new masks (None: once the waiting batch is complete, the preset's
    next budget step), and always when a batch is complete. New batches are exported for Label Studio
    (``tasks.json``), their images found under ``document_root`` (default: the run directory) or at
    ``image_url``, as ``saal query --format labelstudio`` does. ``log`` gets one line per event.
    """

    def __init__(self, ws: Workspace, *, retrain_every: int | None = None, document_root: str | Path | None = None,
                 image_url: str | None = None, poll_s: float = POLL_S, log: Callable[[str], None] | None = None):
        if run_plan(ws) is None:
            raise SaalError(f"{ws.run_dir} has no selection to start from: choose the first images with "
                            f"'saal select --run {ws.run_dir} --budget B' first")
        if retrain_every is not None and retrain_every < 1:
            raise SaalError(f"--retrain-every must be at least 1, got {retrain_every}")
        self.ws = ws
        self.loop = loop_dir(ws)
        self.config = run_loop_config(ws)
        self.retrain_every = retrain_every
        self.export = {"document_root": document_root, "image_url": image_url}
        self.poll_s = poll_s
        self.log = log or _stderr
        self.training = False
        self._pool = frozenset(ws.pool.ids)
        self._writing = threading.Lock()  # recording a mask, choosing a batch: both rewrite the labeled set
        self._predicting = threading.Lock()  # one forward pass at a time through the shared model
        self._publishing = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._train_now = False
        self._worker: threading.Thread | None = None
        self._serving = FileLock(ws.path(SERVE_LOCK))
        self._snapshot: Snapshot | None = None
        self._signature: tuple | None = None
        self._model: tuple[tuple, UNet, dict[str, Any], str] | None = None  # file key, model, meta, short hash
        self._last_problem: str | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Export the first batch if the run has none, publish, and start the worker (it trains when due).

        A run another command holds, a run another backend serves, or any other problem now, is raised: the
        server does not start.
        """
        if not self._serving.acquire():
            owner = self._serving.holder()
            raise SaalError(f"{self.ws.run_dir} is served already ({owner.describe() if owner else 'another process'}"
                            "): one saal serve per run")
        try:
            self.step(train=False)
        except BaseException:
            self._serving.release()
            raise
        self._wake.set()  # the first turn at once: a training an earlier process left unfinished resumes now
        self._worker = threading.Thread(target=self._work, name="saal-serve-worker", daemon=True)
        self._worker.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker; a training in progress is abandoned (the next start redoes it)."""
        self._stop.set()
        self._wake.set()
        if self._worker is not None:
            self._worker.join(timeout)
        self._serving.release()

    def _work(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.step()
                self._last_problem = None
            except SaalError as exc:
                self._problem(str(exc))
            except Exception as exc:  # keep serving: the run's files are intact, the next turn retries
                self._problem(f"{type(exc).__name__}: {exc}", detail=traceback.format_exc())

    def _problem(self, line: str, detail: str = "") -> None:
        """Log a problem of the worker once, not at every turn while it lasts."""
        if line != self._last_problem:
            self.log(f"waiting: {line}" + (f"\n{detail}" if detail else ""))
            self._last_problem = line

    # -- the worker's turn -----------------------------------------------------------------------------------
    def read_state(self) -> RunState:
        active = self.loop.load_active(self.ws.pool.ids)
        meta_file = self.loop.file("models", "latest.json")
        meta = read_json(meta_file) if meta_file.is_file() and self.loop.file("models", "latest.pt").is_file() \
            else None
        recorded = meta is not None and any(r.get("round") == meta.get("round")
                                            and r.get("n_labeled") == meta.get("n_labeled") for r in self.loop.rounds())
        return RunState(active, pending_batch(self.ws, self.loop), meta, recorded)

    def _training_due(self, state: RunState) -> bool:
        if state.active.n_labeled == 0:
            return False
        if self._train_now:
            return True
        if state.current:
            return False
        if state.meta is not None and not state.recorded:
            return True  # a training stopped between its model and its record: redo it
        new = len(set(state.active.labeled_ids) - state.trained)
        return not state.waiting or (self.retrain_every is not None and new >= self.retrain_every)

    @staticmethod
    def _query_due(state: RunState) -> bool:
        if state.active.n_unlabeled == 0 or state.waiting:
            return False
        return state.active.n_labeled == 0 or state.current

    def step(self, *, train: bool = True) -> None:
        """One turn: train when due, choose the next batch once the waiting one is complete, publish."""
        state = self.read_state()
        if train and self._training_due(state):
            self.training = True
            self._train_now = False
            try:
                record = train_model(self.ws, progress=False)
            finally:
                self.training = False
            score = f"; test Dice {100 * record['dice']:.1f}" if record.get("dice") is not None else ""
            self.log(f"trained round {record['round']} on {record['n_labeled']} masks in "
                     f"{record['train_seconds']:.0f} s{score}")
            state = self.read_state()
        if self._query_due(state):
            with self._writing:
                n = state.active.n_labeled
                k = min(next_increment(self.ws.preset.budgets, n), state.active.n_unlabeled) if n else None
                result = query_next(self.ws, k=k, format="labelstudio", progress=False, **self.export)
            self.log(f"round {result.round}: the next {len(result.ids)} images to annotate are chosen "
                     f"(tasks: {result.batch_dir}/labelstudio/tasks.json)")
            state = self.read_state()
        self._publish(state)

    def _load_model(self) -> tuple[UNet, dict[str, Any], str] | None:
        """The newest model, loaded again only when its files changed; with a short hash of its weights."""
        files = [self.loop.file("models", f"latest.{ext}") for ext in ("pt", "json")]
        key = tuple((f.stat().st_mtime_ns, f.stat().st_size) if f.is_file() else None for f in files)
        if self._model is None or self._model[0] != key:
            loaded = self.loop.load_model("latest")
            self._model = None if loaded is None else (
                key, loaded[0], loaded[1], hashlib.sha1(files[0].read_bytes()).hexdigest()[:8])
        return None if self._model is None else self._model[1:]

    def _publish(self, state: RunState) -> None:
        """Make the model and the waiting batch the ones predictions come from (a new version when either changed)."""
        model = self._load_model()
        pending = state.pending
        batch_round = None if pending is None else int(pending["round"])
        labeled = frozenset(state.active.labeled_ids)
        signature = (None if model is None else model[2], batch_round, labeled)
        if signature == self._signature:
            return
        sizes: dict[str, tuple[int, int]] = {}
        ranks: dict[str, int] = {}
        for folder in sorted(self.ws.path(ANNOTATE_DIR).glob("round_*")):
            if not (folder / "manifest.csv").is_file():
                continue
            for row in read_manifest(folder):
                sizes[row["image_id"]] = (int(row["width"]), int(row["height"]))
                if pending is not None and folder.resolve() == Path(pending["batch_dir"] or "").resolve():
                    ranks[row["image_id"]] = int(row["rank"])
        batch_size = len(ranks)
        ranks = {i: r for i, r in ranks.items() if i not in labeled}
        what = "cold start, no model yet" if model is None else (
            f"model of round {model[1].get('round')} on {model[1].get('n_labeled')} masks ({model[2]})")
        version = f"saal {self.ws.run_dir.name}: {what}; batch of round {batch_round}"
        with self._publishing:
            old = self._snapshot
            proposals = old.proposals if old is not None and old.version == version else {}
            self._snapshot = Snapshot(version, None if model is None else model[0], batch_round, ranks,
                                      batch_size, labeled, sizes, proposals)
            self._signature = signature
        if old is None or old.version != version:
            self.log(f"serving {version} ({len(ranks)} of its images to annotate)")

    # -- the protocol ----------------------------------------------------------------------------------------
    @property
    def snapshot(self) -> Snapshot:
        if self._snapshot is None:
            raise SaalError("the backend has not started: call start() first")
        return self._snapshot

    def health(self) -> dict[str, Any]:
        snap = self.snapshot
        return {"status": "UP", "model_class": "saal", "model_version": snap.version, "run": str(self.ws.run_dir),
                "labeled": len(snap.labeled), "batch_round": snap.batch_round, "waiting": len(snap.ranks),
                "training": self.training}

    def setup(self, body: Any) -> dict[str, Any]:
        """Label Studio connects, and asks again before predicting: our version; its labeling interface checked."""
        if not isinstance(body, dict):
            raise BadRequest("a setup request is a JSON object")
        schema = body.get("schema")
        if schema is not None:
            if not isinstance(schema, str):
                raise BadRequest(f"'schema' is {type(schema).__name__}, expected the labeling interface as text")
            check_label_config(schema)
        return {"model_version": self.snapshot.version}

    def versions(self) -> dict[str, Any]:
        return {"versions": [self.snapshot.version]}

    def predict(self, body: Any) -> dict[str, Any]:
        """One prediction per task: the model's mask (none before a model exists) and the usefulness score."""
        tasks = body.get("tasks") if isinstance(body, dict) else None
        if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
            raise BadRequest("a predict request is a JSON object with 'tasks', a list of task objects")
        snap = self.snapshot
        ids = [task_image_id(t, self._pool) for t in tasks]
        foreign = [t for t, i in zip(tasks, ids) if i is None]
        if foreign:
            first = foreign[0]
            self.log(f"predict: {len(foreign)} of {len(tasks)} task(s) show no image of this run's pool (first: task "
                     f"{shown(first.get('id', '?'))}, {shown((first.get('data') or {}).get(TO_NAME))}): empty "
                     "predictions, score 0")
        if snap.model is not None:
            missing = sorted({i for i in ids if i is not None and i not in snap.proposals})
            if missing:
                with self._predicting:
                    made = preannotate(snap.model, self.ws.pool, missing, model_version=snap.version,
                                       prior=self.config.seg.prior, threshold=self.config.seg.threshold,
                                       tta=self.config.seg.tta)
                snap.proposals.update(dict.fromkeys(missing, made))
        results = []
        for image_id in ids:
            mask = None
            if image_id is not None and snap.model is not None:
                mask = snap.proposals[image_id].mask(image_id, *self._size(snap, image_id))
            score = 0.0 if image_id is None else snap.score(image_id)
            results.append(prediction(mask, model_version=snap.version, score=score))
        return {"results": results, "model_version": snap.version}

    def _size(self, snap: Snapshot, image_id: str) -> tuple[int, int]:
        """(width, height) Label Studio shows the image at: its exported file's, else the original's, else the
        training size (an image of the embedded set, exported as a PNG of that size)."""
        size = self.ws.pool.image_size
        return snap.sizes.get(image_id) or self.ws.original_sizes.get(image_id) or (size, size)

    def webhook(self, body: Any) -> dict[str, Any]:
        """Label Studio's events: annotations are learned, "Start Training" trains now, the rest is ignored."""
        if not isinstance(body, dict) or not isinstance(body.get("action"), str):
            raise BadRequest("not a Label Studio webhook: expected a JSON object with an 'action'")
        action = body["action"]
        if action == "START_TRAINING":
            self._train_now = True
            self._wake.set()
            return {"status": "training requested"}
        if action not in ANNOTATION_ACTIONS:
            return {"status": "ignored", "action": action}
        pairs = _annotations_with_tasks(body, action)
        outcomes, refused = [], []
        for annotation, task in pairs:
            try:
                outcomes.append(self._learn(annotation, task))
            except SaalError as exc:
                if len(pairs) == 1:
                    raise
                refused.append(str(exc))
        if refused:
            raise SaalError(f"{len(refused)} of {len(pairs)} annotations refused, the others recorded; first: "
                            f"{refused[0]}")
        return outcomes[0] if len(outcomes) == 1 else {"status": "recorded", "annotations": outcomes}

    def _learn(self, annotation: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
        """Record one annotation's mask (or nothing, for a skipped task)."""
        image_id = task_image_id(task, self._pool)
        where = (f"image {image_id} (task {shown(task.get('id', '?'))}, annotation "
                 f"{shown(annotation.get('id', '?'))})")
        if annotation.get("was_cancelled"):
            return {"status": "skipped", "image": image_id}
        if image_id is None:
            raise SaalError(f"task {shown(task.get('id', '?'))} ({shown((task.get('data') or {}).get(TO_NAME))}) "
                            "shows no image of this run's pool: only the run's images can be learned")
        with self._writing:
            result = import_mask(self.ws, image_id, lambda size: annotation_mask(annotation, size, where))
        status = "recorded" if result.added else "replaced" if result.replaced else "unchanged"
        if status != "unchanged":
            self._mark_labeled(image_id)
            self._wake.set()
        snap = self.snapshot
        self.log(f"{status} {where}: {len(snap.labeled)} masks in all, {len(snap.ranks)} of round "
                 f"{snap.batch_round} still to annotate")
        return {"status": status, "image": image_id}

    def _mark_labeled(self, image_id: str) -> None:
        """Show a new mask at once (its score drops to 0) until the worker publishes again from the files."""
        with self._publishing:
            snap = self.snapshot
            self._snapshot = replace(snap, labeled=snap.labeled | {image_id},
                                     ranks={i: r for i, r in snap.ranks.items() if i != image_id})


def _annotations_with_tasks(body: dict[str, Any], action: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The (annotation, task) pairs of an annotation webhook (one, or several for ``ANNOTATIONS_CREATED``)."""
    annotation, task = body.get("annotation"), body.get("task")
    if isinstance(annotation, dict) and isinstance(task, dict):
        return [(annotation, task)]
    if isinstance(annotation, list) and isinstance(task, list):
        tasks = {t.get("id"): t for t in task if isinstance(t, dict)}
        if not all(isinstance(a, dict) and a.get("task") in tasks for a in annotation):
            raise BadRequest(f"{action}: an annotation names no task the webhook carries")
        return [(a, tasks[a["task"]]) for a in annotation]
    raise BadRequest(f"{action} without its 'annotation' and 'task' objects: the webhook must send its payload "
                     "(connecting saal serve as the project's model adds such a webhook)")
