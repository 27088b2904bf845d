"""The real-data yardstick: cold starts, initialisation and queries on real dermoscopy at the scale users have.

Every claim and default of saal is measured here (prints figures and writes Markdown tables; not a test).

* **ISIC 2017**: pool = the 1000 training images of ``isic2017-train1000-256``, test = the 150 official
  validation images of ``isic2017-val-256`` (the challenge's own train / validation split).
* **PH2** (another hospital, camera and population): the 200 images of ``ph2-half``, a seeded random split
  into 160 pool / 40 test.

Both from ``../shared/data`` (``--data-root``); the script links the images into ``OUT/<set>/data`` (never
copies or writes into the shared folder) and runs the experiment harness (``saal experiment``) in
``OUT/<set>/``, so an interrupted run resumes where it stopped and a rerun recomputes nothing. Every cell is
repeated over ``--seeds`` selection/training seeds on each of ``--ssl-seeds`` pretraining runs; the
replicates pair across cells, so every comparison is a paired test over seeds x pretraining runs.

Parts (``--parts``), each a set of cells added to the same experiment folder:

* ``cold-start``: random, saal, typiclust, probcover, kcenter, with SSL initialisation and the default query;
* ``init``: random and ``--cold-start`` (default: saal's default) from scratch, against their SSL twins;
* ``query``: ``--cold-start`` with SSL initialisation followed by each query of ``--queries``, and random picks
  throughout (random cold start, random queries): the baseline of the whole pipeline.
* ``train``: random picks throughout and ``--cold-start`` with ``--query``, each trained supervised and
  semi-supervised (:mod:`saal.segmentation.semi`), paired by replicate. Not part of the default ``--parts``
  (semi-supervised rounds take about twice as long); ask for it by name.

It prints, per set: Dice (and HD95) per cell and budget as mean ± std (worst replicate); every cold start minus
random (same init and query), every SSL cell minus its scratch twin and every query minus random queries,
paired, with wins and Wilcoxon / t-test p-values; how often a 10-image cold start holds a melanoma / seborrheic
keratosis (ISIC) or a melanoma (PH2) against the chance rate of 10 random images; the spread from pretraining
runs vs seeds; and the wall time. ``OUT/<set>/bench_real.md`` gets the same tables for the docs.

    python benchmarks/bench_real.py                                   # everything: 10 seeds x 3 pretrainings
    python benchmarks/bench_real.py --sets isic --parts cold-start --budgets 10      # the cold start alone
    python benchmarks/bench_real.py --size 128 --out runs/bench-real-128             # at 128 px
    python benchmarks/bench_real.py --seeds 2 --ssl-seeds 1 --steps 5 --ssl-epochs 1 --out /tmp/br   # a smoke run
    python benchmarks/bench_real.py --compare runs/bench-real/isic-genesis-b16:typiclust-ssl-entropy \
        runs/bench-real/isic:typiclust-ssl-entropy       # one cell across two variants (Genesis vs default), paired

Variants (``--objective``, ``--schedule``, ``--ssl-batch``, ``--pool``, ``--readout``, ``--augment``, and any
preset setting with ``--set SETTING=VALUE``, e.g. ``--set channels=rgb --set seg_prior=lesion``) run in folders
of their own, ``OUT/<set>-<variant>``; a variant of a later stage (readout, augmentation, the segmenter's
settings) reuses (links) the pretraining runs of the folder without it, so only what it changes is recomputed.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
DEFAULT_DATA_ROOT = HERE.parents[2] / "shared" / "data"
COLD_STARTS = ("random", "saal", "typiclust", "probcover", "kcenter")
SETS = ("isic", "ph2")
PARTS = ("cold-start", "init", "query", "train")


# ------------------------------------------------------------------------------------------------ data
def link_dataset(name: str, data_root: Path, out: Path) -> Path:
    """``OUT/<name>/data``: symbolic links to the shared images in a layout saal reads (made once)."""
    target = out / name / "data"
    if name == "isic":
        links = {
            "ISIC-2017_Training_Data": data_root / "isic2017-train1000-256" / "ISIC-2017_Training_Data",
            "ISIC-2017_Training_Part1_GroundTruth":
                data_root / "isic2017-train1000-256" / "ISIC-2017_Training_Part1_GroundTruth",
            "ISIC-2017_Validation_Data": data_root / "isic2017-val-256" / "ISIC-2017_Validation_Data",
            "ISIC-2017_Validation_Part1_GroundTruth":
                data_root / "isic2017-val-256" / "ISIC-2017_Validation_Part1_GroundTruth",
        }
    else:
        links = {"images": data_root / "ph2-half" / "images", "masks": data_root / "ph2-half" / "masks"}
    missing = [str(p) for p in links.values() if not p.is_dir()]
    if missing:
        sys.exit(f"bench_real: {missing[0]} not found; the yardstick needs ../shared/data (see shared/README.md)")
    target.mkdir(parents=True, exist_ok=True)
    for link, source in links.items():
        if not (target / link).exists():
            (target / link).symlink_to(source.resolve(), target_is_directory=True)
    return target


def diagnoses(name: str, data_root: Path) -> dict[str, dict[str, bool]]:
    """Per diagnosis group, ``image id -> member?`` from the datasets' own clinical label files."""
    if name == "isic":
        path = data_root / "isic2017-train1000-256" / "ISIC-2017_Training_Part3_GroundTruth.csv"
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        return {"melanoma": {r["image_id"]: float(r["melanoma"]) > 0.5 for r in rows},
                "seborrheic keratosis": {r["image_id"]: float(r["seborrheic_keratosis"]) > 0.5 for r in rows}}
    with open(data_root / "ph2-half" / "ph2_diagnosis.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {"melanoma": {r["image_id"]: r["diagnosis"] == "melanoma" for r in rows}}


# ---------------------------------------------------------------------------------------------- running
#: Settings of the self-supervised stage: a variant that changes one needs pretraining runs of its own.
PRETRAINING_SETTINGS = ("ssl_objective", "ssl_schedule", "ssl_batch", "ssl_lr", "ssl_epochs", "ssl_patience",
                        "precision", "feature_channels", "pool_size", "image_size", "base_width")


def preset_for(args):
    from saal.config import get_preset

    budgets = tuple(int(b) for b in args.budgets.split(","))
    named = dict(name=f"yardstick-{args.size}", image_size=args.size, budgets=budgets, seg_steps=args.steps,
                 ssl_epochs=args.ssl_epochs, test_size=40 if args.set == "ph2" else None, ssl_objective=args.objective,
                 ssl_schedule=args.schedule, feature_readout=args.readout, ssl_batch=args.ssl_batch,
                 pool_size=args.pool, seg_augment=args.augment)
    return get_preset("demo").with_overrides(**{**named, **args.settings})


def variant_folders(args) -> tuple[Path, Path | None]:
    """The experiment folder of this variant, and the folder whose pretraining runs it reuses (or None)."""
    from saal.config import get_preset

    demo = get_preset("demo")
    pretraining = [v for v, default in ((args.objective, demo.ssl_objective), (args.schedule, demo.ssl_schedule),
                                        (args.ssl_batch and f"b{args.ssl_batch}", f"b{demo.ssl_batch}"),
                                        (args.pool and f"pool{args.pool}", None)) if v and v != default]
    pretraining += [f"{k}={v}" for k, v in args.settings.items() if k in PRETRAINING_SETTINGS]
    base = args.out / "-".join([args.set, *pretraining])
    later = [v for v, default in ((args.readout, demo.feature_readout), (args.augment and f"aug{args.augment}",
                                                                          f"aug{demo.seg_augment}"))
             if v and v != default]  # stages after the pretraining: they reuse it
    later += [f"{k}={v}" for k, v in args.settings.items() if k not in PRETRAINING_SETTINGS]
    if later:
        return Path("-".join([str(base), *later])), base
    return base, None


def share_pretraining(folder: Path, base: Path, ssl_seeds: int) -> None:
    """Link ``folder``'s pretraining runs to ``base``'s (made there on first use), features stay apart."""
    for j in range(ssl_seeds):
        rel = Path("ssl") if j == 0 else Path("pretraining") / f"seed{j}" / "ssl"
        (base / rel).mkdir(parents=True, exist_ok=True)
        if not (folder / rel).exists():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).symlink_to((base / rel).resolve(), target_is_directory=True)


