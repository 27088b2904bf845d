"""How much do the pre-annotations save? The annotation effort per round, default pipeline vs random picks.

Simulated runs (the data's own masks play the annotator) of the embedded synthetic set at a preset (default:
demo, budgets 10, 20, 40, 80), over ``--seeds`` seeds; per seed one pretraining and its features, shared by
two loops:

* ``default``: the preset's cold start and query (``saal-typical``, ``cold-start-rule``);
* ``random``: random picks throughout (random cold start, random query), the same initialisation.

Every round from the second on records its effort (:mod:`saal.active.effort`): over the images it asked for, the
Dice of the previous round's model's masks (their pre-annotations) against the true masks, and the share of pixels
an annotator changes to correct them. Printed: mean ± std over seeds per round and arm (of each run's mean over
its images), the paired difference, the seeds' mean of each run's median image, and the proposals' Dice.
Resumable (the loops continue where they stopped); ``--data`` takes a labeled folder instead of the embedded set.

    python benchmarks/bench_effort.py --out /work/runs/effort --seeds 3
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ARMS = {"default": {}, "random": {"cold_start": "random", "query": "random"}}


def run_seed(out: Path, seed: int, args) -> dict[str, list[dict]]:
    """The two loops of one seed (sharing its pretraining and features); their round records."""
    from saal.active.loop import run_simulated
    from saal.pipeline import pool_features, run_loop_config, ssl_state, ssl_weights
    from saal.workspace import open_workspace

    ws = open_workspace(out / f"seed{seed}", data=args.data, preset=args.preset, seed=seed, progress=False)
    ssl_weights(ws, progress=False)
    features = pool_features(ws, progress=False)
    records = {}
    for arm, options in ARMS.items():
        config = run_loop_config(ws, **options)
        t0 = time.perf_counter()
        records[arm] = run_simulated(ws.path(arm), ws.pool, ws.test, config=config, features=features,
                                     ssl_state=ssl_state(ws, config.init, progress=False), progress=False)
        print(f"seed {seed} {arm}: {time.perf_counter() - t0:.0f} s", flush=True)
    return records


def report(results: dict[int, dict[str, list[dict]]]) -> None:
    seeds = sorted(results)
    rounds = [r for r in results[seeds[0]]["default"] if "effort_changed" in r]
    print(f"\nannotation effort, {len(seeds)} seeds (mean ± std over seeds; pixels to change and proposal Dice in %)")
    print("| labels | new images | pixels to change: default | random | default minus random | "
          "median image: default | random | proposal Dice: default | random |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rounds:
        def values(arm: str, field: str) -> np.ndarray:
            return np.array([100 * next(x for x in results[s][arm] if x["round"] == r["round"])[field]
                             for s in seeds])

        changed = {arm: values(arm, "effort_changed") for arm in ARMS}
        median = {arm: values(arm, "effort_changed_median") for arm in ARMS}
        dice = {arm: values(arm, "effort_dice") for arm in ARMS}
        diff = changed["default"] - changed["random"]
        print(f"| {r['n_labeled']} | {r['effort_n']} | {changed['default'].mean():.2f} ± {changed['default'].std():.2f}"
              f" | {changed['random'].mean():.2f} ± {changed['random'].std():.2f} | {diff.mean():+.2f} "
              f"({int((diff < 0).sum())}/{len(seeds)} lower) | {median['default'].mean():.2f} | "
              f"{median['random'].mean():.2f} | {dice['default'].mean():.1f} ± {dice['default'].std():.1f} | "
              f"{dice['random'].mean():.1f} ± {dice['random'].std():.1f} |")
    for arm in ARMS:
        test = [np.mean([100 * x["dice"] for x in results[s][arm] if x["round"] == rounds[-1]["round"]])
                for s in seeds]
        print(f"test Dice at {rounds[-1]['n_labeled']} labels, {arm}: {np.mean(test):.1f} ± {np.std(test):.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--data", type=Path, default=None)
    args = parser.parse_args()
    results = {seed: run_seed(args.out, seed, args) for seed in range(args.seeds)}
    report(results)


if __name__ == "__main__":
    main()
