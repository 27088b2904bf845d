#!/usr/bin/env python
"""Render an HTML report in headless Chromium and check that the screenshot is not blank.

The HTML report promises to be self-contained; a real browser is the only honest check that it
shows something (embedded images decode, the CSS is valid) without network access.

    python scripts/check_report_render.py runs/x/report.html [--screenshot shot.png] [--chromium PATH]

Exit status: 0 rendered and not blank, 1 blank or failed, 2 no Chromium found.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium(explicit: str | None = None) -> str | None:
    """The browser to use: ``explicit``, else the first of the usual names on PATH."""
    if explicit:
        return explicit if Path(explicit).is_file() else shutil.which(explicit)
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


def render(html: Path, screenshot: Path, chromium: str, size: tuple[int, int] = (1200, 1600),
           timeout: float = 180.0) -> None:
    """Screenshot ``html`` with a throw-away profile, no sandbox (root in containers) and no network chatter."""
    with tempfile.TemporaryDirectory(prefix="saal-chromium-") as profile:
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}",
               f"--screenshot={screenshot.resolve()}", f"--window-size={size[0]},{size[1]}",
               html.resolve().as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not screenshot.is_file():
        raise RuntimeError(f"chromium exited with {proc.returncode}: {proc.stderr.strip()[-500:]}")


def screenshot_stats(png: Path) -> dict[str, float]:
    """Grey-level variance (0 for a blank page) and the fraction of clearly coloured pixels (plots)."""
    rgb = np.asarray(Image.open(png).convert("RGB"), dtype=np.float64)
    grey = rgb.mean(axis=2)
    chroma = rgb.max(axis=2) - rgb.min(axis=2)
    return {"variance": float(grey.var()), "coloured_fraction": float((chroma > 60).mean()),
            "width": rgb.shape[1], "height": rgb.shape[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path)
    parser.add_argument("--screenshot", type=Path, help="where to keep the screenshot (default: a temp file)")
    parser.add_argument("--chromium", help="browser executable (default: chromium on PATH)")
    args = parser.parse_args(argv)
    chromium = find_chromium(args.chromium)
    if chromium is None:
        print("no Chromium found (install it, e.g. apt-get install chromium, or pass --chromium)", file=sys.stderr)
        return 2
    if not args.html.is_file():
        print(f"{args.html}: not found", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        shot = args.screenshot or Path(tmp) / "screenshot.png"
        try:
            render(args.html, shot, chromium)
        except (RuntimeError, subprocess.TimeoutExpired) as err:
            print(f"render failed: {err}", file=sys.stderr)
            return 1
        stats = screenshot_stats(shot)
    print(" ".join(f"{k}={v:.4g}" for k, v in stats.items()))
    if stats["variance"] < 10.0:
        print("blank page: the report did not render", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