def run_part(args, part: str, folder: Path, data: Path, preset) -> None:
    from saal.experiments.runner import run_experiment

    cells = {
        "cold-start": dict(cold_starts=",".join(args.cold_starts), inits="ssl", queries=args.query),
        "init": dict(cold_starts=",".join(dict.fromkeys(["random", args.cold_start])), inits="scratch",
                     queries=args.query),
        "query": dict(cold_starts=args.cold_start, inits="ssl", queries=args.queries),
        "baseline": dict(cold_starts="random", inits="ssl", queries="random"),
        "train": dict(cold_starts=args.cold_start, inits="ssl", queries=args.query, trains="supervised,semi"),
        "train-baseline": dict(cold_starts="random", inits="ssl", queries="random", trains="supervised,semi"),
    }[part]
    started = time.perf_counter()
    run_experiment(folder, data=data, preset=preset, seeds=args.seeds, ssl_seeds=args.ssl_seeds, full_seeds=1,
                   workers=args.workers, report=False, progress=not args.quiet,
                   split_mode="official" if args.set == "isic" else "random", **cells)
    print(f"[{args.set}] part {part}: {time.perf_counter() - started:.0f} s", flush=True)


# --------------------------------------------------------------------------------------------- printing
def _pct(x: float) -> str:
    return f"{100 * x:.1f}" if math.isfinite(x) else "–"


