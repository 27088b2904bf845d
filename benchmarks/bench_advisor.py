"""Does ``saal advise`` forecast well? Fit on the rounds up to 40 labels, forecast 80 and 160, compare with the truth.

Simulated runs (the data's own masks play the annotator) of the default pipeline (the preset's cold start and
query, SSL initialisation) with budgets 10, 20, 40, 80, 160, over ``--seeds`` seeds, on two datasets:

* ``embedded``: the embedded synthetic data at the demo preset;
* ``isic``: pool = the 1000 training images of ``isic2017-train1000-256``, test = the 150 official validation
  images of ``isic2017-val-256`` (from ``../shared/data``, linked as :mod:`bench_real` does), 64 px, 200 steps.

The runs are an ordinary experiment (:func:`saal.experiments.runner.run_experiment`, one cell) in ``OUT/<set>``,
resumable; a rerun, or ``--analyse-only``, recomputes nothing. ``--reuse-<set> EARLIER`` starts the folder from an
earlier experiment of the same settings with fewer budgets (for example a :mod:`bench_real` folder with budgets
10, 20, 40): its split, pretraining, features and finished cells are copied, so only the missing rounds train.

For every seed, the advisor (:func:`saal.advise.advise_rounds`) sees only the rounds up to ``--fit-upto`` labels and
their per-test-image Dice (``eval/round_N.csv``, the bootstrap's resampling unit); its forecasts at the later
budgets are compared with the Dice the run then measured. Printed per dataset and budget: each seed's forecast,
interval and measured value, the mean absolute error and the mean signed error (bias), and the interval's coverage
(how often the measured value fell inside). The issue's bar: mean absolute error at 80 labels <= 2 Dice points.

    python benchmarks/bench_advisor.py --out /work/runs/advisor --seeds 10 --workers 2
    python benchmarks/bench_advisor.py --out /work/runs/advisor --analyse-only
    python benchmarks/bench_advisor.py --out /work/runs/advisor --analyse-only --crossval 3   # + no-test-mask curve
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))
DEFAULT_DATA_ROOT = HERE.parents[2] / "shared" / "data"
SETS = ("embedded", "isic")
SHARED_STAGE = ("run.json", "split", "ssl", "features")


# ---------------------------------------------------------------------------------------------- running
def preset_for(args, folder: Path):
    """The folder's recorded preset with ``--budgets`` (a run grows to more budgets); a new folder: demo at 64 px."""
    from saal.config import Preset, get_preset
    from saal.io import read_json

    budgets = tuple(int(b) for b in args.budgets.split(","))
    if (folder / "run.json").is_file():
        return Preset.from_record(read_json(folder / "run.json")["preset"]).with_overrides(budgets=budgets)
    name = "demo" if args.set == "embedded" else "yardstick-64"
    return get_preset("demo").with_overrides(name=name, image_size=64, seg_steps=200, budgets=budgets)


def reuse(earlier: Path, folder: Path, cell: str, seeds: int) -> None:
    """Start ``folder`` from ``earlier``: the shared stage and ``cell``'s finished seeds, copied once."""
    if (folder / "run.json").is_file():
        return
    if not (earlier / "run.json").is_file():
        sys.exit(f"bench_advisor: {earlier} holds no experiment (no run.json)")
    folder.mkdir(parents=True, exist_ok=True)
    for name in SHARED_STAGE:
        source = earlier / name
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, folder / name)
    for k in range(seeds):
        source = earlier / "cells" / cell / f"seed{k}"
        if (source / "done.json").is_file():
            shutil.copytree(source, folder / "cells" / cell / f"seed{k}")


def run_set(args) -> Path:
    """Run (or finish) the one-cell experiment of ``args.set`` in ``OUT/<set>``; returns the folder."""
    from saal.experiments.runner import run_experiment

    folder = args.out / args.set
    earlier = getattr(args, f"reuse_{args.set}")
    if earlier is not None:
        reuse(earlier, folder, cell_name(args), args.seeds)
    data, options = None, {}
    if args.set == "isic" and not (folder / "run.json").is_file():
        from bench_real import link_dataset

        data, options = link_dataset("isic", args.data_root, args.out), {"split_mode": "official"}
    started = time.perf_counter()
    run_experiment(folder, data=data, preset=preset_for(args, folder), seeds=args.seeds, cold_starts=args.cold_start,
                   inits="ssl", queries=args.query, full_seeds=0, workers=args.workers, report=False,
                   progress=not args.quiet, **options)
    print(f"[{args.set}] {time.perf_counter() - started:.0f} s", flush=True)
    return folder


def cell_name(args) -> str:
    from saal.experiments.matrix import Cell

    return Cell(args.cold_start, "ssl", args.query).name


