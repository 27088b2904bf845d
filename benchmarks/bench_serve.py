"""``saal serve``: how long one prediction takes at the image sizes of real dermoscopy, and one retraining.

* **Prediction latency** on the ISIC 2017 images at their original size (``../shared/data/isic2017-val-fullres``:
  1024x768 and 2592x1936): a run of the demo preset on that folder (pretraining cut to one epoch, which does not
  change the cost of a prediction), 4 images labeled from their masks, one training; then ``POST /predict`` of one
  task through the backend's HTTP routes (Starlette's in-process client: the request's JSON, the model, the mask at
  the image's size, the lesion prior, the brush RLE, the answer's JSON), with the model's cached probabilities
  dropped before every call, as when Label Studio asks for a task the first time. Median of ``--repeats`` per size.
* **Retraining**: what the backend's background training costs, ``train_model`` on the embedded set at the demo
  preset (64 px, 200 steps) at 10, 20 and 40 labels (labeled from the data's masks through the run's query):
  the training itself and the whole call (with the test evaluation and the stop set).

Threads: torch's default (all cores). Run on an idle machine for figures to quote.

    python benchmarks/bench_serve.py --out /tmp/bench_serve
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve()
FULLRES = HERE.parents[2] / "shared" / "data" / "isic2017-val-fullres"


def prediction_latency(out: Path, data: Path, repeats: int) -> dict[tuple[int, int], list[float]]:
    """Seconds per uncached ``/predict`` of one task, by image size (width, height)."""
    from saal.pipeline import query_next, select_images, train_model
    from saal.serve import Backend
    from saal.serve.app import create_app
    from saal.workspace import open_workspace

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    ws = open_workspace(out / "latency", data=data, preset="demo", settings={"ssl_epochs": 1}, progress=False)
    if not (ws.run_dir / "active" / "rounds.jsonl").is_file():
        select_images(ws, 4, progress=False)
        query_next(ws, oracle=True, progress=False)
        train_model(ws, progress=False)
    backend = Backend(ws, log=lambda line: None)
    backend.step(train=False)
    client = TestClient(create_app(backend))
    times: dict[tuple[int, int], list[float]] = {}
    for image_id in ws.pool.ids:
        size = ws.original_sizes[image_id]
        task = {"id": 1, "data": {"saal_id": image_id}}
        for _ in range(repeats):
            backend.snapshot.proposals.clear()
            t0 = time.perf_counter()
            answer = client.post("/predict", json={"tasks": [task]})
            times.setdefault(size, []).append(time.perf_counter() - t0)
            assert answer.status_code == 200, answer.text
        result = answer.json()["results"][0]
        print(f"{image_id} {size[0]}x{size[1]}: median {1000 * statistics.median(times[size][-repeats:]):.0f} ms, "
              f"{len(result['result'])} region(s), answer {len(answer.content) / 1024:.0f} KiB", flush=True)
    return times


def retrain_times(out: Path, labels: list[int]) -> list[dict]:
    """``train_model`` at each number of labels: the training's own seconds and the whole call's."""
    from saal.pipeline import query_next, select_images, train_model
    from saal.workspace import open_workspace

    ws = open_workspace(out / "retrain", preset="demo", settings={"ssl_epochs": 1}, progress=False)
    select_images(ws, labels[0], progress=False)
    rows, labeled = [], 0
    for n in labels:
        query_next(ws, k=None if labeled == 0 else n - labeled, oracle=True, progress=False)  # first: the selection
        labeled = n
        t0 = time.perf_counter()
        record = train_model(ws, progress=False)
        rows.append({"labels": record["n_labeled"], "train_s": record["train_seconds"],
                     "call_s": round(time.perf_counter() - t0, 1)})
        print(f"{record['n_labeled']} labels: training {record['train_seconds']:.1f} s, train_model "
              f"{rows[-1]['call_s']:.1f} s", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=FULLRES, help="full-resolution images with masks")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--labels", default="10,20,40")
    parser.add_argument("--skip-retrain", action="store_true")
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"bench_serve: {args.data} not found (the ISIC 2017 files live in ../shared/data)")
    times = prediction_latency(args.out, args.data, args.repeats)
    print("\nprediction latency (one task, uncached, median):")
    for (width, height), values in sorted(times.items()):
        print(f"  {width}x{height}: {1000 * statistics.median(values):.0f} ms over {len(values)} calls "
              f"(min {1000 * min(values):.0f}, max {1000 * max(values):.0f})")
    if not args.skip_retrain:
        rows = retrain_times(args.out, [int(x) for x in args.labels.split(",")])
        print("\nretraining (demo preset, 64 px, 200 steps):")
        for row in rows:
            print(f"  {row['labels']} labels: training {row['train_s']:.1f} s, the whole train_model {row['call_s']} s")


if __name__ == "__main__":
    main()
