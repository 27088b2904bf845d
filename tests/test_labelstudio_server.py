"""A real Label Studio round trip: saal's tasks and pre-annotations in, annotations submitted, the export back.

Starts a Label Studio server on localhost (nothing is installed at run time:
the executable comes from ``$SAAL_LABEL_STUDIO`` or the PATH; CI installs it in
its own environment, since its pinned dependencies do not mix with ours),
creates the project through the SDK, imports saal's ``tasks.json`` with the
model's masks as predictions, checks Label Studio serves the images, submits
annotations through the API, exports the project as JSON and runs
``saal annotate import`` on the export, two rounds over one project. A second
test connects ``saal serve`` as the project's ML backend (issue 24): predictions
arrive for the tasks, annotations submitted through the API reach the backend
through Label Studio's webhook, are recorded and trained on, the next
predictions change, and the backend is killed (``kill -9``) and restarted on the
way. The servers are stopped at the end; without Label Studio the tests are
skipped.
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
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from saal.cli.main import main
from saal.config import get_preset
from saal.io import read_csv
from saal.workspace import open_workspace

EXECUTABLE = os.environ.get("SAAL_LABEL_STUDIO") or shutil.which("label-studio")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(EXECUTABLE is None, reason="Label Studio is not installed: set SAAL_LABEL_STUDIO "
                                                            "to its 'label-studio' executable (CI installs it)")]
sdk = pytest.importorskip("label_studio_sdk")
brush = pytest.importorskip("label_studio_sdk.converter.brush")
httpx = pytest.importorskip("httpx")

TOKEN = "saal-test-token-0123456789"
TINY = get_preset("demo").with_overrides(
    name="tiny", image_size=32, synth_n=48, pool_size=36, test_size=12, ssl_epochs=1, seg_steps=3,
    seg_batch=4, budgets=(4, 8), n_clusters=3)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A fresh Label Studio (own data folder, legacy token enabled) serving local files below ``root``."""
    root = tmp_path_factory.mktemp("ls_root")
    data = tmp_path_factory.mktemp("ls_data")
    port = _free_port()
    env = {**os.environ, "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
           "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(root), "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
           "LATEST_VERSION_CHECK": "false", "COLLECT_ANALYTICS": "false",
           # the ML backend and its webhook are on localhost, which Label Studio refuses to call by default
           "ML_BLOCK_LOCAL_IP": "false", "SSRF_PROTECTION_ENABLED": "false"}
    log = open(data / "server.log", "w")
    proc = subprocess.Popen([EXECUTABLE, "start", "--no-browser", "--host", "127.0.0.1", "--port", str(port),
                             "--data-dir", str(data), "--username", "saal@example.com", "--password",
                             "saal-test-pass", "--user-token", TOKEN],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                pytest.fail(f"Label Studio exited ({proc.returncode}):\n{(data / 'server.log').read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"Label Studio did not answer in 300 s:\n{(data / 'server.log').read_text()[-3000:]}")
            time.sleep(2)
        yield url, root
    finally:
        _stop(proc)
        log.close()


def _stop(proc: subprocess.Popen) -> None:
    """End the server's whole process group; one that already exited (a failed start) has nothing left to end."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def _annotate(client, project_id: int, masks_for) -> None:
    """Submit one annotation per task still without one: ``masks_for(task)`` -> result regions."""
    for task in client.tasks.list(project=project_id):
        if task.total_annotations:
            continue
        client.annotations.create(id=task.id, result=masks_for(task), was_cancelled=False, ground_truth=False)


def _region(mask: np.ndarray) -> list[dict]:
    h, w = mask.shape
    return [{"from_name": "lesion", "to_name": "image", "type": "brushlabels", "original_width": w,
             "original_height": h, "value": {"format": "rle", "brushlabels": ["Lesion"],
                                             "rle": [int(v) for v in brush.mask2rle(mask.astype(np.uint8) * 255)]}}]


def _export(url: str, project_id: int, path: Path) -> Path:
    resp = httpx.get(f"{url}/api/projects/{project_id}/export", params={"exportType": "JSON"},
                     headers={"Authorization": f"Token {TOKEN}"}, timeout=60)
    resp.raise_for_status()
    path.write_bytes(resp.content)
    return path


def test_two_rounds_through_a_real_label_studio(server, tmp_path):
    url, root = server
    run = root / "run"
    ws = open_workspace(run, preset=TINY, progress=False)
    r = str(run)
    client = sdk.LabelStudio(base_url=url, api_key=TOKEN)
    assert main(["select", "--run", r, "--budget", "4", "-q"]) == 0
    assert main(["query", "--run", r, "--format", "labelstudio", "--ls-root", str(root), "-q"]) == 0
    first = run / "annotate/round_0"
    project = client.projects.create(title="saal round trip",
                                     label_config=(first / "labelstudio/label_config.xml").read_text())
    # one local-files storage over every round's batch, never synced: tasks come from tasks.json
    client.import_storage.local.create(project=project.id, path=str(run / "annotate"), use_blob_urls=True,
                                       title="saal batches")
    client.projects.import_tasks(id=project.id, request=json.loads((first / "labelstudio/tasks.json").read_text()))
    tasks = list(client.tasks.list(project=project.id))
    assert sorted(t.data["saal_id"] for t in tasks) == sorted(r["image_id"] for r in read_csv(first / "manifest.csv"))
    for task in tasks:  # Label Studio serves every image the tasks refer to
        got = httpx.get(url + task.data["image"], headers={"Authorization": f"Token {TOKEN}"}, timeout=30)
        assert got.status_code == 200 and got.content == (first / "images" / Path(
            next(r["image_file"] for r in read_csv(first / "manifest.csv")
                 if r["image_id"] == task.data["saal_id"])).name).read_bytes()

    truth = {k: ws.pool.masks[i] for i, k in enumerate(ws.pool.ids)}
    _annotate(client, project.id, lambda task: _region(truth[task.data["saal_id"]]))
    assert main(["annotate", "import", str(_export(url, project.id, tmp_path / "e0.json")), "--run", r, "-q"]) == 0
    labels = run / "active/labels"
    assert all(np.array_equal(np.asarray(Image.open(labels / f"{t.data['saal_id']}.png")) >= 128,
                              truth[t.data["saal_id"]].astype(bool)) for t in tasks)

    assert main(["train", "--run", r, "-q"]) == 0
    assert main(["query", "--run", r, "--format", "labelstudio", "--ls-root", str(root), "--query", "entropy",
                 "-q"]) == 0
    second = run / "annotate/round_1"
    client.projects.import_tasks(id=project.id, request=json.loads((second / "labelstudio/tasks.json").read_text()))
    new = {r["image_id"] for r in read_csv(second / "manifest.csv")}
    predicted = {}
    for task in client.tasks.list(project=project.id):
        if task.data["saal_id"] in new:
            (prediction,) = client.predictions.list(task=task.id)
            predicted[task.data["saal_id"]] = prediction.result
            assert prediction.model_version.startswith("saal round 0")
    assert set(predicted) == new
    # annotators accept the model's proposals as they are
    _annotate(client, project.id, lambda task: predicted[task.data["saal_id"]])
    assert main(["annotate", "import", str(_export(url, project.id, tmp_path / "e1.json")), "--run", r, "-q"]) == 0
    for image_id in new:
        proposal = np.asarray(Image.open(second / "predictions" / f"{image_id}.png")) > 0
        assert np.array_equal(np.asarray(Image.open(labels / f"{image_id}.png")) >= 128, proposal)
    assert main(["train", "--run", r, "-q"]) == 0
    rounds = [json.loads(x) for x in (run / "active/rounds.jsonl").read_text().splitlines()]
    assert [(x["round"], x["n_labeled"]) for x in rounds] == [(0, 4), (1, 8)]


def _wait(condition, what: str, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen in {timeout:.0f} s")
        time.sleep(0.5)
    return value


def _backend(run: Path, port: int, root: Path, log) -> subprocess.Popen:
    """``saal serve`` on ``run``, answering once its /health does."""
    proc = subprocess.Popen([sys.executable, "-m", "saal.cli.main", "serve", "--run", str(run), "--port", str(port),
                             "--ls-root", str(root)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})

    def up():
        if proc.poll() is not None:
            pytest.fail(f"saal serve exited with {proc.returncode}")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    _wait(up, "saal serve answering")
    return proc


def _predictions(client, project_id: int) -> dict[str, list]:
    """Ask the connected backend for every task's prediction ("Retrieve predictions"), then read them back."""
    client.actions.create(id="retrieve_tasks_predictions", project=project_id,
                          selected_items={"all": True, "excluded": []})
    return {task.data["saal_id"]: list(client.predictions.list(task=task.id))
            for task in client.tasks.list(project=project_id)}


def test_saal_serve_as_the_ml_backend_of_a_real_label_studio(server, tmp_path):
    url, root = server
    run = root / "served"
    ws = open_workspace(run, preset=TINY, progress=False)
    assert main(["select", "--run", str(run), "--budget", "4", "-q"]) == 0
    port = _free_port()
    backend_url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "serve.log", "w")
    proc = _backend(run, port, root, log)  # exports the cold-start batch at once
    try:
        client = sdk.LabelStudio(base_url=url, api_key=TOKEN)
        first = run / "annotate/round_0"
        project = client.projects.create(title="saal live",
                                         label_config=(first / "labelstudio/label_config.xml").read_text())
        client.import_storage.local.create(project=project.id, path=str(run / "annotate"), use_blob_urls=True,
                                           title="saal batches")
        client.projects.import_tasks(id=project.id, request=json.loads((first / "labelstudio/tasks.json").read_text()))
        client.ml.create(project=project.id, url=backend_url, title="saal")  # Label Studio checks /health, /setup

        # before any mask: no proposal, and the prediction scores list the cold-start order
        cold = _predictions(client, project.id)
        plan = [r["image_id"] for r in read_csv(run / "selection.csv")]
        assert all(len(p) == 1 and "cold start" in p[0].model_version and p[0].result == [] for p in cold.values())
        assert sorted(cold, key=lambda k: -cold[k][0].score) == plan

        truth = {k: ws.pool.masks[i] for i, k in enumerate(ws.pool.ids)}
        tasks = {t.data["saal_id"]: t for t in client.tasks.list(project=project.id)}

        def submit(image_id: str) -> None:
            client.annotations.create(id=tasks[image_id].id, result=_region(truth[image_id]), was_cancelled=False,
                                      ground_truth=False)

        def recorded() -> set[str]:
            state = run / "active/state.json"
            return {e["id"] for e in json.loads(state.read_text())["labeled"]} if state.is_file() else set()

        for image_id in plan[:2]:  # Label Studio's webhook brings each submitted annotation to the backend
            submit(image_id)
        _wait(lambda: recorded() == set(plan[:2]), "the first two masks recorded")
        os.killpg(proc.pid, signal.SIGKILL)  # kill -9 mid-way, then start again on the same address
        proc.wait(timeout=30)
        proc = _backend(run, port, root, log)
        assert recorded() == set(plan[:2])
        for image_id in plan[2:]:
            submit(image_id)
        # the batch is complete: the backend trains in the background and exports the next batch
        _wait(lambda: httpx.get(f"{backend_url}/health").json()["batch_round"] == 1, "the retraining")
        labels = run / "active/labels"
        assert all(np.array_equal(np.asarray(Image.open(labels / f"{k}.png")) >= 128, truth[k].astype(bool))
                   for k in plan)
        rounds = [json.loads(x) for x in (run / "active/rounds.jsonl").read_text().splitlines()]
        assert [(r["round"], r["n_labeled"]) for r in rounds] == [(0, 4)]

        second = run / "annotate/round_1"
        client.projects.import_tasks(id=project.id, request=json.loads((second / "labelstudio/tasks.json").read_text()))
        trained = _predictions(client, project.id)
        version = next(p.model_version for p in trained[plan[0]] if "model of round" in p.model_version)
        assert "model of round 0 on 4 masks" in version and version != cold[plan[0]][0].model_version
        latest = {k: next(p for p in ps if p.model_version == version) for k, ps in trained.items()}
        new = [r["image_id"] for r in sorted(read_csv(second / "manifest.csv"), key=lambda r: int(r["rank"]))]
        assert sorted(latest, key=lambda k: -latest[k].score)[:4] == new  # the next batch first, in query order
        assert all(latest[k].score == 0 for k in plan)  # annotated already
        assert any(latest[k].result for k in latest)  # the model's masks as pre-annotations now
        brushed = next(latest[k].result[0] for k in latest if latest[k].result)
        assert brushed["type"] == "brushlabels" and brushed["value"]["brushlabels"] == ["Lesion"]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        log.close()