# -------------------------------------------------------------------------------------------- analysing
def seed_dirs(folder: Path, cell: str) -> list[tuple[int, Path]]:
    """``(seed, loop folder)`` of every finished seed of ``cell``, by seed."""
    found = [(int(d.name.removeprefix("seed")), d) for d in (folder / "cells" / cell).glob("seed*")
             if (d / "done.json").is_file()]
    return sorted(found)


def analyse(folder: Path, cell: str, fit_upto: int, targets: list[int]) -> list[dict]:
    """One row per (seed, target budget): the advisor's forecast from the rounds up to ``fit_upto`` and the truth."""
    from saal.advise import advise_loop
    from saal.io import read_jsonl

    rows = []
    for seed, directory in seed_dirs(folder, cell):
        measured = {r["n_labeled"]: r["dice"] for r in read_jsonl(directory / "rounds.jsonl")}
        advice = advise_loop(directory, budgets=targets, max_labels=fit_upto, seed=seed)
        if advice.curve is None:
            print(f"  seed {seed}: no curve ({advice.why_no_curve})")
            continue
        for t in targets:
            if t in measured:
                f = advice.forecasts[t]
                rows.append({"seed": seed, "budget": t, "forecast": f.value, "low": f.low, "high": f.high,
                             "measured": measured[t], "at_fit": measured[fit_upto], "c": advice.curve.c,
                             "verdict": advice.verdict})
    return rows


def analyse_crossval(folder: Path, cell: str, fit_upto: int, targets: list[int], folds: int, seeds: int,
                     quiet: bool) -> list[dict]:
    """As :func:`analyse`, but the advisor sees no test Dice: its curve is a cross-validation on the ``fit_upto``
    labeled images of each seed (what ``saal advise`` does on a run without test masks)."""
    import dataclasses

    from saal.active import LoopConfig
    from saal.advise import advise_rounds
    from saal.io import load_state, read_csv, read_json, read_jsonl, write_json
    from saal.pipeline.advice import crossval_images
    from saal.workspace import open_workspace

    ws = open_workspace(folder, create=False, progress=False)
    state = load_state(ws.path("ssl", "weights.pt"))
    rows = []
    for seed, directory in seed_dirs(folder, cell)[:seeds]:
        records = read_jsonl(directory / "rounds.jsonl")
        measured = {r["n_labeled"]: r["dice"] for r in records}
        at = next(r for r in records if r["n_labeled"] == fit_upto)
        ids = [row["image_id"] for row in read_csv(directory / f"labeled_round_{at['round']}.csv")]
        labeled = ws.pool.select_ids(ids)  # simulated runs: the pool's own masks are the annotations
        config = LoopConfig.from_dict(read_json(directory / "config.json"))
        config = dataclasses.replace(config, seg=dataclasses.replace(config.seg, train="supervised"))
        cache = directory / f"crossval_upto{fit_upto}_folds{folds}.json"
        started = time.perf_counter()
        if cache.is_file():
            saved = read_json(cache)
            sizes, per_image = np.array(saved["sizes"]), np.array(saved["per_image"], dtype=float)
        else:
            sizes, per_image = crossval_images(labeled, config, state, folds=folds, progress=not quiet)
            write_json(cache, {"sizes": sizes.tolist(), "per_image": per_image.tolist()})
        advice = advise_rounds(sizes, np.nanmean(per_image, axis=1).tolist(), targets, per_image=per_image,
                               seed=seed, n_labeled=fit_upto, source="cross-validation")
        print(f"  seed {seed}: cross-validation {time.perf_counter() - started:.0f} s, sizes {sizes.tolist()}, "
              f"held-out Dice {', '.join(f'{100 * d:.1f}' for d in np.nanmean(per_image, axis=1))}", flush=True)
        for t in targets:
            if t in measured:
                f = advice.forecasts[t]
                rows.append({"seed": seed, "budget": t, "forecast": f.value, "low": f.low, "high": f.high,
                             "measured": measured[t], "at_fit": measured[fit_upto], "c": advice.curve.c,
                             "verdict": advice.verdict, "fitted_at_fit": float(advice.curve(fit_upto))})
    return rows


