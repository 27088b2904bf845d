"""``saal data synth``: write the embedded synthetic dataset to disk (ISIC 2017 layout)."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import SaalError
from .data_cmds import data_app

_HELP = (
    "Write a synthetic dermoscopy dataset in the ISIC 2017 training layout: no download needed.\n\n"
    "Creates OUT/ISIC-2017_Training_Data/ISIC_9xxxxxx.jpg, the masks "
    "OUT/ISIC-2017_Training_Part1_GroundTruth/ISIC_9xxxxxx_segmentation.png (0/255), "
    "OUT/saal_synth_groups.csv (the sub-population of each image) and OUT/saal_synth.json.\n\n"
    "Any ISIC 2017 loader reads it. The groups, from common brown nevi (50%) down to rare red vascular "
    "lesions (5%), show how well a cold-start selection covers rare cases. Image i depends only on "
    "(seed, i), so a larger --n extends a smaller one.\n\n"
    "Example: saal data synth --out synth-isic --n 2000 --size 256"
)


@data_app.command("synth", help=_HELP)
def synth(
    out: Path = typer.Option(..., "--out", help="New folder to create; refused if it exists and is not empty."),
    n: int = typer.Option(..., "--n", help="Number of image/mask pairs (1 to 1000000)."),
    size: int = typer.Option(256, "--size", help="Side of the square images in pixels (32 to 512)."),
    seed: int = typer.Option(0, "--seed", help="Seed (>= 0): the same seed gives the same images."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    from ..data.synth import MAX_SIZE, MIN_SIZE, write_isic_layout

    if not 1 <= n <= 1_000_000:
        raise SaalError(f"--n: must be from 1 to 1000000, got {n}")
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise SaalError(f"--size: must be from {MIN_SIZE} to {MAX_SIZE} pixels, got {size}")
    if seed < 0:
        raise SaalError(f"--seed: must be >= 0, got {seed}")
    counts = write_isic_layout(out, n, size=size, seed=seed, progress=not quiet)
    typer.echo(f"wrote {n} synthetic image/mask pairs ({size}x{size}, seed {seed}) to {out}")
    width = max(len(g) for g in counts)
    for group, count in counts.items():
        typer.echo(f"  {group:<{width}}  {count:>7d}  ({count / n:.1%})")


def register(app: typer.Typer) -> None:
    """Nothing to add at top level: importing this module attaches ``synth`` to ``data_app``."""
