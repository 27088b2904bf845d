"""``saal serve``: the ML-backend protocol, masks learned through the checks of ``saal annotate import``, training in
the background, and a ``kill -9`` at any moment losing no recorded mask and counting none twice (issue 24).

The protocol runs in process through Starlette's test client; the kill test starts ``saal serve`` as a process
and plays Label Studio's webhooks with httpx. A real Label Studio server: tests/test_labelstudio_server.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from saal.active.annotate.labelstudio import LABEL_CONFIG
from saal.cli.main import main
from saal.config import get_preset
from saal.errors import SaalError
from saal.io import read_csv, read_json
from saal.pipeline import select_images
from saal.workspace import LOCK_FILE, open_workspace

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
brush = pytest.importorskip("label_studio_sdk.converter.brush")
httpx = pytest.importorskip("httpx")

from saal.serve import Backend, check_label_config, task_image_id  # noqa: E402
from saal.serve.backend import SERVE_LOCK  # noqa: E402
from saal.serve.app import MAX_BODY, create_app  # noqa: E402

with warnings.catch_warnings():  # starlette 1.x announces httpx2 for its test client; httpx (the SDK's) works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

pytestmark = pytest.mark.slow

TINY = get_preset("demo").with_overrides(
    name="tiny", image_size=32, synth_n=48, pool_size=36, test_size=12, ssl_epochs=1, seg_steps=3,
    seg_batch=4, budgets=(4, 8), n_clusters=3)


@pytest.fixture(scope="module")
def selected(tmp_path_factory) -> Path:
    """A tiny run, pretrained, with 4 images selected; tests work on copies."""
    run = tmp_path_factory.mktemp("base") / "run"
    select_images(open_workspace(run, preset=TINY, progress=False), 4, progress=False)
    return run


@pytest.fixture
def run(selected, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(selected, copy)
    return copy


def region(mask: np.ndarray, label: str = "Lesion", kind: str = "brushlabels") -> list[dict]:
    h, w = mask.shape
    return [{"from_name": "lesion", "to_name": "image", "type": kind, "original_width": w, "original_height": h,
             "value": {"format": "rle", "brushlabels": [label],
                       "rle": [int(v) for v in brush.mask2rle(mask.astype(np.uint8) * np.uint8(255))]}}]


def tasks_of(run: Path, round: int, first_id: int = 1) -> list[dict]:
    """The tasks Label Studio makes from a batch's tasks.json (ids as it numbers them)."""
    tasks = json.loads((run / f"annotate/round_{round}/labelstudio/tasks.json").read_text())
    return [{**t, "id": first_id + i} for i, t in enumerate(tasks)]


def annotation_event(task: dict, mask: np.ndarray, action: str = "ANNOTATION_CREATED", **fields) -> dict:
    """A webhook as Label Studio sends it (the serialised annotation and its task)."""
    return {"action": action, "annotation": {"id": 100 + task["id"], "task": task["id"], "result": region(mask),
                                             "was_cancelled": False, **fields},
            "task": task, "project": {"id": 1}}


def truth(ws) -> dict[str, np.ndarray]:
    return {k: ws.pool.masks[i].astype(bool) for i, k in enumerate(ws.pool.ids)}


def run_files(run: Path) -> dict[str, bytes]:
    """Every file of the run's loop folder, to check a refused request wrote nothing."""
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted((run / "active").rglob("*")) if p.is_file()}


def wait_for(condition, timeout: float = 120.0, what: str = "the backend"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"{what} did not get there in {timeout:.0f} s")


