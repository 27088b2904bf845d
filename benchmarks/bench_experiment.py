"""End-to-end benchmark: the ``demo`` experiment matrix on the embedded dataset (prints figures; not a test).

Runs ``saal experiment --preset demo`` through the Python API (shared SSL pretraining and features,
then every cold start x initialisation x seed as a simulated active-learning loop, plus full
supervision), and prints the label-efficiency figures:

* per cell, the Dice at the smallest budget: mean ± std over seeds and the worst seed;
* each cold start's gap to random per budget (against random with the same initialisation and
  query; the SAAL-minus-random gap among them): mean ± std of the per-seed differences, wins,
  paired Wilcoxon and t-test p-values;
* the same for every SSL-initialised cell against the same cell trained from scratch;
* the end-to-end wall time (an existing ``--out`` resumes: finished cells are not rerun, so use a
  new folder to time a full run).

    python benchmarks/bench_experiment.py                            # demo, 3 seeds, 2 workers
    python benchmarks/bench_experiment.py --seeds 5 --out runs/bench-exp5
    python benchmarks/bench_experiment.py --seeds 1 --steps 5 --ssl-epochs 1 --pool 40   # a quick check
    python benchmarks/bench_experiment.py --budgets 10 --seeds 10 --cold-starts random,saal,typiclust
                                                                # the cold start alone, over 10 seeds
    python benchmarks/bench_experiment.py --budgets 10 --seeds 10 --ssl-seed 3 --out runs/exp-s3
                                                                # ... on another pretraining run
    python benchmarks/bench_experiment.py --budgets 10 --seeds 10 --data ~/data/ISIC2017 --out runs/exp-isic
                                                                # ... on a dataset folder
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path


def _pct(x: float) -> str:
    return f"{100 * x:5.1f}" if math.isfinite(x) else "  n/a"


def _p(x: float) -> str:
    return f"{x:.3g}" if math.isfinite(x) else "n/a"


def print_paired(results, name: str, reference: str, what: str) -> None:
    """Per budget: ``name`` minus ``reference`` in Dice points, paired by seed, with wins and p-values."""
    from saal.experiments import paired_tests

    print(f"\n{name} minus {reference} ({what}), Dice points (paired by seed)")
    print(f"  {'labels':>6} {'mean':>6} ± {'std':>4}  wins  Wilcoxon p  t-test p")
    for p in paired_tests(results, reference, "dice"):
        if p.cell == name:
            std = f"{100 * p.std_diff:4.1f}" if math.isfinite(p.std_diff) else " n/a"
            print(f"  {p.n_labeled:>6} {100 * p.mean_diff:+6.1f} ± {std}  {p.wins:>2}/{p.n_pairs:<2} "
                  f"{_p(p.p_wilcoxon):>10}  {_p(p.p_ttest):>8}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="experiment folder (default: a new temporary one)")
    ap.add_argument("--cold-starts", default=None, help="cold starts, comma-separated (default: the demo matrix)")
    ap.add_argument("--steps", type=int, default=None, help="override the preset's segmentation steps (quick checks)")
    ap.add_argument("--ssl-epochs", type=int, default=None, help="override the preset's pretraining epochs")
    ap.add_argument("--pool", type=int, default=None, help="override the preset's pool size")
    ap.add_argument("--inits", default=None, help="initialisations, comma-separated (default: ssl,scratch)")
    ap.add_argument("--data", type=Path, default=None,
                    help="a dataset folder with masks (default: the embedded synthetic set)")
    ap.add_argument("--ssl-seed", type=int, default=None,
                    help="seed of the one shared pretraining run (the run directory's seed; default 0): the "
                         "experiment seeds vary selection and training, not the pretraining")
    ap.add_argument("--budgets", default=None,
                    help="override the budgets, comma-separated; one budget = the cold start alone, no AL rounds")
    args = ap.parse_args()

    from saal.config import get_preset
    from saal.experiments.runner import run_experiment
    from saal.experiments import budget_stats, load_results

    preset = get_preset("demo")
    budgets = tuple(int(b) for b in args.budgets.split(",")) if args.budgets else None
    overrides = dict(seg_steps=args.steps, ssl_epochs=args.ssl_epochs, pool_size=args.pool, budgets=budgets)
    if any(v is not None for v in overrides.values()):
        preset = preset.with_overrides(name="demo-reduced", **overrides)
    out = args.out or Path(tempfile.mkdtemp(prefix="saal-bench-exp-")) / "run"
    started = time.perf_counter()
    results_csv = run_experiment(out, data=args.data, preset=preset, seeds=args.seeds, cold_starts=args.cold_starts,
                                 inits=args.inits, workers=args.workers, progress=False, seed=args.ssl_seed)
    wall = time.perf_counter() - started
    results = load_results(results_csv)

    smallest = min(results.budgets)
    from saal.data import load_split
    from saal.io import read_json

    split = load_split(out)
    record = read_json(out / "run.json")
    print(f"data {record['source']}: pool {len(split.pool)}, test {len(split.test)}; preset {preset.name}: "
          f"{preset.image_size} px, budgets {list(preset.budgets)}, {preset.seg_steps} steps, SSL seed "
          f"{record['seed']}, {args.seeds} seeds, {args.workers} workers")
    print(f"\nDice (%) at {smallest} labeled images")
    print(f"  {'cell':<26} {'mean':>5} ± {'std':>4}  {'worst':>5} (seed)")
    for st in budget_stats(results, "dice"):
        if st.n_labeled == smallest:
            std = f"{100 * st.std:4.1f}" if math.isfinite(st.std) else " n/a"
            print(f"  {st.cell:<26} {_pct(st.mean)} ± {std}  {_pct(st.worst)} ({st.worst_replicate[1]})")
    full = [r.dice for r in results.full_rows]
    if full:
        print(f"  {'full supervision':<26} {_pct(sum(full) / len(full))}  ({len(full)} seeds)")

    names = set(results.cells)
    pairs = []  # (cell, reference, what the difference measures)
    for name in results.cells:
        cold, _, rest = name.partition("-")
        init, _, query = rest.partition("-")
        if cold != "random":  # every cold start against random with the same init and query
            pairs.append((name, f"random-{rest}", "cold start"))
        if init == "ssl":  # every SSL-initialised cell against the same cell from scratch
            pairs.append((name, "-".join(filter(None, [cold, "scratch", query])),
                          "SSL initialisation against training from scratch"))
    for name, reference, what in pairs:
        if reference in names:
            print_paired(results, name, reference, what)
    print(f"\nend-to-end wall time: {wall:.0f} s ({wall / 60:.1f} min); results in {out}")


if __name__ == "__main__":
    main()
