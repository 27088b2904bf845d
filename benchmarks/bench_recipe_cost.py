"""What the few-label recipe's parts cost: one training round per augmentation and colour, and inference
with the lesion prior and test-time augmentation, side by side.

One round of the ``demo`` preset (64 px, 16 channels, 200 steps, batch 16) on the embedded data, 10 labeled
images, each configuration in a fresh process (alternating, ``--repeats`` times), then the evaluation of the
trained model on the 100 test images with every inference variant. Prints seconds, images/s and the ratios to
the ``flips``/gray round; the augmentation is saal's own batched code (no kornia/albumentations: this is the
figure that decided it).

    python benchmarks/bench_recipe_cost.py                 # 2 repeats, one thread
    python benchmarks/bench_recipe_cost.py --repeats 3 --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

CHILD = r"""
import json, time
import torch
torch.set_num_threads({threads})
from saal.config import get_preset
from saal.data.embedded import load_embedded
from saal.segmentation import SegConfig, evaluate, train_segmentation
preset = get_preset("demo").with_overrides(channels="{channels}", seg_augment="{augment}")
data = load_embedded(n=preset.synth_n, image_size=preset.image_size, grayscale=preset.loads_gray, seed=0)
pool, test = data.subset(range(preset.synth_n - preset.test_size)), data.subset(range(400, preset.synth_n))
config = SegConfig.from_preset(preset)
t = time.perf_counter()
model, log = train_segmentation(pool.subset(range(10)), config, seed=0, progress=False)
out = dict(seconds=time.perf_counter() - t, steps=log.steps, inference={{}})
for prior, tta in (("none", False), ("lesion", False), ("none", True), ("lesion", True)):
    t = time.perf_counter()
    evaluate(model, test, device="cpu", prior=prior, tta=tta)
    out["inference"][f"{{prior}}{{'+tta' if tta else ''}}"] = time.perf_counter() - t
print(json.dumps(out))
"""

CONFIGS = (("flips", "gray"), ("full", "gray"), ("strong", "gray"), ("strong", "rgb"))


def measure(augment: str, channels: str, threads: int) -> dict:
    code = CHILD.format(augment=augment, channels=channels, threads=threads)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    runs: dict[tuple[str, str], list[dict]] = {c: [] for c in CONFIGS}
    for _ in range(args.repeats):
        for config in CONFIGS:
            runs[config].append(measure(*config, args.threads))
    base = statistics.median(r["seconds"] for r in runs[CONFIGS[0]])
    print(f"one demo round (10 labeled, {runs[CONFIGS[0]][0]['steps']} steps), {args.threads} thread(s), "
          f"{args.repeats} repeat(s) each:")
    for (augment, channels), rows in runs.items():
        seconds = statistics.median(r["seconds"] for r in rows)
        print(f"  {augment:<7} {channels:<5} {seconds:6.1f} s per round ({16 * rows[0]['steps'] / seconds:5.1f} "
              f"images/s), x{seconds / base:.2f} the flips/gray round  "
              f"[{', '.join(format(r['seconds'], '.1f') for r in rows)} s]")
    print("evaluation of 100 test images (gray model):")
    rows = runs[CONFIGS[0]]
    plain = statistics.median(r["inference"]["none"] for r in rows)
    for variant in rows[0]["inference"]:
        seconds = statistics.median(r["inference"][variant] for r in rows)
        print(f"  {variant:<12} {seconds:6.2f} s  x{seconds / plain:.1f}")


if __name__ == "__main__":
    main()