def test_label_config_and_task_ids():
    check_label_config(LABEL_CONFIG)
    with pytest.raises(SaalError, match="lacks <BrushLabels"):
        check_label_config('<View><Image name="image" value="$image"/><PolygonLabels name="lesion" '
                           'toName="image"><Label value="Lesion"/></PolygonLabels></View>')
    with pytest.raises(SaalError, match="not XML"):
        check_label_config("<View>")
    pool = {"ISIC_1", "a b"}
    assert task_image_id({"data": {"saal_id": "ISIC_1", "image": "/x/other.png"}}, pool) == "ISIC_1"
    assert task_image_id({"data": {"saal_id": "ISIC_9"}}, pool) is None  # saal_id wins, even when foreign
    assert task_image_id({"data": {"image": "/data/local-files/?d=imgs/a%20b.jpg"}}, pool) == "a b"
    assert task_image_id({"data": {"image": "https://host/x/0123abcd-ISIC_1.png"}}, pool) == "ISIC_1"
    assert task_image_id({"data": {"image": 5}}, pool) is None and task_image_id("x", pool) is None


def test_the_run_lock_is_shared_by_the_threads_of_a_process(tmp_path):
    """The backend records masks while its trainer holds the run: the hold ends with the last thread's block."""
    import threading

    from saal.workspace import run_lock

    inside, leave = threading.Event(), threading.Event()

    def trainer():
        with run_lock(tmp_path):
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=trainer)
    thread.start()
    inside.wait(10)
    for _ in range(200):  # another thread enters and leaves many times: the count stays exact
        with run_lock(tmp_path):
            assert (tmp_path / LOCK_FILE).exists()
    assert (tmp_path / LOCK_FILE).exists()  # still the trainer's
    leave.set()
    thread.join(10)
    assert not (tmp_path / LOCK_FILE).exists()


def test_refuses_a_run_without_selection(tmp_path, capsys):
    run = tmp_path / "run"
    ws = open_workspace(run, preset=TINY, progress=False)
    with pytest.raises(SaalError, match="no selection"):
        Backend(ws)
    before = sorted(p.name for p in run.iterdir())
    assert main(["serve", "--run", str(run), "--port", "1"]) == 2  # the selection is checked before anything
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err, err
    assert sorted(p.name for p in run.iterdir()) == before


