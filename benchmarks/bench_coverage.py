"""Do cold-start selections cover the rare sub-populations of the embedded pool? (prints figures; not a test)

The embedded synthetic dataset tags every image with its sub-population
(common_nevus 50%, large_irregular 18%, dark_skin 12%, hair_occluded 8%,
pale_low_contrast 7%, vascular_red 5%). A model never shown a rare group
segments it badly (docs/synthetic-data.md), so a cold start that misses it
wastes the first labels. This script builds the pool exactly as a preset does,
pretrains the U-Net once by Models Genesis restoration (``--ssl-seed``, default
0; reused from ``--out`` when already there), and for every strategy x budget x
selection seed counts:

* the mean number of groups with at least one selected image (of 6),
* for each rare group (pool share < 10%), the fraction of seeds that hit it,
* the mean share of the selection drawn from each group, against its pool share,

on the SSL bottleneck features and on a naive no-SSL baseline (the images
themselves, area-downsampled to 16x16 and flattened), next to the exact
expectation of uniform random sampling (hypergeometric).

The selection seeds only re-draw what a strategy randomises (k-means starts, the
first k-center point, ...) on *one* pretrained network; a different pretraining
seed can move the figures more than they move between selection seeds, so
compare a few ``--ssl-seed`` values (each in its own ``--out``) before
concluding.

    python benchmarks/bench_coverage.py --preset demo --seeds 10
    python benchmarks/bench_coverage.py --preset demo --out runs/cov --features ssl ssl-l2 ssl-std ssl-white pixels

Feature sets are a base (ssl, ssl-pool2, pixels) with an optional suffix: -l2
(unit rows), -std (z-scored columns), -white (PCA-whitened). Each set also gets a
leave-one-out 5-NN accuracy of the group label: how well the features separate
the sub-populations at all.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits

from saal.config import get_preset
from saal.data import apply_split, make_split
from saal.data.dataset import LesionData, images_to_tensor
from saal.data.embedded import load_embedded
from saal.io import write_json
from saal.selection import (
    EXPECTED_UNIFORM,
    COLD_STARTS,
    CoverageTable,
    coverage_table,
    extract_features,
    make_cold_start,
    l2_normalize,
    standardize,
    whiten,
)
from saal.ssl import load_pretrained, pretrain

THUMB = 16
BASES = {
    "ssl": "SSL bottleneck, feature pool 1 (the preset's)",
    "ssl-pool2": "SSL bottleneck, 2x2 average pool",
    "pixels": f"raw pixels, {THUMB}x{THUMB} thumbnails (no SSL)",
}
POSTS = {
    "": ("", lambda x: x),
    "-l2": ("L2-normalised rows", l2_normalize),
    "-std": ("standardised columns", standardize),
    "-white": ("PCA-whitened, 95% variance", whiten),
}
FEATURE_SETS = {b + p: ", ".join(filter(None, [bd, pd])) for b, bd in BASES.items() for p, (pd, _) in POSTS.items()}


def split_name(name: str) -> tuple[str, str]:
    """``ssl-pool2-std`` -> (``ssl-pool2``, ``-std``)."""
    for post in sorted(POSTS, key=len, reverse=True):
        if post and name.endswith(post):
            return name[: -len(post)], post
    return name, ""


TIMES: dict[str, float] = {}


@contextmanager
def timed(part: str):
    t0 = time.perf_counter()
    yield
    TIMES[part] = TIMES.get(part, 0.0) + time.perf_counter() - t0


def thumbnails(data: LesionData, size: int = THUMB) -> np.ndarray:
    """(N, size*size*C) float32 in [0, 1]: each image area-averaged to size x size, flattened."""
    x = images_to_tensor(data.images)
    return F.adaptive_avg_pool2d(x, size).flatten(1).numpy().astype(np.float32)


def build_features(names: list[str], pool: LesionData, run_dir: Path, preset, device: str,
                   ssl_seed: int) -> dict[str, np.ndarray]:
    bases: dict[str, np.ndarray] = {}
    needed = {split_name(n)[0] for n in names}
    if needed & {"ssl", "ssl-pool2"}:
        with timed("SSL pretraining (or reuse)"):
            result = pretrain(pool, run_dir, preset=preset, seed=ssl_seed, device=device, progress=False)
        state = "reused from " + str(run_dir) if result.reused else f"trained, {result.epochs_run} epochs"
        print(f"SSL: {state}; best val loss {result.best_val_loss:.5f} at epoch {result.best_epoch}")
        model = load_pretrained(run_dir, device=device)
        for base, p in (("ssl", preset.feature_pool), ("ssl-pool2", 2)):
            if base in needed:
                with timed(f"feature extraction (pool {p})"):
                    bases[base] = extract_features(model, pool, pool=p, device=device, progress=False)
    if "pixels" in needed:
        with timed("pixel thumbnails"):
            bases["pixels"] = thumbnails(pool)
    feats = {}
    for n in names:
        base, post = split_name(n)
        feats[n] = POSTS[post][1](bases[base])
    return feats


def knn_group_accuracy(x: np.ndarray, groups: list[str], k: int = 5) -> tuple[float, float]:
    """Leave-one-out k-NN accuracy of the sub-population label, overall and averaged over groups.

    A diagnostic of the *features*, not of a strategy: a selection can only
    spread over the sub-populations if images of one group lie nearer to each
    other than to the rest. The group-averaged (balanced) figure weighs the rare
    groups as much as the common one; chance is 1/6.
    """
    from sklearn.neighbors import NearestNeighbors

    names, codes = np.unique(np.asarray(groups), return_inverse=True)
    _, idx = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    votes = codes[idx[:, 1:]]
    pred = np.array([np.bincount(v, minlength=names.size).argmax() for v in votes])
    hit = pred == codes
    return float(hit.mean()), float(np.mean([hit[codes == g].mean() for g in range(names.size)]))


def short_names(groups: list[str]) -> dict[str, str]:
    """``common_nevus`` -> ``common``: first word, unless two groups share it."""
    first = [g.split("_")[0] for g in groups]
    return {g: f if first.count(f) == 1 else g for g, f in zip(groups, first)}


def print_table(table: CoverageTable, budgets: list[int], strategies: list[str]) -> None:
    short = short_names(table.groups)
    rare = table.rare
    w = max(9, *(len(short[g]) + 1 for g in table.groups))
    head = (f"{'strategy':<21}{'groups hit':>12}   " + "".join(f"{short[g]:>{w}}" for g in rare)
            + "   |" + "".join(f"{short[g]:>{w}}" for g in table.groups))
    print(f"{'':<36}" + f"{'P(hit rare group)':<{w * len(rare)}}" + "   | selected share % (pool share in header)")
    for budget in budgets:
        print(f"\n  budget {budget}")
        print(head)
        print(f"{'(pool share %)':<36}{'':<{w * len(rare)}}   |"
              + "".join(f"{100 * table.pool_share[g]:>{w}.1f}" for g in table.groups))
        for name in [EXPECTED_UNIFORM, *strategies]:
            r = table.row(name, budget)
            hit = f"{r.groups_hit:.2f}" + ("" if np.isnan(r.groups_hit_std) else f"±{r.groups_hit_std:.2f}")
            print(f"{name:<21}{hit:>12}   " + "".join(f"{r.hit_rate[g]:>{w}.2f}" for g in rare) + "   |"
                  + "".join(f"{100 * r.selected_share[g]:>{w}.1f}" for g in table.groups))


def print_summary(tables: dict[str, CoverageTable], budgets: list[int], strategies: list[str]) -> None:
    """One line per feature set x strategy: groups hit and the worst rare-group hit rate per budget."""
    print("\n== summary: mean groups hit (of 6) / lowest rare-group hit rate ==")
    print(f"{'features':<14}{'strategy':<21}" + "".join(f"{'b=' + str(b):>14}" for b in budgets))
    first = next(iter(tables.values()))
    rows = [("-", EXPECTED_UNIFORM, first)] + [(f, s, t) for f, t in tables.items() for s in strategies]
    for feat, name, t in rows:
        cells = []
        for b in budgets:
            r = t.row(name, b)
            cells.append(f"{r.groups_hit:.2f} / {min(r.hit_rate[g] for g in t.rare):.2f}")
        print(f"{feat:<14}{name:<21}" + "".join(f"{c:>14}" for c in cells))


def json_row(row) -> dict:
    """A table row for JSON: the expectation row's undefined spread becomes null, not NaN (invalid JSON)."""
    std = None if np.isnan(row.groups_hit_std) else row.groups_hit_std
    return {**vars(row), "groups_hit_std": std}