def _p(x: float) -> str:
    return "–" if not math.isfinite(x) else ("<0.001" if x < 0.001 else f"{x:.3g}")


def dice_table(results, metric: str = "dice"):
    from saal.experiments.results import replicate_label
    from saal.experiments.stats import budget_stats
    from saal.render.html import Table

    stats = budget_stats(results, metric)
    fmt = _pct if metric == "dice" else (lambda v: f"{v:.1f}" if math.isfinite(v) else "–")
    rows = []
    for cell in results.cells:
        row = [cell]
        for b in results.budgets:
            st = next((s for s in stats if s.cell == cell and s.n_labeled == b), None)
            row.append("–" if st is None else f"{fmt(st.mean)} ± {fmt(st.std)} ({fmt(st.worst)}, "
                                               f"{replicate_label(st.worst_replicate)}), n={st.n}")
        rows.append(row)
    full = [getattr(r, metric) for r in results.full_rows]
    name = "Dice (%)" if metric == "dice" else "HD95 (px)"
    note = (f"mean ± std over replicates (worst value, its pretraining seed/seed), n = replicates. Full supervision "
            f"({results.full_rows[0].n_labeled if full else '?'} labels): {fmt(float(np.mean(full))) if full else '–'}"
            f" ± {fmt(float(np.std(full, ddof=1))) if len(full) > 1 else '–'} over {len(full)} runs.")
    return Table(f"{name} per cell and labeled images", ["cell", *map(str, results.budgets)], rows, note)


def comparisons(results):
    """(cell, reference, what) pairs: cold start vs random, the whole pipeline vs random picks throughout,
    SSL vs scratch, query vs random query (each within one training mode), semi- vs supervised training."""
    from saal.experiments.matrix import Cell

    names = set(results.cells)
    pairs = []
    for cell in results.cells:
        cold, init, query, train = results.meta(cell)
        twins = {"cold start": Cell("random", init, query, train) if cold != "random" else None,
                 "pipeline": Cell("random", init, "random", train) if cold != "random" and query != "random" else None,
                 "SSL init": Cell(cold, "scratch", query, train) if init == "ssl" else None,
                 "query": Cell(cold, init, "random", train) if query != "random" else None,
                 "training": Cell(cold, init, query) if train != "supervised" else None}
        pairs += [(cell, twin.name, what) for what, twin in twins.items() if twin is not None and twin.name in names]
    return pairs


def paired_table(results, metric: str = "dice"):
    from saal.experiments.stats import paired_tests
    from saal.render.html import Table

    scale = 100.0 if metric == "dice" else 1.0
    rows = []
    for cell, reference, what in comparisons(results):
        for p in paired_tests(results, reference, metric):
            if p.cell == cell:
                rows.append([what, cell, reference, str(p.n_labeled), f"{scale * p.mean_diff:+.1f} ± "
                             f"{scale * p.std_diff:.1f}", f"{p.wins}/{p.n_pairs}", _p(p.p_wilcoxon), _p(p.p_ttest)])
    unit = "Dice points" if metric == "dice" else "HD95 px (negative is better)"
    return Table(f"Paired differences ({unit})", ["what", "cell", "minus", "labels", "mean ± std", "wins",
                                                  "Wilcoxon p", "t-test p"], rows,
                 "Paired by replicate (pretraining seed, seed); two-sided tests, not corrected for multiple "
                 "comparisons.")