def test_predict_learn_retrain_through_the_protocol(run):
    ws = open_workspace(run, progress=False)
    lines: list[str] = []
    backend = Backend(ws, poll_s=0.1, log=lines.append)
    backend.start()
    try:
        client = TestClient(create_app(backend))
        masks = truth(ws)
        health = client.get("/health").json()
        assert health["status"] == "UP" and health["batch_round"] == 0 and health["waiting"] == 4
        label_config = (run / "annotate/round_0/labelstudio/label_config.xml").read_text()
        version = client.post("/setup", json={"project": "1.1", "schema": label_config}).json()["model_version"]
        assert "cold start" in version

        # before any mask: no proposal, scores in the cold-start order (selection.csv), a foreign task scores 0
        tasks = tasks_of(run, 0)
        plan = [r["image_id"] for r in read_csv(run / "selection.csv")]
        answer = client.post("/predict", json={"tasks": tasks + [{"id": 99, "data": {"image": "/x/y.png"}}],
                                               "project": "1.1", "label_config": label_config}).json()
        assert answer["model_version"] == version and len(answer["results"]) == 5
        scores = {t["data"]["saal_id"]: p["score"] for t, p in zip(tasks, answer["results"])}
        assert sorted(scores, key=lambda k: -scores[k]) == plan and scores[plan[0]] == 1.0
        assert all(p["result"] == [] for p in answer["results"]) and answer["results"][-1]["score"] == 0

        # bad requests: one line each, nothing written
        before = run_files(run)
        outsider = next(k for k in ws.pool.ids if k not in plan)
        refused = [
            (client.post("/setup", json={"schema": "<View/>"}), 400),
            (client.post("/predict", json={"task": []}), 400),
            (client.post("/webhook", content=b"{not json"), 400),
            (client.post("/webhook", json={"annotation": {}}), 400),
            (client.post("/webhook", json={"action": "ANNOTATION_CREATED", "annotation": []}), 400),
            (client.get("/nowhere"), 404),
            (client.get("/webhook"), 405),
            (client.post("/webhook", content=b"{}", headers={"content-length": str(MAX_BODY + 1)}), 413),
            (client.post("/webhook", json=annotation_event({"id": 50, "data": {"saal_id": outsider}},
                                                           masks[outsider])), 409),
            (client.post("/webhook", json={**annotation_event(tasks[0], masks[plan[0]]),
                                           "annotation": {"id": 1, "result": region(masks[plan[0]], "Ruler")}}), 422),
            (client.post("/webhook", json={**annotation_event(tasks[0], masks[plan[0]]),
                                           "annotation": {"id": 1, "result": region(np.zeros((5, 7), bool))}}), 422),
        ]
        for response, status in refused:
            assert response.status_code == status, (response.status_code, response.text)
            error = response.json()["error"]
            assert error and "\n" not in error
        assert run_files(run) == before
        assert any("not in the batch the run waits for" in line for line in lines)
        assert client.post("/webhook", json={"action": "PROJECT_UPDATED"}).json()["status"] == "ignored"

        # the masks of the batch, one webhook each (a skipped task records nothing; a repeat counts once)
        skipped = annotation_event(tasks[0], masks[tasks[0]["data"]["saal_id"]], was_cancelled=True)
        assert client.post("/webhook", json=skipped).json()["status"] == "skipped"
        for task in tasks:
            got = client.post("/webhook", json=annotation_event(task, masks[task["data"]["saal_id"]])).json()
            assert got["status"] == "recorded"
        again = client.post("/webhook", json=annotation_event(tasks[0], masks[tasks[0]["data"]["saal_id"]]))
        assert again.json()["status"] == "unchanged"
        state = read_json(run / "active/state.json")
        assert sorted(e["id"] for e in state["labeled"]) == sorted(plan)
        assert {(e["round"], e["source"]) for e in state["labeled"]} == {(0, "annotator")}
        for image_id in plan:  # recorded exactly as 'saal annotate import' records a mask
            assert np.array_equal(np.asarray(Image.open(run / f"active/labels/{image_id}.png")) >= 128,
                                  masks[image_id])

        # the batch complete: trained in the background, the next batch chosen, a new version with masks
        wait_for(lambda: client.get("/health").json()["batch_round"] == 1)
        second = tasks_of(run, 1, first_id=11)
        answer = client.post("/predict", json={"tasks": tasks + second}).json()
        assert answer["model_version"] != version and "model of round 0 on 4 masks" in answer["model_version"]
        assert [p["score"] for p in answer["results"][:4]] == [0.0] * 4  # labeled: nothing left to gain
        ranks = {r["image_id"]: int(r["rank"]) for r in read_csv(run / "annotate/round_1/manifest.csv")}
        assert [p["score"] for p in answer["results"][4:]] == [(5 - ranks[t["data"]["saal_id"]]) / 4 for t in second]
        proposal = next(p for p in answer["results"] if p["result"])["result"][0]
        assert proposal["value"]["brushlabels"] == ["Lesion"] and proposal["original_width"] == 32

        # a corrected annotation replaces the recorded mask, the old file kept
        first = tasks[0]["data"]["saal_id"]
        fixed = client.post("/webhook", json=annotation_event(tasks[0], ~masks[first], "ANNOTATION_UPDATED"))
        assert fixed.json()["status"] == "replaced"
        assert (run / f"active/labels/replaced/{first}.0.png").is_file()
        assert np.array_equal(np.asarray(Image.open(run / f"active/labels/{first}.png")) >= 128, ~masks[first])

        # the second batch: learned, trained, and its record says how much the proposals had to change
        for task in second:
            assert client.post("/webhook", json=annotation_event(task, masks[task["data"]["saal_id"]])).status_code \
                == 200
        wait_for(lambda: client.get("/health").json()["batch_round"] == 2)
        rounds = [json.loads(x) for x in (run / "active/rounds.jsonl").read_text().splitlines()]
        assert [(r["round"], r["n_labeled"]) for r in rounds] == [(0, 4), (1, 8)]
        assert rounds[1]["effort_n"] == 4 and 0 <= rounds[1]["effort_changed"] <= 1 and "effort_dice" in rounds[1]
        assert not (run / LOCK_FILE).exists()  # idle: the run is free for CLI commands
        with pytest.raises(SaalError, match="served already"):
            Backend(open_workspace(run, progress=False)).start()  # but a second backend is refused
    finally:
        backend.close()
    assert not (run / SERVE_LOCK).exists()


