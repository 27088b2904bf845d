"""The loader on real ISIC 2017 files (../shared/data; skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from data_builders import snapshot

from saal.data import inspect_dataset, load_dataset

pytestmark = pytest.mark.realdata


def darkness_contrast(data) -> np.ndarray:
    """``c[i, j]``: how much darker image i is inside mask j than outside it (lesions are darker than skin)."""
    n = len(data)
    im = np.asarray(data.images, dtype=np.float64).mean(axis=3).reshape(n, -1)
    m = np.asarray(data.masks, dtype=np.float64).reshape(n, -1)
    inside = im @ m.T / m.sum(axis=1)
    outside = im @ (1 - m).T / (1 - m).sum(axis=1)
    return outside - inside


def test_validation_set_loads_paired(isic_val_256, tmp_path):
    before = snapshot(isic_val_256)
    res = load_dataset(isic_val_256, image_size=64, cache_dir=tmp_path / "cache", progress=False)
    data = res.data
    assert res.layout == "isic2017" and not res.skipped and len(data) == 150
    assert data.subsets == ["val"] * 150
    stems = sorted(p.stem for p in (isic_val_256 / "ISIC-2017_Validation_Data").glob("*.jpg"))
    assert data.ids == stems
    assert [Path(s).stem for s in data.sources] == data.ids
    assert set(res.original_sizes) == {(256, 256)}
    fg = np.asarray(data.masks).reshape(150, -1).mean(axis=1)
    assert fg.min() > 0 and 0.05 < fg.mean() < 0.5  # no empty mask; lesions cover a plausible share
    # pairing: each image is darker inside its own mask than inside a typical other image's mask
    c = darkness_contrast(data)
    own, typical = np.diag(c), np.median(c, axis=1)
    assert (own > typical).mean() > 0.85 and own.mean() > 1.5 * c.mean()
    again = load_dataset(isic_val_256, image_size=64, cache_dir=tmp_path / "cache", progress=False)
    assert again.cache_hit and np.array_equal(again.data.masks, data.masks)
    assert snapshot(isic_val_256) == before


def test_full_resolution_images_resize_correctly(isic_val_fullres, tmp_path):
    res = load_dataset(isic_val_fullres, image_size=96, grayscale=False, use_cache=False, progress=False)
    data = res.data
    assert len(data) == 6 and data.images.shape == (6, 96, 96, 3) and data.masks.shape == (6, 96, 96)
    assert sorted(set(res.original_sizes)) == [(1024, 768), (2592, 1936)]
    gt = isic_val_fullres / "ISIC-2017_Validation_Part1_GroundTruth"
    for i, (src, size) in enumerate(zip(data.sources, res.original_sizes)):
        full = Image.open(src)
        assert full.size == size
        # the image: a direct full decode + resize agrees (the loader decodes JPEGs at reduced scale first)
        ref = np.asarray(full.convert("RGB").resize((96, 96), Image.Resampling.BILINEAR), dtype=np.float64)
        assert np.abs(ref - data.images[i]).mean() < 3.0
        # the mask: the plain bilinear resize of the 0/255 file binarised at 128, up to a few boundary pixels
        m = Image.open(gt / f"{data.ids[i]}_segmentation.png")
        expected = np.asarray(m.resize((96, 96), Image.Resampling.BILINEAR)) >= 128
        assert (data.masks[i].astype(bool) != expected).mean() < 0.003
        fg = data.masks[i].mean()
        assert 0.005 < fg < 0.99


def test_inspect_real_set(isic_val_fullres, tmp_path):
    report = inspect_dataset(isic_val_fullres, image_size=32, cache_dir=tmp_path / "cache", progress=False)
    assert report.usable and report.counts == {"val": 6}
    assert report.sizes == {(1024, 768): 2, (2592, 1936): 4}
    assert "1024x768 (x2), 2592x1936 (x4)" in report.format()