def coverage_table_md(args, results, folder: Path, pool: list[str]):
    from saal.render.html import Table
    from saal.selection import hit_rate

    groups = diagnoses(args.set, args.data_root)
    position = {k: i for i, k in enumerate(pool)}
    budget = min(results.budgets)
    rows = []
    cold_cells = {}
    for cell in results.cells:
        cold = results.meta(cell)[0]
        cold_cells.setdefault(cold, cell)  # one cell per cold start: round 0 is the same for every init / query
    for group, member in groups.items():
        members = np.array([bool(member.get(i, False)) for i in pool])
        for cold, cell in cold_cells.items():
            selections = []
            for (ssl_seed, seed) in results.curves(cell):
                key = f"seed{seed}" if ssl_seed == results.ssl_seeds[0] else f"ssl{ssl_seed}-seed{seed}"
                path = folder / "cells" / cell / key / "labeled_round_0.csv"
                if path.is_file():
                    with open(path, newline="") as fh:
                        ids = [r["image_id"] for r in csv.DictReader(fh)]
                    selections.append([position[i] for i in ids])
            if selections:
                h = hit_rate(selections, members)
                rows.append([group, cold, f"{100 * h.rate:.0f} % ({h.n_selections})", f"{100 * h.chance:.0f} %",
                             f"{h.mean_count:.2f}", f"{h.expected_count:.2f}"])
    share = {g: sum(m.get(i, False) for i in pool) for g, m in groups.items()}
    note = ", ".join(f"{g}: {n} of {len(pool)} pool images" for g, n in share.items())
    return Table(f"Rare diagnoses in a {budget}-image cold start", ["diagnosis", "cold start", "selections with one",
                                                                   "chance (random)", "per selection",
                                                                   "expected (random)"], rows, note)


def spread_table(results):
    from saal.experiments.stats import spread_by_source
    from saal.render.html import Table

    rows = [[sp.cell, str(sp.n_labeled), _pct(sp.total), _pct(sp.between), _pct(sp.within)]
            for sp in spread_by_source(results)]
    return Table("Spread of Dice by source (std, points)", ["cell", "labels", "total", "between pretraining runs",
                                                           "within a run"], rows,
                 "between: std of the per-pretraining means; within: root mean variance over seeds in one run.")


def report(args, folder: Path, wall: float) -> None:
    from saal.data import load_split
    from saal.experiments.results import load_results

    results = load_results(folder / "results.csv")
    split = load_split(folder)
    tables = [dice_table(results), dice_table(results, "hd95"), paired_table(results),
              coverage_table_md(args, results, folder, split.pool)]
    if len(results.ssl_seeds) > 1:
        tables.append(spread_table(results))
    header = (f"# bench_real: {args.set}, {args.size} px, {len(results.ssl_seeds)} pretraining runs x "
              f"{args.seeds} seeds, budgets {args.budgets}, {preset_for(args).seg_steps} steps\n\n"
              f"Pool {len(split.pool)} / test {len(split.test)} images ({folder / 'data'}). Wall time of this "
              f"invocation: {wall / 60:.1f} min.\n")
    md = header + "".join(f"\n## {t.title}\n\n{t.to_markdown()}\n\n{t.note}\n" for t in tables)
    (folder / "bench_real.md").write_text(md)
    print(md, flush=True)


