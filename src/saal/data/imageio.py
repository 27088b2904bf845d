"""Decoding one image or mask file safely, and resizing it to the training size.

Every failure a user's file can cause (unknown format, truncated or corrupt
data, a decompression bomb, a mask that is not binary, a mask of another size
than its image) becomes a :class:`~saal.errors.DataError` that names the file,
so the loader can either stop with one line or skip the item and report it.

PIL is asked to fail on truncated files (``ImageFile.LOAD_TRUNCATED_IMAGES``
is left ``False``, its default); for PNG, whose pixel data can be complete
while the end of the file is missing, the chunk checksums are verified too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})
DEFAULT_MAX_PIXELS = 64_000_000  # a sane upper bound: the largest ISIC images are 6688 x 4439 (~30 MP)
REDUCING_GAP = 2.0  # PIL: box-reduce by an integer factor first while the image is over 2x the target


def is_image_file(path: Path) -> bool:
    """A regular, non-hidden file with an image extension (any case).

    Hidden files are left out because archives unpacked on macOS carry
    ``._NAME.jpg`` resource forks that are not images.
    """
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".") and path.is_file()


def _open(path: Path, max_pixels: int) -> Image.Image:
    """Open lazily (header only) and refuse sizes over ``max_pixels`` before any decoding."""
    try:
        im = Image.open(path)
    except Image.DecompressionBombError as ex:
        raise DataError(f"image is too large to decode safely ({ex})", path) from None
    except Exception as ex:  # PIL raises many types for files it cannot identify
        raise DataError(f"not a readable image ({_why(ex)})", path) from None
    w, h = im.size
    if w * h > max_pixels:
        im.close()
        raise DataError(
            f"image is {w}x{h} = {w * h / 1e6:.3g} megapixels, over the limit of {max_pixels / 1e6:g} "
            "(a decompression-bomb guard; raise max_pixels / --max-megapixels if the file is genuine)", path)
    if w == 0 or h == 0:
        im.close()
        raise DataError(f"image has an empty size {w}x{h}", path)
    return im


def _why(ex: BaseException) -> str:
    text = str(ex).splitlines()[0] if str(ex) else ""
    return f"{type(ex).__name__}: {text}" if text else type(ex).__name__


def _decode(path: Path, im: Image.Image, draft: tuple[str, tuple[int, int]] | None = None) -> Image.Image:
    """Decode all pixel data of an opened image; truncated or corrupt files raise DataError."""
    try:
        if im.format == "PNG":
            # PNG pixels can decode fine while the file's tail is cut off: check the chunk CRCs.
            with Image.open(path) as check:
                check.verify()
        if draft is not None and im.format == "JPEG":
            # JPEG can decode at 1/2, 1/4 or 1/8 scale straight from the DCT: a 2592 px photo
            # shrunk to 128 px needs an eighth of the work, and the result is at least `size`.
            im.draft(*draft)
        im.load()
    except DataError:
        raise
    except Exception as ex:
        raise DataError(f"corrupt or truncated image ({_why(ex)})", path) from None
    return im


def _to_mode(im: Image.Image, mode: str) -> Image.Image:
    """Convert to 8-bit ``L`` or ``RGB``; 16-bit grayscale is scaled, not clipped.

    Pillow opens a 16-bit grayscale PNG as ``I;16`` or, in older releases, as
    32-bit ``I``; both are brought from 0..65535 to 0..255 (an ``I`` image whose
    values all fit in 8 bits is taken as it is).
    """
    if im.mode.startswith("I;16") or im.mode == "I":
        arr = np.asarray(im).astype(np.int64)
        if im.mode != "I" or arr.max(initial=0) > 255:
            arr = arr // 257
        im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return im if im.mode == mode else im.convert(mode)


def read_image(path: Path, *, size: int, grayscale: bool,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode ``path`` and resize the whole frame to ``size x size``.

    Returns the uint8 array ``(size, size, C)`` (``C`` = 1 or 3) and the original
    ``(width, height)``. Shrinking averages over areas (see :func:`_shrink`), so
    large photos are not aliased.
    """
    mode = "L" if grayscale else "RGB"
    with _open(path, max_pixels) as im:
        original = im.size
        im = _decode(path, im, draft=(mode, (size, size)))
        arr = np.asarray(_shrink(_to_mode(im, mode), size), dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return arr, original


def _mask_plane(arr: np.ndarray, path: Path) -> np.ndarray:
    """One 2-D plane of a mask array; colour masks must have equal channels."""
    if arr.ndim == 2:
        return arr
    if arr.shape[2] == 2:  # LA: the alpha channel is not part of the label
        return arr[:, :, 0]
    rgb = arr[:, :, :3]
    if not ((rgb[:, :, 0] == rgb[:, :, 1]).all() and (rgb[:, :, 1] == rgb[:, :, 2]).all()):
        raise DataError("mask is in colour (its RGB channels differ); expected a single-channel binary mask",
                        path)
    return rgb[:, :, 0]


def _check_binary(values: np.ndarray, path: Path) -> None:
    """Refuse anything but {0, 255} or {0, 1}, saying what was found."""
    found = set(values.tolist())
    if found <= {0, 255} or found <= {0, 1}:
        return
    shown = ", ".join(str(v) for v in values[:6]) + (", ..." if len(values) > 6 else "")
    raise DataError(f"mask is not binary: values must be {{0, 255}} or {{0, 1}}, found {len(values)} distinct "
                    f"values from {values.min()} to {values.max()} ({shown})", path)


def binary_mask(arr: np.ndarray, path: Path) -> np.ndarray:
    """Validate a decoded mask array and return it as bool.

    A mask must hold values from {0, 255} or from {0, 1}; anything else (JPEG
    artefacts, soft labels, multi-class label maps) is refused rather than
    guessed at, naming what was found.
    """
    plane = _mask_plane(arr, path)
    if plane.dtype != bool:
        _check_binary(np.unique(plane), path)
    return plane != 0


_ONE_TO_255 = [0] + [255] * 255  # point() table: {0, 1} -> {0, 255}


def _mask_image(im: Image.Image, path: Path) -> Image.Image:
    """A decoded mask as an ``L`` image holding 0 and 255 only.

    8-bit grayscale masks (the usual case) are checked with PIL's histogram and
    mapped with a lookup table, without a full-resolution numpy copy: at
    2592x1936 that is most of the time spent on a mask.
    """
    if im.mode == "1":
        return im.convert("L")
    if im.mode == "L":
        values = np.flatnonzero(im.histogram())
        _check_binary(values, path)
        return im if values.max(initial=0) > 1 else im.point(_ONE_TO_255)
    return Image.fromarray(binary_mask(np.asarray(im), path).astype(np.uint8) * np.uint8(255))


def _shrink(im: Image.Image, size: int) -> Image.Image:
    """Whole-frame resize to ``size x size``: bilinear, after a box reduction by an integer factor
    (``reducing_gap``) when shrinking a lot -- area-like averaging, and several times faster on large files."""
    if im.size == (size, size):
        return im
    return im.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=REDUCING_GAP)


def read_mask(path: Path, *, size: int, image_size: tuple[int, int], image_path: Path,
              max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a binary mask, check it matches its image's size, resize it like :func:`resize_mask`.

    Returns uint8 ``(size, size)`` with values {0, 1}.
    """
    with _open(path, max_pixels) as im:
        if im.size != tuple(image_size):
            raise DataError(f"mask is {im.size[0]}x{im.size[1]} but its image {image_path.name} is "
                            f"{image_size[0]}x{image_size[1]}; a mask must have its image's size", path)
        im = _decode(path, im)
        return (np.asarray(_shrink(_mask_image(im, path), size)) >= 128).astype(np.uint8)


def resize_mask(fg: np.ndarray, size: int) -> np.ndarray:
    """A 2-D {0, 1} / bool mask of any size -> uint8 ``(size, size)`` {0, 1}.

    Resized as 0/255 exactly as the images are and binarised at 128, so the
    foreground boundary lands where the image's own resize puts it.
    """
    scaled = Image.fromarray((np.asarray(fg) != 0).astype(np.uint8) * np.uint8(255))
    return (np.asarray(_shrink(scaled, size)) >= 128).astype(np.uint8)
