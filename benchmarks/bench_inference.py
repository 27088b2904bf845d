"""What the lesion prior, the threshold rule and test-time augmentation add at inference, on trained models.

Inference options change no weights, so they are measured without retraining: every finished task of an
experiment folder (``saal experiment`` / ``benchmarks/bench_real.py``) keeps its last model
(``cells/<cell>/<seed>/models/latest.pt``); this script evaluates each one on the experiment's test set with
every combination of ``--priors``, ``--thresholds`` and ``--tta``, and prints Dice and HD95 per variant with the
paired difference to the first combination (wins, Wilcoxon p, worst replicate). Prints figures; not a test.

    python benchmarks/bench_inference.py runs/bench-real/isic
    python benchmarks/bench_inference.py runs/exp --cells saal-typical-ssl-cold-start-rule --priors none,lesion
    python benchmarks/bench_inference.py runs/exp --priors lesion --tta on --thresholds argmax,otsu,nonempty
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
from scipy import stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path, help="an experiment folder (holds run.json and cells/)")
    ap.add_argument("--cells", default=None, help="comma-separated cell names (default: every cell)")
    ap.add_argument("--priors", default="none,largest,fill,lesion")
    ap.add_argument("--thresholds", default="argmax", help="comma-separated rules of saal.segmentation.threshold")
    ap.add_argument("--tta", default="off,on", help="off, on or off,on")
    ap.add_argument("--replicates", default="*", help="glob of the replicate folders (e.g. 'seed*': the run's own "
                                                    "pretraining only)")
    args = ap.parse_args()

    from saal.active.loop import LoopDir
    from saal.segmentation import evaluate
    from saal.workspace import open_workspace

    ws = open_workspace(args.folder, create=False, progress=False)
    priors, thresholds = args.priors.split(","), args.thresholds.split(",")
    ttas = [{"off": False, "on": True}[t] for t in args.tta.split(",")]
    variants = [(p, r, t) for t in ttas for r in thresholds for p in priors]
    wanted = set(args.cells.split(",")) if args.cells else None
    tasks = sorted(d for d in (args.folder / "cells").glob(f"*/{args.replicates}") if (d / "models/latest.pt").is_file()
                   and (wanted is None or d.parent.name in wanted))
    if not tasks:
        raise SystemExit(f"bench_inference: no finished task with a model under {args.folder / 'cells'}")
    scores: dict[tuple[str, str, bool], dict[str, list[float]]] = {v: {"dice": [], "hd95": []} for v in variants}
    seconds = {v: 0.0 for v in variants}
    for task in tasks:
        model, meta = LoopDir(task).load_model("latest")
        for variant in variants:
            prior, threshold, tta = variant
            started = time.perf_counter()
            summary = evaluate(model, ws.test, device="cpu", prior=prior, threshold=threshold, tta=tta).summary
            seconds[variant] += time.perf_counter() - started
            for metric in ("dice", "hd95"):
                scores[variant][metric].append(summary[metric]["mean"])
    base = scores[variants[0]]
    print(f"{len(tasks)} models of {args.folder} ({', '.join(sorted({t.parent.name for t in tasks}))}), "
          f"test set {len(ws.test)} images; paired against prior={variants[0][0]}, threshold={variants[0][1]}, "
          f"TTA {'on' if variants[0][2] else 'off'}\n")
    print(f"{'prior':<9} {'threshold':<9} {'TTA':<4} {'Dice %':>16} {'worst':>6} {'HD95 px':>13} {'Dice diff':>15} "
          f"{'wins':>7} {'p':>7} {'HD95 diff':>10} {'s/model':>8}")
    for variant in variants:
        dice, hd95 = np.array(scores[variant]["dice"]), np.array(scores[variant]["hd95"])
        diff = 100 * (dice - np.array(base["dice"]))
        p = stats.wilcoxon(diff).pvalue if np.any(diff != 0) else math.nan
        print(f"{variant[0]:<9} {variant[1]:<9} {'yes' if variant[2] else 'no':<4} {100 * dice.mean():>8.1f} ± "
              f"{100 * dice.std():>4.1f} {100 * dice.min():>6.1f} {hd95.mean():>6.2f} ± {hd95.std():>4.2f} "
              f"{diff.mean():>+8.2f} ± {diff.std():>4.2f} {int((diff > 0).sum()):>3}/{len(diff):<3} {p:>7.3g} "
              f"{hd95.mean() - np.mean(base['hd95']):>+10.2f} {seconds[variant] / len(tasks):>8.2f}")


if __name__ == "__main__":
    main()
