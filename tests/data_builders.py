"""Builders of tiny dataset folders for the ``test_data_*`` modules (this module holds no tests).

Each image is dark with a bright blob exactly where its mask is, and the blob's
place and size depend on the image's index, so a test can tell from the loaded
arrays alone whether every image was paired with its own mask.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

W, H = 40, 30  # original size of the generated images: not square, so resizing is exercised


def blob_mask(index: int, w: int = W, h: int = H) -> np.ndarray:
    """A bool ellipse whose centre and radii depend on ``index``."""
    rng = np.random.default_rng(1000 + index)
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    ry, rx = rng.uniform(0.15, 0.3) * h, rng.uniform(0.15, 0.3) * w
    yy, xx = np.mgrid[0:h, 0:w]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def write_image(path: Path, index: int, w: int = W, h: int = H, mode: str = "RGB") -> Path:
    fg = blob_mask(index, w, h)
    rng = np.random.default_rng(index)
    base = np.where(fg, 210, 40).astype(np.int16)
    rgb = np.clip(base[:, :, None] + rng.integers(-15, 16, (h, w, 3)), 0, 255).astype(np.uint8)
    im = Image.fromarray(rgb)
    if mode != "RGB":
        im = im.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path


def write_mask(path: Path, index: int, w: int = W, h: int = H, high: int = 255) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(blob_mask(index, w, h).astype(np.uint8) * np.uint8(high)).save(path)
    return path


def isic_id(k: int) -> str:
    return f"ISIC_{k:07d}"


def write_pairs(image_dir: Path, mask_dir: Path | None, start: int, n: int, *, mask_suffix: str = "_segmentation",
                image_ext: str = ".jpg") -> list[str]:
    """``n`` images ``ISIC_<start+k>`` (and masks when ``mask_dir``) with blob index = id number."""
    ids = []
    for k in range(start, start + n):
        ids.append(isic_id(k))
        write_image(image_dir / f"{isic_id(k)}{image_ext}", k)
        if mask_dir is not None:
            write_mask(mask_dir / f"{isic_id(k)}{mask_suffix}.png", k)
    return ids


def make_isic2017(root: Path, n_train: int = 6, n_val: int = 3, n_test: int = 0, extras: bool = True) -> Path:
    """An ISIC 2017 download in miniature, with the superpixel maps and metadata CSV it ships."""
    parts = [("Training", n_train, 0), ("Validation", n_val, 1000), ("Test_v2", n_test, 2000)]
    for name, n, start in parts:
        if n:
            data = root / f"ISIC-2017_{name}_Data"
            write_pairs(data, root / f"ISIC-2017_{name}_Part1_GroundTruth", start, n)
            if extras:
                for k in range(start, start + n):
                    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(data / f"{isic_id(k)}_superpixels.png")
                (data / f"ISIC-2017_{name}_Data_metadata.csv").write_text("image_id,age_approximate,sex\n")
    return root


def write_png_header(path: Path, w: int, h: int) -> Path:
    """A PNG that claims ``w x h`` pixels in its header but holds almost no data (a bomb's shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
                     + chunk(b"IEND", b""))
    return path


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` (folders too) with size, mtime_ns and content hash of files."""
    out: dict[str, tuple] = {}
    for p in sorted(root.rglob("*")):
        st = p.stat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        out[p.relative_to(root).as_posix()] = (st.st_size if p.is_file() else 0, st.st_mtime_ns, digest)
    return out


def assert_paired(data, min_contrast: float = 60.0) -> None:
    """Each image is brighter inside its own mask than outside: the pairs were not mixed up."""
    images = np.asarray(data.images, dtype=np.float32).mean(axis=3)
    masks = np.asarray(data.masks).astype(bool)
    assert masks.reshape(len(masks), -1).any(axis=1).all(), "a mask came out empty"
    for img, m, i in zip(images, masks, data.ids):
        inside, outside = img[m].mean(), img[~m].mean()
        assert inside - outside > min_contrast, f"{i}: image and mask do not match ({inside:.0f} vs {outside:.0f})"