def compare(specs: list[str]) -> None:
    """Paired differences of cells from different experiment folders (``FOLDER:CELL``), the first as reference.

    Replicates pair by (pretraining seed, seed): across variants of the self-supervised stage the same pair
    means the same selection and training draws on a different pretraining, so the difference is what the
    variant changed.
    """
    from saal.experiments.results import Results, load_results
    from saal.experiments.stats import budget_stats, paired_tests

    rows = []
    for spec in specs:
        folder, _, cell = spec.rpartition(":")
        label = f"{Path(folder).name}:{cell}"
        rows += [r.__class__(**{**{f: getattr(r, f) for f in r.__slots__}, "cell": label})
                 for r in load_results(Path(folder) / "results.csv").rows if r.cell == cell]
    merged = Results(tuple(rows), "compare")
    for st in budget_stats(merged):
        print(f"{st.cell:<55} {st.n_labeled:>4}  {_pct(st.mean)} ± {_pct(st.std)} (worst {_pct(st.worst)}), n={st.n}")
    reference = merged.cells[0]
    for p in paired_tests(merged, reference):
        print(f"{p.cell} minus {reference} @{p.n_labeled}: {100 * p.mean_diff:+.1f} ± {100 * p.std_diff:.1f}, "
              f"wins {p.wins}/{p.n_pairs}, Wilcoxon p {_p(p.p_wilcoxon)}, t-test p {_p(p.p_ttest)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--compare", nargs="+", metavar="FOLDER:CELL",
                    help="only compare cells of finished experiment folders (the first is the reference)")
    ap.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-real"))
    ap.add_argument("--sets", default="isic,ph2", help="isic, ph2 or both (comma-separated)")
    ap.add_argument("--parts", default="cold-start,init,query",
                    help="cold-start, init, query, train (comma-separated)")
    ap.add_argument("--size", type=int, default=64, help="image side in pixels (64; 128 as an option)")
    ap.add_argument("--seeds", type=int, default=10, help="selection/training seeds per pretraining run")
    ap.add_argument("--ssl-seeds", type=int, default=3, help="pretraining runs")
    ap.add_argument("--budgets", default="10,20,40")
    ap.add_argument("--steps", type=int, default=200, help="segmentation steps per round (the demo preset's)")
    ap.add_argument("--ssl-epochs", type=int, default=None, help="pretraining epochs (default: the demo preset's)")
    ap.add_argument("--cold-starts", default=",".join(COLD_STARTS), help="cold starts of the cold-start part")
    ap.add_argument("--cold-start", default=None, help="the cold start of the init and query parts "
                                                       "(default: the demo preset's)")
    ap.add_argument("--query", default=None, help="the query of the cold-start and init parts (default: the demo "
                                                  "preset's)")
    ap.add_argument("--queries", default="random,entropy,cold-start-rule,cluster-entropy",
                    help="queries of the query part")
    ap.add_argument("--objective", default=None, help="self-supervised objective (default: the demo preset's)")
    ap.add_argument("--schedule", default=None, help="pretraining learning-rate schedule (default: the demo preset's)")
    ap.add_argument("--readout", default=None, help="feature readout (default: the demo preset's)")
    ap.add_argument("--augment", default=None, help="segmentation augmentation (default: the demo preset's)")
    ap.add_argument("--ssl-batch", type=int, default=None, help="pretraining batch size (default: the demo preset's)")
    ap.add_argument("--pool", type=int, default=None, help="subsample the pool to this many images (seeded; default: "
                                                           "the whole training set), to measure the pool size's effect")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SETTING=VALUE",
                    help="any other preset setting (saal.config.Preset), repeatable: e.g. --set channels=rgb; a "
                         "variant of the stages after the pretraining reuses its pretraining runs")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    if args.compare:
        compare(args.compare)
        return

    from saal.config import get_preset, parse_settings

    args.settings = parse_settings(args.overrides)
    args.cold_starts = [c for c in args.cold_starts.split(",") if c]
    args.cold_start = args.cold_start or get_preset("demo").cold_start
    args.query = args.query or get_preset("demo").query
    parts = [p for p in args.parts.split(",") if p]
    for part in parts:  # refused before hours of training, not after
        if part not in PARTS:
            sys.exit(f"bench_real: unknown part {part!r}; choose from {', '.join(PARTS)}")
    started = time.perf_counter()
    for name in [s for s in args.sets.split(",") if s]:
        if name not in SETS:
            sys.exit(f"bench_real: unknown set {name!r}; choose from {', '.join(SETS)}")
        args.set = name
        data = link_dataset(name, args.data_root, args.out)
        folder, base = variant_folders(args)
        if base is not None:
            share_pretraining(folder, base, args.ssl_seeds)
        preset = preset_for(args)
        set_started = time.perf_counter()
        for part in parts:
            if part == "train":
                run_part(args, "train-baseline", folder, data, preset)
            run_part(args, part, folder, data, preset)
            if part == "query":
                run_part(args, "baseline", folder, data, preset)
        report(args, folder, time.perf_counter() - set_started)
    print(f"bench_real wall time: {(time.perf_counter() - started) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
