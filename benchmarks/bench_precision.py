"""fp32 against bf16 training steps on this machine; prints figures, asserts nothing.

The ``precision`` setting (:class:`saal.runtime.MixedPrecision`) decides the
arithmetic of every training step: ``fp32``, or bf16 autocast (``bf16``; ``auto``
is bf16/fp16 on a GPU and fp32 on a CPU). On CPUs that compute bf16 in hardware
(AMX or AVX512-BF16, :func:`saal.runtime.cpu_has_native_bf16`) bf16 is meant to
be faster; elsewhere it is emulated. This script measures, side by side and
interleaved (so that a busy machine slows both alike), the two steps that make up
a run's time:

* a pretraining step (``genesis+contrastive``, batch 64: restoration of damaged
  images through the whole U-Net plus two views through the encoder);
* a segmentation step (batch 16, ``full`` augmentation, CE + Dice), through
  :func:`saal.segmentation.trainer.train_segmentation` itself;

at the ``demo`` preset's 64 px and the ``cpu`` preset's 128 px (16 channels).
Whether bf16 changes the Dice a run reaches is measured on real images by
``benchmarks/bench_real.py --set precision=bf16`` (docs/experiments.md).

    python benchmarks/bench_precision.py            # 4 repetitions, 40 segmentation steps
    python benchmarks/bench_precision.py --quick    # 2 and 20: ~1 min on 2 cores
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ssl import structured_images  # noqa: E402

from saal.data.dataset import LesionData  # noqa: E402
from saal.models.unet import UNet  # noqa: E402
from saal.runtime import MixedPrecision, configure_threads, cpu_has_native_bf16, resolve_device  # noqa: E402
from saal.segmentation.trainer import SegConfig, train_segmentation  # noqa: E402
from saal.ssl.contrastive import ProjectionHead  # noqa: E402
from saal.ssl.objectives import Objective, PretrainNet  # noqa: E402
from saal.ssl.transforms import GenesisConfig  # noqa: E402
from saal.ssl.views import ViewConfig  # noqa: E402

COMPARED = ("fp32", "bf16")  # the two arithmetics side by side


def pretraining_step(size: int, batch: int, device: torch.device, precision: str):
    """One ``genesis+contrastive`` step of :mod:`saal.ssl.pretrain`'s code path, as a closure."""
    unet = UNet(in_channels=1, out_channels=1, base_width=16)
    net = PretrainNet(unet, ProjectionHead(unet.feature_channels)).to(device, memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    rule = Objective("genesis+contrastive", GenesisConfig(), ViewConfig(), temperature=0.2, contrastive_weight=0.01)
    mixed = MixedPrecision.for_device(device, precision)
    data = torch.from_numpy(structured_images(batch, size)).to(device).permute(0, 3, 1, 2).float().div(255)
    g = torch.Generator(device=device).manual_seed(0)

    def step():
        loss = rule.total(rule.terms(net, rule.draw(data, g), mixed, device,
                                     lambda t: t.contiguous(memory_format=torch.channels_last)))
        opt.zero_grad(set_to_none=True)
        mixed.step(loss, opt)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step


def segmentation_steps(size: int, steps: int, device: torch.device, precision: str):
    """``steps`` segmentation steps on 20 labeled images (batch 16, ``full`` augmentation), as a closure."""
    images = structured_images(20, size)
    masks = (images[..., 0] > 150).astype(np.uint8)
    labeled = LesionData(images=images, masks=masks, ids=[f"im{i}" for i in range(20)])
    config = SegConfig(steps=steps, precision=precision, device=str(device))
    return lambda: train_segmentation(labeled, config, seed=0, progress=False)


def interleaved(closures: dict[str, Callable[[], object]], reps: int) -> dict[str, float]:
    """Fastest of ``reps`` timings of each closure, taken in turns (one warm-up call each)."""
    best = {}
    for fn in closures.values():
        fn()
    for _ in range(reps):
        for name, fn in closures.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions and steps")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    args = ap.parse_args()
    device = resolve_device(args.device)
    threads = configure_threads()
    reps, seg_steps = (2, 20) if args.quick else (4, 40)
    native = cpu_has_native_bf16()
    print(f"== fp32 vs bf16 training steps on {device} ({threads} CPU threads; CPU has native bf16: {native}) ==")
    print(f"{'step':<34}{'px':>5}{'fp32 img/s':>12}{'bf16 img/s':>12}{'bf16 / fp32':>13}")
    for size in (64, 128):
        steps = (("pretraining (genesis+contrastive)", 64, lambda p: pretraining_step(size, 64, device, p)),
                 ("segmentation (batch 16, full aug.)", 16 * seg_steps,
                  lambda p: segmentation_steps(size, seg_steps, device, p)))
        for label, images, make in steps:  # images: trained per call of the closure
            best = interleaved({p: make(p) for p in COMPARED}, reps)
            rates = {p: images / t for p, t in best.items()}
            print(f"{label:<34}{size:>5}{rates['fp32']:>12.1f}{rates['bf16']:>12.1f}"
                  f"{rates['bf16'] / rates['fp32']:>12.2f}x")
    print("(img/s: labeled or pool images per second of training, best of the repetitions; a segmentation "
          "figure includes the set-up of its short training run)")


if __name__ == "__main__":
    main()
