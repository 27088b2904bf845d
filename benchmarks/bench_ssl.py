"""Throughput of the self-supervised stage; prints figures, asserts nothing.

1. Models Genesis damage on one CPU thread: ``saal.ssl.transforms`` (batched
   torch) against ``numpy_genesis`` (the same transforms, per sample, loops over
   blocks and boxes as in the reference implementation), at 128 and 256 px.
2. This machine's fp32 matrix-multiply rate (large ``torch.matmul``, all threads).
3. Pretraining steps of each objective (index the uint8 pool, convert, draw the
   damage and/or two views, forward, loss, backward, Adam; the code path of
   ``saal.ssl.pretrain``): Models Genesis restoration, SimCLR contrastive and both,
   at the ``cpu`` preset (16 channels, 128 px) and restoration at the ``paper``
   preset (64 channels, 256 px; a few steps only), in pool images/s and as a share
   of the matmul rate (FLOPs counted with ``torch.utils.flop_counter``: 3x the
   forward for forward + backward).

    python benchmarks/bench_ssl.py            # ~2 min on 2 cores
    python benchmarks/bench_ssl.py --quick    # ~30 s
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy_genesis as ng  # noqa: E402

from saal.config import get_preset  # noqa: E402
from saal.models.unet import UNet  # noqa: E402
from saal.runtime import MixedPrecision, configure_threads, resolve_device  # noqa: E402
from saal.ssl import transforms as T  # noqa: E402
from saal.ssl.contrastive import ProjectionHead  # noqa: E402
from saal.ssl.objectives import Objective, PretrainNet  # noqa: E402
from saal.ssl.transforms import GenesisConfig  # noqa: E402
from saal.ssl.views import ViewConfig  # noqa: E402

REFERENCE_IMAGES_PER_S = 25.0  # the reference implementation, one core, 128-256 px (from the task brief)


def best_time(fn, reps: int, clock=time.perf_counter) -> float:
    """Fastest of ``reps`` runs: the least disturbed by other processes on a shared machine."""
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = clock()
        fn()
        best = min(best, clock() - t0)
    return best


def structured_images(n: int, size: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """uint8 (n, size, size, C): smooth texture plus a disc, like a dermoscopy crop."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    out = np.empty((n, size, size, channels), dtype=np.uint8)
    for i in range(n):
        cy, cx, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.1, 0.3)
        im = 120 + 50 * np.sin(xx * 20 + i) * np.cos(yy * 14) + 70 * ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r)
        out[i] = np.clip(im, 0, 255).astype(np.uint8)[..., None]
    return out


