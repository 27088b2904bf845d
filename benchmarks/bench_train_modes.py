"""Cost of semi-supervised training next to supervised: time per round and peak memory, side by side.

One round of the ``demo`` preset (64 px, 16 channels, 200 steps, batch 16; semi adds an unlabeled batch of
16 per step) on the embedded data: 10 labeled images, the rest of the 400-image pool unlabeled. Each training
runs in a fresh process, so its peak resident memory is its own; the modes alternate (``--repeats`` times
each) so that machine noise hits both alike. Prints seconds per round, images/s, the peak-memory growth over
the process's baseline (data and imports loaded), and the semi / supervised ratios.

    python benchmarks/bench_train_modes.py                 # demo preset, 2 repeats, one thread
    python benchmarks/bench_train_modes.py --labels 40 --repeats 3 --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import torch
torch.set_num_threads({threads})
from saal.config import get_preset
from saal.data.embedded import load_embedded
from saal.segmentation import SegConfig, train_segmentation
preset = get_preset("demo")
pool = load_embedded(n=preset.synth_n, image_size=preset.image_size, grayscale=preset.loads_gray, seed=0)
pool = pool.subset(range(preset.synth_n - preset.test_size))
labeled, unlabeled = pool.subset(range({labels})), pool.subset(range({labels}, len(pool)))
unlabeled.masks = None
config = SegConfig.from_preset(preset, in_channels=1, train="{mode}")
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
model, log = train_segmentation(labeled, config, unlabeled=unlabeled, seed=0, progress=False)
wall = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(dict(mode=log.train, seconds=wall, steps=log.steps, peak_mb=peak / 1024,
                      growth_mb=(peak - base) / 1024, unlabeled=len(unlabeled))))
"""


def measure(mode: str, labels: int, threads: int) -> dict:
    code = CHILD.format(mode=mode, labels=labels, threads=threads)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labels", type=int, default=10, help="labeled images (the rest of the pool is unlabeled)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per training (1: as experiment workers)")
    args = ap.parse_args()
    runs: dict[str, list[dict]] = {"supervised": [], "semi": []}
    for _ in range(args.repeats):
        for mode in runs:
            runs[mode].append(measure(mode, args.labels, args.threads))
    print(f"one demo round, {args.labels} labeled, {runs['semi'][0]['unlabeled']} unlabeled, "
          f"{runs['semi'][0]['steps']} steps, {args.threads} thread(s), {args.repeats} repeat(s) each:")
    summary = {}
    for mode, rows in runs.items():
        seconds = statistics.median(r["seconds"] for r in rows)
        growth = max(r["growth_mb"] for r in rows)
        peak = max(r["peak_mb"] for r in rows)
        summary[mode] = (seconds, growth, peak)
        images = 16 * rows[0]["steps"] * (2 if mode == "semi" else 1)
        print(f"  {mode:<10} {seconds:6.1f} s per round ({images / seconds:5.1f} images/s incl. unlabeled), "
              f"peak memory {peak:6.0f} MB (+{growth:.0f} MB while training)  "
              f"[{', '.join(format(r['seconds'], '.1f') for r in rows)} s]")
    (s_sup, g_sup, p_sup), (s_semi, g_semi, p_semi) = summary["supervised"], summary["semi"]
    print(f"semi / supervised: time x{s_semi / s_sup:.2f}, peak memory x{p_semi / p_sup:.2f} "
          f"(growth while training x{g_semi / max(g_sup, 1e-9):.2f})")


if __name__ == "__main__":
    main()
