"""HD95 / ASSD: saal's batched k-d tree against MONAI's per-image loop, on a batch of real ISIC masks.

The predictions are the ground-truth masks of the 150 ISIC 2017 validation images (``isic2017-val-256`` in
``../shared/data``, ``--data-root``; random blobs when it is absent) eroded, dilated, shifted, or with a
ragged border, one of those per image, as a model's errors look. Each side computes both HD95 and ASSD of the
whole batch, as an evaluation does; the best of ``--repeats`` runs is kept. It prints, per mask size, both
times, MONAI's time over saal's (the speed-up), and the largest difference of the values (MONAI computes in
float32). Not a test: the timing depends on the machine.

    python benchmarks/bench_metrics.py                      # 64 and 256 px, 150 masks
    python benchmarks/bench_metrics.py --sizes 128 --repeats 5
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from saal.segmentation.metrics import surface_distances

DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"
TRUTH_FOLDER = "isic2017-val-256/ISIC-2017_Validation_Part1_GroundTruth"


def truth_masks(data_root: Path, size: int, n: int) -> tuple[np.ndarray, str]:
    """``n`` ISIC ground-truth masks resized to ``size`` (bilinear, then > 127), or random blobs without them."""
    files = sorted((data_root / TRUTH_FOLDER).glob("*.png"))[:n]
    if len(files) == n:
        masks = []
        for f in files:
            with Image.open(f) as im:
                masks.append(np.asarray(im.convert("L").resize((size, size), Image.Resampling.BILINEAR)) > 127)
        return np.stack(masks), "ISIC 2017 validation masks"
    rng = np.random.default_rng(0)
    noise = ndimage.gaussian_filter(rng.normal(size=(n, size, size)), sigma=(0, size / 12, size / 12))
    return noise > 0.02, f"random blobs ({data_root / TRUTH_FOLDER} not found)"


def predictions(truth: np.ndarray, seed: int = 0) -> np.ndarray:
    """A plausible model error per mask: erosion, dilation, a shift, or a ragged border (in turn)."""
    rng = np.random.default_rng(seed)
    size = truth.shape[-1]
    step = max(1, size // 64)
    pred = np.empty_like(truth)
    for i, t in enumerate(truth):
        r = int(rng.integers(1, 4)) * step
        kind = i % 4
        if kind == 0:
            pred[i] = ndimage.binary_erosion(t, iterations=r)
        elif kind == 1:
            pred[i] = ndimage.binary_dilation(t, iterations=r)
        elif kind == 2:
            pred[i] = np.roll(t, (r, -r), axis=(0, 1))
        else:
            ragged = ndimage.gaussian_filter(rng.normal(size=t.shape), 2 * step) > 0.1
            pred[i] = t ^ (ragged & ndimage.binary_dilation(t, iterations=3 * step))
    return pred


def monai_surface_distances(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

    p, t = (torch.from_numpy(a)[:, None].float() for a in (pred, truth))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # empty masks, MONAI's deprecations
        hd95 = compute_hausdorff_distance(p, t, include_background=True, percentile=95)[:, 0]
        assd = compute_average_surface_distance(p, t, include_background=True, symmetric=True)[:, 0]
    return hd95.double().numpy(), assd.double().numpy()


def best_time(fn, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--n", type=int, default=150, help="masks in the batch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (MONAI's quantiles)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{'size':>5} {'masks':>6} {'saal (s)':>9} {'MONAI (s)':>10} {'MONAI/saal':>11} "
          f"{'max |dHD95|':>12} {'max |dASSD|':>12}")
    for size in args.sizes:
        truth, source = truth_masks(args.data_root, size, args.n)
        pred = predictions(truth)
        ours_s, (hd95, assd) = best_time(lambda: surface_distances(pred, truth), args.repeats)
        monai_s, (ref_hd95, ref_assd) = best_time(lambda: monai_surface_distances(pred, truth), args.repeats)
        both = pred.any(axis=(1, 2)) & truth.any(axis=(1, 2))  # the empty cases differ by definition
        print(f"{size:>5} {len(truth):>6} {ours_s:>9.3f} {monai_s:>10.3f} {monai_s / ours_s:>10.1f}x "
              f"{np.abs(hd95 - ref_hd95)[both].max():>12.2e} {np.abs(assd - ref_assd)[both].max():>12.2e}"
              f"   {source}, {int((~both).sum())} with an empty mask")


if __name__ == "__main__":
    main()