def run(args, out: Path) -> None:
    preset = get_preset(args.preset).with_overrides(ssl_epochs=args.ssl_epochs)
    budgets = [int(b) for b in (args.budgets or preset.budgets)]
    print(f"preset {preset.name}: {preset.synth_n} embedded images at {preset.image_size} px "
          f"({preset.channels}), pool {preset.pool_size}, test {preset.test_size}; "
          f"budgets {budgets}; {args.seeds} selection seeds; SSL seed {args.ssl_seed}; {args.threads} thread(s); "
          f"run dir {out}")
    with timed("data generation"):
        data = load_embedded(n=preset.synth_n, image_size=preset.image_size, grayscale=preset.loads_gray, seed=0)
        split = make_split(data, test_size=preset.test_size, pool_size=preset.pool_size, seed=0)
        pool, _ = apply_split(data, split)
    feats = build_features(args.features, pool, out, preset, args.device, args.ssl_seed)

    tables: dict[str, CoverageTable] = {}
    separability: dict[str, tuple[float, float]] = {}
    for fname, x in feats.items():
        selections: dict[str, dict[int, list[np.ndarray]]] = {}
        for name in args.strategies:
            strategy = make_cold_start(name, n_clusters=preset.n_clusters)
            with timed(f"selection: {name} ({fname})"):
                selections[name] = {b: [strategy.select(x, b, seed=s).indices for s in range(args.seeds)]
                                    for b in budgets}
        tables[fname] = coverage_table(pool.groups, selections)
        acc, balanced = knn_group_accuracy(x, pool.groups)
        separability[fname] = (acc, balanced)
        print(f"\n== features: {fname} -- {FEATURE_SETS[fname]}, {x.shape[1]}-d; pool {len(pool)} images; "
              f"5-NN group accuracy {acc:.2f} (balanced {balanced:.2f}) ==")
        print_table(tables[fname], budgets, args.strategies)
    print_summary(tables, budgets, args.strategies)

    print("\n== wall time (s) ==")
    for part, seconds in TIMES.items():
        print(f"  {part:<44}{seconds:8.1f}")
    if args.out:
        write_json(out / "coverage.json", {
            "preset": preset.name, "seeds": args.seeds, "ssl_seed": args.ssl_seed, "budgets": budgets,
            "threads": args.threads, "seconds": TIMES,
            "knn_group_accuracy": {f: {"accuracy": a, "balanced": b} for f, (a, b) in separability.items()},
            "tables": {f: {"groups": t.groups, "pool_count": t.pool_count, "rare": t.rare,
                           "rows": [json_row(r) for r in t.rows]} for f, t in tables.items()},
        })
        print(f"\nwrote {out / 'coverage.json'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=["demo", "cpu"], default="demo")
    ap.add_argument("--seeds", type=int, default=10, help="selection seeds per strategy and budget")
    ap.add_argument("--ssl-seed", type=int, default=0, help="seed of the one SSL pretraining run")
    ap.add_argument("--budgets", type=int, nargs="+", help="default: the preset's")
    ap.add_argument("--ssl-epochs", type=int,
                    help="override the preset's pretraining epochs (early stopping still applies)")
    ap.add_argument("--cold-starts", dest="strategies", nargs="+", choices=list(COLD_STARTS),
                    default=list(COLD_STARTS))
    ap.add_argument("--features", nargs="+", choices=list(FEATURE_SETS), default=["ssl", "pixels"])
    ap.add_argument("--out", type=Path, help="run directory (the SSL model is reused from it); default: a temp dir")
    ap.add_argument("--threads", type=int, default=1, help="torch and BLAS/OpenMP threads (default 1: shared machine)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.seeds < 1 or args.threads < 1:
        ap.error("--seeds and --threads must be at least 1")
    torch.set_num_threads(args.threads)
    with threadpool_limits(args.threads):
        if args.out:
            run(args, args.out)
        else:
            with tempfile.TemporaryDirectory(prefix="saal-coverage-") as tmp:
                run(args, Path(tmp))


if __name__ == "__main__":
    main()
