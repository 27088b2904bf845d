"""Scale benchmark of the cold-start strategies (prints figures; not a test).

Each strategy selects from N random feature vectors (default 100,000 x 512
float32, Gaussian blobs) at a few budgets. Every (strategy, budget) run happens
in a fresh subprocess so that its peak resident memory (``VmHWM`` from
/proc/self/status, which, unlike tracemalloc, sees BLAS and OpenMP buffers) is
its own. The goal: each run under 30 s on 2 cores and under 4 GB, i.e. no
N x N matrix anywhere.

    python benchmarks/bench_selection.py                       # the full grid
    python benchmarks/bench_selection.py --n 20000 --cold-starts saal kcenter --budgets 100
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def vm_hwm_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def worker(features: str, name: str, budget: int, seed: int) -> None:
    from saal.selection import get_cold_start

    x = np.load(features)
    base = vm_hwm_mb()
    t0 = time.perf_counter()
    sel = get_cold_start(name).select(x, budget, seed=seed)
    seconds = time.perf_counter() - t0
    info = {k: v for k, v in sel.info.items() if isinstance(v, (int, float, str)) or v is None}
    print(json.dumps({"strategy": name, "budget": budget, "seconds": seconds, "base_mb": base,
                      "peak_mb": vm_hwm_mb(), "selected": len(sel), "info": info}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--centers", type=int, default=20)
    ap.add_argument("--budgets", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--cold-starts", dest="strategies", nargs="+",
                    default=["random", "saal", "saal-typical", "kcenter", "typiclust", "probcover"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--worker", nargs=3, metavar=("FEATURES", "STRATEGY", "BUDGET"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], int(args.worker[2]), args.seed)
        return

    from sklearn.datasets import make_blobs

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "features.npy"
        x, _ = make_blobs(n_samples=args.n, n_features=args.dim, centers=args.centers, cluster_std=4.0,
                          random_state=args.seed)
        np.save(path, x.astype(np.float32))
        del x
        print(f"{args.n} x {args.dim} float32 features ({args.n * args.dim * 4 / 2**20:.0f} MB), "
              f"{args.centers} blobs; one fresh process per run")
        print(f"{'strategy':<10} {'budget':>6} {'seconds':>8} {'peak MB':>8} {'+MB':>7}  notes")
        for name in args.strategies:
            for budget in args.budgets:
                cmd = [sys.executable, __file__, "--seed", str(args.seed), "--worker", str(path), name, str(budget)]
                res = subprocess.run(cmd, capture_output=True, text=True)
                if res.returncode != 0:
                    print(f"{name:<10} {budget:>6} FAILED: {res.stderr.strip().splitlines()[-1:]}")
                    continue
                r = json.loads(res.stdout.strip().splitlines()[-1])
                notes = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                  for k, v in r["info"].items())
                print(f"{name:<10} {budget:>6} {r['seconds']:>8.2f} {r['peak_mb']:>8.0f} "
                      f"{r['peak_mb'] - r['base_mb']:>7.0f}  {notes}", flush=True)


if __name__ == "__main__":
    main()
