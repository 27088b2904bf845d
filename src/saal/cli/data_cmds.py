"""``saal data ...``: generate, load and inspect datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

data_app = typer.Typer(help="Generate the embedded synthetic dataset, load and inspect image folders.",
                       no_args_is_help=True)

_INSPECT_HELP = "\n\n".join([
    "Check a dataset folder before training on it, and summarise what is in it.",
    "Recognised layouts: an ISIC 2017 download (ISIC-2017_Training_Data/ with ISIC-2017_Training_Part1_GroundTruth/, "
    "and the Validation / Test_v2 parts when present), ISIC 2016 (ISBI2016_ISIC_Part1_*), ISIC 2018 "
    "(ISIC2018_Task1-2_*_Input with ISIC2018_Task1_*_GroundTruth), images/ + masks/ matched by file stem (mask names "
    "may end in _segmentation, _mask or _lesion), and unlabeled folders (images/ alone, or a flat folder of images).",
    "Prints the layout, image counts per part, the original image sizes, mask coverage (lesion share of the image, "
    "empty masks, lesions touching the border) and every problem found: unreadable or truncated files, images "
    "without masks, masks without images, masks of another size than their image, non-binary masks, duplicate ids, "
    "images over the size limit or under 16 px a side, file names that are not UTF-8 or cannot name the files of an "
    "annotation batch (':' and the like); and, as a warning, masks drawn with transparency (a transparent pixel is "
    "background).",
    "The images are decoded once at --size and kept in the cache ($SAAL_CACHE_DIR, default ~/.cache/saal), so a "
    "later run at the same size starts fast. Nothing is written into DIR.",
    "Exit status: 0 when the data is usable; 2, with a one-line reason, when it is not (problems found without "
    "--skip-bad, or no usable image at all).",
])


@data_app.command("inspect", help=_INSPECT_HELP)
def inspect_cmd(
    path: Path = typer.Argument(..., metavar="DIR", help="The dataset folder."),
    sheet: Optional[Path] = typer.Option(None, "--sheet", metavar="PNG",
                                         help="Save a contact sheet of sample images with mask outlines (red) "
                                              "to this PNG file (outside DIR)."),
    sheet_count: int = typer.Option(24, "--sheet-count", min=1, help="Images on the contact sheet."),
    skip_bad: bool = typer.Option(False, "--skip-bad",
                                  help="Accept leaving bad files out: problems are listed, exit status 0."),
    size: int = typer.Option(128, "--size", min=8, metavar="S",
                             help="Side of the square the images are resized to for the statistics and sheet."),
    max_megapixels: float = typer.Option(64.0, "--max-megapixels", min=0.001,
                                         help="Refuse images larger than this (checked before decoding)."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir",
                                             help="Cache folder (default $SAAL_CACHE_DIR or ~/.cache/saal)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write the cache."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    from ..data.inspect import contact_sheet, inspect_dataset
    from ..errors import DataError

    report = inspect_dataset(path, image_size=size, skip_bad=skip_bad, cache_dir=cache_dir,
                             use_cache=not no_cache, max_pixels=int(max_megapixels * 1e6), progress=not quiet)
    typer.echo(report.format())
    if sheet is not None:
        typer.echo(f"sheet     {contact_sheet(report.result, sheet, n=sheet_count)}")
    if not report.usable:
        raise DataError(report.reason)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