def test_retrain_every_trains_before_the_batch_is_complete(run):
    ws = open_workspace(run, progress=False)
    backend = Backend(ws, retrain_every=2, poll_s=0.1, log=lambda line: None)
    backend.start()
    try:
        masks = truth(ws)
        tasks = tasks_of(run, 0)
        for task in tasks[:2]:
            backend.webhook(annotation_event(task, masks[task["data"]["saal_id"]]))
        wait_for(lambda: "model of round 0 on 2 masks" in backend.health()["model_version"])
        assert backend.health()["batch_round"] == 0 and backend.health()["waiting"] == 2  # the batch goes on
        answer = backend.predict({"tasks": tasks})
        assert [p["score"] for p in answer["results"][:2]] == [0.0, 0.0] and answer["results"][2]["score"] > 0
        assert backend.webhook({"action": "START_TRAINING", "project": {"id": 1}})["status"] == "training requested"
        wait_for(lambda: not backend.training and not backend._train_now, what="the requested training")
    finally:
        backend.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(run: Path, port: int, log) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "saal.cli.main", "serve", "--run", str(run), "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})  # tiny tensors: threads only wait
    url = f"http://127.0.0.1:{port}"

    def up():
        if proc.poll() is not None:
            pytest.fail(f"saal serve exited with {proc.returncode}")
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, timeout=90, what="saal serve")
    return proc


def _kill9(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def test_kill_9_at_any_moment_loses_no_mask_and_counts_none_twice(selected, tmp_path):
    """Killed after some acknowledged masks, and again in the middle of training: the restarts resume."""
    run = tmp_path / "run"
    shutil.copytree(selected, run)
    record = read_json(run / "run.json")  # long enough a training to be killed in the middle of it
    record["preset"]["seg_steps"] = 30
    (run / "run.json").write_text(json.dumps(record))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "serve.log", "w")
    proc = None
    try:
        proc = _start(run, port, log)
        ws = open_workspace(run, progress=False)
        masks = truth(ws)
        tasks = tasks_of(run, 0)

        def send(task):
            return httpx.post(f"{url}/webhook", json=annotation_event(task, masks[task["data"]["saal_id"]]),
                              timeout=30).json()["status"]

        assert [send(t) for t in tasks[:3]] == ["recorded"] * 3
        _kill9(proc)  # right after the third acknowledgement
        proc = _start(run, port, log)
        assert httpx.get(f"{url}/health").json()["labeled"] == 3  # nothing acknowledged was lost
        assert send(tasks[2]) == "unchanged"  # Label Studio resending an event counts nothing twice
        assert send(tasks[3]) == "recorded"  # the batch is complete: training starts
        def training_or_done():
            health = httpx.get(f"{url}/health").json()
            return health["training"] or health["batch_round"] == 1

        wait_for(training_or_done, what="the training")
        _kill9(proc)  # in the middle of it (on a fast machine perhaps just after)
        proc = _start(run, port, log)  # resumes: trains round 0 again, then chooses the next batch
        wait_for(lambda: httpx.get(f"{url}/health").json()["batch_round"] == 1, what="the resumed training")
        state = read_json(run / "active/state.json")
        assert sorted(e["id"] for e in state["labeled"]) == sorted(t["data"]["saal_id"] for t in tasks)
        rounds = [json.loads(x) for x in (run / "active/rounds.jsonl").read_text().splitlines()]
        assert [(r["round"], r["n_labeled"]) for r in rounds] == [(0, 4)]
        assert not list(run.rglob(".*.tmp"))
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        proc = None
        assert not (run / LOCK_FILE).exists()
    finally:
        if proc is not None and proc.poll() is None:
            _kill9(proc)
        log.close()
