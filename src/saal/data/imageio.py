"""Decoding one image or mask file safely, and resizing it to the training size.

Every failure a user's file can cause (unknown format, truncated or corrupt
data, a decompression bomb, a mask that is not binary, a mask of another size
than its image) becomes a :class:`~saal.errors.DataError` that names the file,
so the loader can either stop with one line or skip the item and report it.

PIL is asked to fail on truncated files (``ImageFile.LOAD_TRUNCATED_IMAGES``
is left ``False``, its default); for PNG, whose pixel data can be complete
while the end of the file is missing, the chunk checksums are verified too.

Sizes are judged from the header, before any pixel is decoded
(:func:`open_lazily`, :func:`check_pixels`): a few hundred bytes of PNG can
declare billions of pixels. The annotation import opens masks the same way.
Images under :data:`MIN_IMAGE_SIDE` pixels a side are refused too: a 1x1 file
would pass every other check and train on a flat colour.

Transparency in a mask (:func:`mask_values`, shared with the annotation
import) follows one rule: **a transparent pixel is background**, as if the
mask were composited over black; and when every visible pixel has the same
colour while the alpha channel varies (a lesion painted on a transparent
layer, in any colour), the alpha channel itself is the mask: the lesion is
where the paint is opaque.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from ..errors import DataError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})
DEFAULT_MAX_PIXELS = 64_000_000  # a sane upper bound: the largest ISIC images are 6688 x 4439 (~30 MP)
REDUCING_GAP = 2.0  # PIL: box-reduce by an integer factor first while the image is over 2x the target
#: Smallest side (px) of a dataset image. Resizing to the training size (64-256 px) would invent almost every
#: pixel of anything smaller: such files are icons, placeholders or broken exports, not dermoscopic photos,
#: which are hundreds of pixels a side (saal's synthetic images are at least 32).
MIN_IMAGE_SIDE = 16


def is_image_file(path: Path) -> bool:
    """A regular, non-hidden file with an image extension (any case).

    Hidden files are left out because archives unpacked on macOS carry
    ``._NAME.jpg`` resource forks that are not images.
    """
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".") and path.is_file()


def open_lazily(source: Path | BinaryIO, where: object, what: str = "image") -> Image.Image:
    """Open an image reading its header only (PIL decodes pixels on ``load``); failures name ``where``.

    PIL itself refuses headers over twice its ``MAX_IMAGE_PIXELS`` here; the
    caller checks the size it expects (:func:`check_pixels`, or a mask against
    its image) before decoding.
    """
    try:
        return Image.open(source)
    except Image.DecompressionBombError as ex:
        raise DataError(f"{what} is too large to decode safely ({ex})", where) from None
    except Exception as ex:  # PIL raises many types for files it cannot identify
        raise DataError(f"not a readable image ({_why(ex)})", where) from None


def check_pixels(im: Image.Image, where: object, max_pixels: int, what: str = "image") -> None:
    """Refuse a header size over ``max_pixels`` (a decompression-bomb guard) or an empty one."""
    w, h = im.size
    if w * h > max_pixels:
        raise DataError(
            f"{what} is {w}x{h} = {w * h / 1e6:.3g} megapixels, over the limit of {max_pixels / 1e6:g} "
            "(a decompression-bomb guard; raise max_pixels / --max-megapixels if the file is genuine)", where)
    if w == 0 or h == 0:
        raise DataError(f"{what} has an empty size {w}x{h}", where)


def load_pixels(im: Image.Image, where: object) -> None:
    """Decode an opened image's pixels; truncated or corrupt data raises DataError naming ``where``."""
    try:
        im.load()
    except Exception as ex:  # PIL raises OSError, SyntaxError, ValueError, zlib and struct errors, ...
        raise DataError(f"corrupt or truncated image ({_why(ex)})", where) from None


def _open(path: Path, max_pixels: int) -> Image.Image:
    """Open lazily (header only) and refuse sizes over ``max_pixels`` before any decoding."""
    im = open_lazily(path, path)
    try:
        check_pixels(im, path, max_pixels)
    except DataError:
        im.close()
        raise
    return im