def bench_transforms(sizes: list[int], n: int, reps: int) -> None:
    """Single-threaded, timed in CPU time of this process: the cost per core, which time spent
    waiting for a core (other processes on a shared machine) does not inflate."""
    torch.set_num_threads(1)
    cpu = time.process_time
    print(f"\n== Models Genesis damage, 1 thread, batch of {n} grayscale images (images/s of CPU time) ==")
    print(f"{'transform':<22}{'px':>5}{'saal (torch)':>14}{'numpy/sample':>14}{'ratio':>8}")
    for size in sizes:
        u8 = structured_images(n, size)
        x = torch.from_numpy(u8).permute(0, 3, 1, 2).float().div(255).contiguous()
        arrays = list(x.numpy())
        g, rng = torch.Generator().manual_seed(0), np.random.default_rng(0)
        # The single steps run on the same cache-sized chunks as corrupt() uses on CPU.
        chunks = x.split(max(1, T.CPU_CHUNK_PIXELS // (size * size)))
        cases = [
            ("flip (p=1)", lambda: [T.random_flip(c, g, 1.0) for c in chunks], lambda a: ng.flip(a, rng, 1.0)),
            ("pixel shuffle (p=1)", lambda: [T.local_pixel_shuffle(c, g, 1.0) for c in chunks],
             lambda a: ng.local_pixel_shuffle(a, rng, 1.0)),
            ("intensity curve (p=1)", lambda: [T.nonlinear_intensity(c, g, 1.0) for c in chunks],
             lambda a: ng.nonlinear_intensity(a, rng, 1.0)),
            ("painting (p=1)", lambda: [T.paint(c, g, 1.0) for c in chunks], lambda a: ng.paint(a, rng, 1.0, 0.2)),
            ("full chain (SAAL p)", lambda: T.corrupt(x, g), lambda a: ng.corrupt(a, rng)),
        ]
        for name, ours, per_sample in cases:
            ours_rate = n / best_time(ours, reps, cpu)
            numpy_rate = n / best_time(lambda: [per_sample(a) for a in arrays], max(1, reps // 2), cpu)
            print(f"{name:<22}{size:>5}{ours_rate:>14.0f}{numpy_rate:>14.0f}{ours_rate / numpy_rate:>7.1f}x")
            if name.startswith("full"):
                print(f"{'':<22}{'':>5}{'vs reference ~25/s:':>28}{ours_rate / REFERENCE_IMAGES_PER_S:>7.0f}x")


def matmul_gflops(device: torch.device, n: int, reps: int) -> float:
    a = torch.rand(n, n, device=device)
    b = torch.rand(n, n, device=device)

    def run():
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()

    return 2 * n**3 / best_time(run, reps) / 1e9


def bench_training(preset: str, batch: int, steps: int, device: torch.device, channels_last: bool,
                   peak: float, objective: str = "genesis") -> None:
    p = get_preset(preset)
    size, width = p.image_size, p.base_width
    unet = UNet(in_channels=1, out_channels=1, base_width=width)
    head = ProjectionHead(unet.feature_channels) if "contrastive" in objective else None
    net = PretrainNet(unet, head).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net.to(memory_format=fmt)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    rule = Objective(objective, GenesisConfig(), ViewConfig(), temperature=0.2, contrastive_weight=0.01)
    precision = MixedPrecision.for_device(device)
    data = torch.from_numpy(structured_images(4 * batch, size)).to(device)
    g = torch.Generator(device=device).manual_seed(0)
    positions = torch.arange(4 * batch, device=device).view(4, batch)
    counter = {"i": 0}

    def to_net(t: torch.Tensor) -> torch.Tensor:
        return t.contiguous(memory_format=fmt)

    def batch_images() -> torch.Tensor:
        idx = positions[counter["i"] % 4]
        counter["i"] += 1
        return data[idx].permute(0, 3, 1, 2).float().div_(255.0).contiguous()

    def step():
        loss = rule.total(rule.terms(net, rule.draw(batch_images(), g), precision, device, to_net))
        opt.zero_grad(set_to_none=True)
        precision.step(loss, opt)
        if device.type == "cuda":
            torch.cuda.synchronize()

    def draw_only():
        rule.draw(batch_images(), g)
        if device.type == "cuda":
            torch.cuda.synchronize()

    with FlopCounterMode(display=False) as counter_mode:
        sample = rule.draw(batch_images(), g)
        net(None if sample.damaged is None else to_net(sample.damaged),
            None if sample.views is None else to_net(sample.views))
    flops_step = 3 * counter_mode.get_total_flops()
    t_step = best_time(step, steps)
    t_draw = best_time(draw_only, steps)
    achieved = flops_step / t_step / 1e9
    print(f"{preset:<7}{objective:<21}{width:>4}{size:>6}{batch:>6}  {'NHWC' if channels_last else 'NCHW':<6}"
          f"{batch / t_step:>10.1f}{achieved:>10.1f}{100 * achieved / peak:>8.1f}%{100 * t_draw / t_step:>9.1f}%")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer images, repetitions and steps")
    ap.add_argument("--device", default="auto", help="device of the training part (auto, cpu, cuda)")
    args = ap.parse_args()
    device = resolve_device(args.device)

    bench_transforms([128, 256], n=16 if args.quick else 32, reps=3 if args.quick else 7)

    threads = configure_threads()
    print(f"\n== fp32 matmul and U-Net restoration training on {device} ({threads} CPU threads) ==")
    peak = matmul_gflops(device, 2048 if args.quick or device.type == "cpu" else 8192, 3 if args.quick else 5)
    print(f"fp32 matmul: {peak:.1f} GFLOP/s")
    print(f"{'preset':<7}{'objective':<21}{'w':>4}{'px':>6}{'batch':>6}  {'layout':<6}{'img/s':>10}"
          f"{'GFLOP/s':>10}{'of mm':>9}{'draw':>10}")
    cpu_steps = 3 if args.quick else 8
    for channels_last in (False, True):
        bench_training("cpu", 16, cpu_steps, device, channels_last, peak)
    bench_training("cpu", 64, cpu_steps, device, True, peak, "contrastive")
    bench_training("cpu", 16, cpu_steps, device, True, peak, "genesis+contrastive")
    paper_batch = 16 if device.type == "cuda" else (2 if args.quick else 4)
    bench_training("paper", paper_batch, 1 if args.quick else 2, device, True, peak)
    print("(img/s: pool images per second, each seen once per step (the contrastive objective makes two views of "
          "it); draw = share of the step spent on the random damage / views; GPU steps use bf16 autocast, the "
          "matmul reference is fp32)")


if __name__ == "__main__":
    main()
