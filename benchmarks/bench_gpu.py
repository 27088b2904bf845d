"""Throughput of the ``paper`` preset on a GPU, against the GPU's matmul rate measured in the same run.

Prints figures, asserts nothing (``benchmarks/gpu_check.sh`` runs it after the CUDA tests):

1. **matmul**: a loop of large bf16 matmuls (fp16 where the GPU has no bf16; fp32 on a CPU) in TFLOP/s:
   the ceiling the U-Net is compared with, measured here rather than taken from a data sheet.
2. **SSL**: :func:`saal.ssl.pretrain` at the paper preset (256 px, 64 channels, Models Genesis, batch 16)
   and 3. **segmentation**: :func:`saal.segmentation.train_segmentation` (batch 10), each run twice, with
   a short and a long step count after a warm-up run; images/s come from the difference, which cancels
   what does not grow with the steps (set-up, copying the images to the GPU, validation, checkpoints).
   So the figures are of the code the commands run, with its mixed precision (bf16 autocast on CUDA).
4. **FLOPs share**: forward FLOPs of one image through the U-Net (``torch.utils.flop_counter``), x3 for
   forward + backward, times images/s, as a share of the matmul rate.
5. **one round end to end**: the paper preset's first round (300 labels of the 1600-image embedded pool,
   400 test images, 256 px) through :func:`saal.pipeline.run_all`, with the pretraining cut to
   ``--round-ssl-epochs`` epochs (the paper's 100 would not fit the check's 8 minutes).

    python benchmarks/bench_gpu.py                        # one GPU: about 3-4 minutes
    python benchmarks/bench_gpu.py --device cpu --quick   # a check that it runs: 64 px, width 8, a few steps
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from saal.config import get_preset
from saal.data.embedded import load_embedded
from saal.models.unet import UNet, UNetConfig
from saal.pipeline import run_all
from saal.runtime import configure_threads, resolve_device, use_device
from saal.segmentation import SegConfig, train_segmentation
from saal.ssl import PretrainConfig, pretrain
from saal.workspace import open_workspace


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def best_of_two(wall, steps: int) -> float:
    """The faster of two runs: the one less disturbed by anything else on the machine."""
    return min(wall(steps), wall(steps))


def matmul_tflops(device: torch.device, n: int, iters: int) -> tuple[float, str]:
    """The rate of ``iters`` n x n matmuls after one warm-up, in TFLOP/s, and the dtype it used."""
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        dtype = torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        a @ b
    sync(device)
    return 2 * n**3 * iters / (time.perf_counter() - t0) / 1e12, str(dtype).removeprefix("torch.")


def unet_train_flops(size: int, width: int, out_channels: int) -> float:
    """FLOPs of one training image: 3x the forward pass (backward is about twice the forward)."""
    model = UNet(UNetConfig(in_channels=1, out_channels=out_channels, base_width=width))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 1, size, size))
    return 3.0 * counter.get_total_flops()


def ssl_images_per_s(pool, config: PretrainConfig, short: int, long: int, root: Path) -> float:
    """Pretraining images/s from a ``short`` and a ``long`` one-epoch run (after a warm-up run)."""
    def wall(steps: int) -> float:
        cfg = replace(config, epochs=1, steps_per_epoch=steps, patience=0)
        return pretrain(pool, root / f"ssl{steps}", config=cfg, seed=0, force=True, progress=False).wall_seconds

    wall(short)  # warm-up: cuDNN picks its kernels, the allocator grows
    return (long - short) * config.batch_size / (best_of_two(wall, long) - best_of_two(wall, short))


def seg_images_per_s(labeled, config: SegConfig, short: int, long: int) -> float:
    """Segmentation images/s from a ``short`` and a ``long`` training (after a warm-up one)."""
    def wall(steps: int) -> float:
        _, log = train_segmentation(labeled, SegConfig(**{**config.to_dict(), "steps": steps, "epochs": None}),
                                    progress=False)
        return log.wall_s

    wall(short)
    return (long - short) * config.batch_size / (best_of_two(wall, long) - best_of_two(wall, short))


def one_round(preset, root: Path) -> None:
    """The preset's first round end to end on the embedded data: data, pretraining, features, selection,
    training, evaluation, report."""
    t0 = time.perf_counter()
    ws = open_workspace(root / "round", preset=preset, progress=False)
    t_data = time.perf_counter() - t0
    result = run_all(ws, progress=False)
    total = time.perf_counter() - t0
    r = result.rounds[-1]
    print(f"one round end to end: {len(ws.pool)} pool / {len(ws.test)} test images at {preset.image_size} px, "
          f"{r['n_labeled']} labels, {preset.ssl_epochs} pretraining epochs: {total:.1f} s "
          f"(data {t_data:.1f} s, segmentation training {r['train_seconds']:.1f} s), Dice {100 * r['dice']:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="auto, cuda or cpu")
    ap.add_argument("--quick", action="store_true", help="64 px, width 8, a few steps: a check on a CPU")
    ap.add_argument("--round-ssl-epochs", type=int, default=10, help="pretraining epochs of the end-to-end round")
    args = ap.parse_args()
    use_device(args.device)
    device = resolve_device("auto")
    threads = configure_threads()
    paper = get_preset("paper")
    if args.quick:
        paper = paper.with_overrides(name="paper-quick", image_size=64, base_width=8, synth_n=80, test_size=20,
                                     seg_epochs=1, budgets=(10,))
        short, long, mm_n, mm_iters, n_pool = 2, 6, 1024, 5, 40
    else:
        short, long, mm_n, mm_iters, n_pool = 10, 50, 8192, 50, 200
    size, width = paper.image_size, paper.base_width
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {threads} threads"
    print(f"== {paper.name} preset on {device} ({name}): {size} px, {width} channels ==")

    peak, dtype = matmul_tflops(device, mm_n, mm_iters)
    print(f"matmul {mm_n}x{mm_n} {dtype}: {peak:.2f} TFLOP/s")

    pool = load_embedded(n=n_pool, image_size=size, grayscale=True)
    ssl_config = PretrainConfig.from_preset(paper)
    seg_config = SegConfig.from_preset(paper)
    with tempfile.TemporaryDirectory() as tmp:
        rates = {
            f"SSL ({ssl_config.objective}, batch {ssl_config.batch_size})":
                (ssl_images_per_s(pool, ssl_config, short, long, Path(tmp)), unet_train_flops(size, width, 1)),
            f"segmentation (batch {seg_config.batch_size})":
                (seg_images_per_s(pool, seg_config, short, long), unet_train_flops(size, width, 2)),
        }
        for what, (rate, flops) in rates.items():
            achieved = rate * flops / 1e12
            print(f"{what}: {rate:.1f} images/s ({long - short} steps after {short} + warm-up); "
                  f"U-Net {flops / 1e9:.1f} GFLOP/image -> {achieved:.2f} TFLOP/s, "
                  f"{100 * achieved / peak:.1f} % of the {dtype} matmul rate")
        one_round(paper.with_overrides(name=f"{paper.name}-round", ssl_epochs=args.round_ssl_epochs,
                                       budgets=paper.budgets[:1]), Path(tmp))


if __name__ == "__main__":
    main()