def _why(ex: BaseException) -> str:
    text = str(ex).splitlines()[0][:200] if str(ex) else ""
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
    except Exception as ex:
        raise DataError(f"corrupt or truncated image ({_why(ex)})", path) from None
    load_pixels(im, path)
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
        if min(original) < MIN_IMAGE_SIDE:
            raise DataError(f"image is {original[0]}x{original[1]} pixels, under the minimum of {MIN_IMAGE_SIDE} "
                            "px a side: too small to segment (a thumbnail or placeholder?)", path)
        im = _decode(path, im, draft=(mode, (size, size)))
        arr = np.asarray(_shrink(_to_mode(im, mode), size), dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return arr, original


_ALPHA_MODES = {"LA": "LA", "La": "LA", "RGBA": "RGBA", "RGBa": "RGBA", "P": "RGBA", "PA": "RGBA"}


def mask_values(im: Image.Image, where: object) -> tuple[np.ndarray, bool]:
    """A decoded mask's values as one 2-D array (dtype as decoded), and whether it had transparent pixels.

    The loader and the annotation import both read masks through this, so a
    mask means the same wherever it is used. Colour channels must be equal
    (grey levels); transparency follows the module's rule: transparent is
    background (composited over black), except that when every visible pixel
    has one colour and alpha varies, alpha is the mask. Without that exception
    a black lesion painted on a transparent layer would come out empty, and a
    white layer holding the lesion only in its alpha channel full. Palette
    masks are read by their colours (what a viewer shows), their transparency
    included.
    """
    if im.mode in ("1", "L", "I", "F") or im.mode.startswith("I;16"):
        return np.asarray(im), False
    target = _ALPHA_MODES.get(im.mode, "RGB")  # CMYK, YCbCr, ...: what it looks like
    if im.mode != target:
        im = im.convert(target)
    arr = np.asarray(im)
    colour, alpha = (arr[..., :-1], arr[..., -1]) if im.mode in ("LA", "RGBA") else (arr, None)
    transparent = alpha is not None and bool((alpha != 255).any())
    if transparent:
        visible = colour[alpha > 0]
        if alpha.min() != alpha.max() and len(visible) and (visible == visible[0]).all():
            return alpha, True
        colour = ((colour.astype(np.uint16) * alpha[..., None] + 127) // 255).astype(np.uint8)
    if colour.shape[-1] > 1 and (colour != colour[..., :1]).any():
        raise DataError("mask is in colour (its RGB channels differ); expected a black background and a white "
                        "lesion, no colours", where)
    return colour[..., 0], transparent


def _check_binary(values: np.ndarray, path: Path) -> None:
    """Refuse anything but {0, 255} or {0, 1}, saying what was found."""
    found = set(values.tolist())
    if found <= {0, 255} or found <= {0, 1}:
        return
    shown = ", ".join(str(v) for v in values[:6]) + (", ..." if len(values) > 6 else "")
    raise DataError(f"mask is not binary: values must be {{0, 255}} or {{0, 1}}, found {len(values)} distinct "
                    f"values from {values.min()} to {values.max()} ({shown})", path)


_ONE_TO_255 = [0] + [255] * 255  # point() table: {0, 1} -> {0, 255}


def _mask_image(im: Image.Image, path: Path) -> tuple[Image.Image, bool]:
    """A decoded mask as an ``L`` image holding 0 and 255 only, and whether it had transparent pixels.

    A mask must hold values from {0, 255} or from {0, 1}; anything else (JPEG
    artefacts, soft labels, multi-class label maps) is refused rather than
    guessed at, naming what was found. 8-bit grayscale masks (the usual case)
    are checked with PIL's histogram and mapped with a lookup table, without a
    full-resolution numpy copy: at 2592x1936 that is most of the time spent on
    a mask.
    """
    if im.mode == "1":
        return im.convert("L"), False
    if im.mode == "L":
        values = np.flatnonzero(im.histogram())
        _check_binary(values, path)
        return (im if values.max(initial=0) > 1 else im.point(_ONE_TO_255)), False
    plane, transparent = mask_values(im, path)
    _check_binary(np.unique(plane), path)
    return Image.fromarray((plane != 0).astype(np.uint8) * np.uint8(255)), transparent


def _shrink(im: Image.Image, size: int) -> Image.Image:
    """Whole-frame resize to ``size x size``: bilinear, after a box reduction by an integer factor
    (``reducing_gap``) when shrinking a lot -- area-like averaging, and several times faster on large files."""
    if im.size == (size, size):
        return im
    return im.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=REDUCING_GAP)


def read_mask(path: Path, *, size: int, image_size: tuple[int, int], image_path: Path,
              max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, bool]:
    """Decode a binary mask, check it matches its image's size, resize it like :func:`resize_mask`.

    Returns uint8 ``(size, size)`` with values {0, 1}, and whether the file had
    transparent pixels (read by the rule of :func:`mask_values`; the loader
    reports such masks). The header's size is compared with the image's before
    anything is decoded.
    """
    with open_lazily(path, path, what="mask") as im:
        if im.size != tuple(image_size):
            raise DataError(f"mask is {im.size[0]}x{im.size[1]} but its image {image_path.name} is "
                            f"{image_size[0]}x{image_size[1]}; a mask must have its image's size", path)
        check_pixels(im, path, max_pixels, what="mask")
        im = _decode(path, im)
        mask, transparent = _mask_image(im, path)
        return (np.asarray(_shrink(mask, size)) >= 128).astype(np.uint8), transparent


def resize_mask(fg: np.ndarray, size: int) -> np.ndarray:
    """A 2-D {0, 1} / bool mask of any size -> uint8 ``(size, size)`` {0, 1}.

    Resized as 0/255 exactly as the images are and binarised at 128, so the
    foreground boundary lands where the image's own resize puts it.
    """
    scaled = Image.fromarray((np.asarray(fg) != 0).astype(np.uint8) * np.uint8(255))
    return (np.asarray(_shrink(scaled, size)) >= 128).astype(np.uint8)