def summarise_gain(rows: list[dict], fit_upto: int) -> str:
    """The cross-validated curve's level is not the test set's: how well does it forecast the *gain* after
    ``fit_upto`` labels (what the verdict uses)? Forecast gain = curve(t) - curve(fit_upto), measured gain =
    test Dice at t - test Dice at ``fit_upto``."""
    lines = ["", f"Gain after {fit_upto} labels (Dice points):", "",
             "| labels | seeds | forecast gain (mean) | measured gain (mean) | mean abs. error of the gain | "
             "mean abs. error of 'no gain' |", "| --- | --- | --- | --- | --- | --- |"]
    for t in sorted({r["budget"] for r in rows}):
        sel = [r for r in rows if r["budget"] == t]
        forecast = np.array([r["forecast"] - r["fitted_at_fit"] for r in sel])
        measured = np.array([r["measured"] - r["at_fit"] for r in sel])
        lines.append(f"| {t} | {len(sel)} | {100 * forecast.mean():+.2f} | {100 * measured.mean():+.2f} | "
                     f"{100 * np.abs(forecast - measured).mean():.2f} | {100 * np.abs(measured).mean():.2f} |")
    return "\n".join(lines) + "\n"


def summarise(name: str, rows: list[dict], fit_upto: int) -> str:
    """Per-run lines and, per budget, mean absolute / signed error, coverage, and the no-gain forecast's error."""
    lines = [f"\n## {name}: forecast from the rounds up to {fit_upto} labels (Dice points)\n",
             "| seed | labels | forecast (10-90 %) | measured | error | c | verdict at 40 |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['budget']} | {100 * r['forecast']:.1f} ({100 * r['low']:.1f}-"
                     f"{100 * r['high']:.1f}) | {100 * r['measured']:.1f} | "
                     f"{100 * (r['forecast'] - r['measured']):+.1f} | {r['c']:.2f} | {r['verdict']} |")
    lines += ["", "| labels | seeds | mean abs. error | mean error (bias) | coverage of the 10-90 % interval | "
                  f"mean abs. error of 'no gain after {fit_upto}' |", "| --- | --- | --- | --- | --- | --- |"]
    for t in sorted({r["budget"] for r in rows}):
        sel = [r for r in rows if r["budget"] == t]
        err = np.array([r["forecast"] - r["measured"] for r in sel])
        inside = np.mean([r["low"] <= r["measured"] <= r["high"] for r in sel])
        naive = np.mean([abs(r["at_fit"] - r["measured"]) for r in sel])
        lines.append(f"| {t} | {len(sel)} | {100 * np.abs(err).mean():.2f} | {100 * err.mean():+.2f} | "
                     f"{100 * inside:.0f} % | {100 * naive:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-advisor"))
    ap.add_argument("--sets", default="embedded,isic", help="embedded, isic or both (comma-separated)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budgets", default="10,20,40,80,160")
    ap.add_argument("--fit-upto", type=int, default=40, help="the advisor sees the rounds up to this many labels")
    ap.add_argument("--cold-start", default=None, help="default: the demo preset's")
    ap.add_argument("--query", default=None, help="default: the demo preset's")
    ap.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    ap.add_argument("--reuse-embedded", type=Path, default=None, metavar="EARLIER",
                    help="start OUT/embedded from this experiment folder (same settings, fewer budgets)")
    ap.add_argument("--reuse-isic", type=Path, default=None, metavar="EARLIER",
                    help="start OUT/isic from this experiment folder (same settings, fewer budgets)")
    ap.add_argument("--analyse-only", action="store_true", help="analyse the finished seeds; train nothing")
    ap.add_argument("--crossval", type=int, default=0, metavar="FOLDS",
                    help="also forecast as a run without test masks does: from a FOLDS-fold cross-validation on "
                         "the --fit-upto labeled images of each seed (trains FOLDS x 3 models per seed)")
    ap.add_argument("--crossval-seeds", type=int, default=5, help="seeds the cross-validation analysis uses")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()

    from saal.config import get_preset

    args.cold_start = args.cold_start or get_preset("demo").cold_start
    args.query = args.query or get_preset("demo").query
    budgets = [int(b) for b in args.budgets.split(",")]
    targets = [b for b in budgets if b > args.fit_upto]
    report = [f"# bench_advisor: {args.cold_start} cold start, {args.query} query, budgets {args.budgets}\n"]
    for name in [s for s in args.sets.split(",") if s]:
        if name not in SETS:
            sys.exit(f"bench_advisor: unknown set {name!r}; choose from {', '.join(SETS)}")
        args.set = name
        folder = args.out / name if args.analyse_only else run_set(args)
        report.append(summarise(name, analyse(folder, cell_name(args), args.fit_upto, targets), args.fit_upto))
        print(report[-1], flush=True)
        if args.crossval:
            rows = analyse_crossval(folder, cell_name(args), args.fit_upto, targets, args.crossval,
                                    args.crossval_seeds, args.quiet)
            report.append(summarise(f"{name}, no test masks ({args.crossval}-fold cross-validation on the "
                                    f"{args.fit_upto} labeled images)", rows, args.fit_upto)
                          + summarise_gain(rows, args.fit_upto))
            print(report[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_advisor.md").write_text("".join(report))


if __name__ == "__main__":
    main()
