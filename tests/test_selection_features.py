"""Bottleneck features: clean images, eval mode, dataset order; the cache refuses mismatches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saal.data.dataset import LesionData, images_to_tensor
from saal.errors import SelectionError
from saal.io import write_npy
from saal.models.unet import UNet
from saal.selection import (
    extract_features,
    l2_normalize,
    load_features,
    model_fingerprint,
    pca_reduce,
    save_features,
    standardize,
    whiten,
)


@pytest.fixture
def data() -> LesionData:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 32, 32, 1), dtype=np.uint8)
    return LesionData(ids=[f"img{i}" for i in range(7)], images=images)


@pytest.fixture
def model() -> UNet:
    torch.manual_seed(0)
    net = UNet(in_channels=1, base_width=4)
    # non-trivial BatchNorm statistics, so train and eval mode disagree
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return net


def test_rows_follow_dataset_order_and_match_per_image_calls(data, model):
    model.train()
    feats = extract_features(model, data, batch_size=3, progress=False)
    assert feats.shape == (7, model.feature_channels) and feats.dtype == np.float32
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        for i in range(7):
            ref = model.bottleneck(images_to_tensor(data.images[i:i + 1])).mean(dim=(2, 3))[0]
            np.testing.assert_allclose(feats[i], ref.numpy(), rtol=1e-4, atol=1e-5)


def test_pool_two_keeps_a_coarse_layout(data, model):
    feats = extract_features(model, data, pool=2, progress=False)
    assert feats.shape == (7, 4 * model.feature_channels)
    one = extract_features(model, data, pool=1, progress=False)
    # the 1x1 vector is the mean of the four 2x2 cells of each channel
    np.testing.assert_allclose(feats.reshape(7, -1, 4).mean(axis=2), one, rtol=1e-4, atol=1e-5)


def test_multiscale_readout_pools_and_normalises_every_encoder_level(data, model):
    feats = extract_features(model, data, readout="multiscale", batch_size=3, progress=False)
    w = model.config.base_width
    widths = [w, 2 * w, 4 * w, 8 * w, 8 * w]  # the five encoder levels
    assert feats.shape == (7, sum(widths)) and feats.dtype == np.float32
    parts = np.split(feats, np.cumsum(widths)[:-1], axis=1)
    for part in parts:  # every level has unit length, whatever its channels
        np.testing.assert_allclose(np.linalg.norm(part, axis=1), 1.0, rtol=1e-5)
    bottleneck = extract_features(model, data, progress=False)
    norms = np.linalg.norm(bottleneck, axis=1, keepdims=True)
    np.testing.assert_allclose(parts[-1], bottleneck / norms, rtol=1e-4, atol=1e-5)  # the last level, normalised
    with pytest.raises(SelectionError, match="unknown feature readout 'deep'"):
        extract_features(model, data, readout="deep", progress=False)


def test_extraction_is_repeatable(data, model):
    a = extract_features(model, data, batch_size=2, progress=False)
    b = extract_features(model, data, batch_size=5, progress=False)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_bad_extraction_options(data, model):
    with pytest.raises(SelectionError, match="expects 3-channel"):
        extract_features(UNet(in_channels=3, base_width=4), data, progress=False)
    with pytest.raises(SelectionError, match="pool=3 exceeds the 2x2 bottleneck"):
        extract_features(model, data, pool=3, progress=False)
    with pytest.raises(SelectionError, match="pool must be >= 1"):
        extract_features(model, data, pool=0, progress=False)


def test_l2_and_pca():
    x = np.random.default_rng(0).normal(size=(20, 6)).astype(np.float32)
    x[3] = 0.0
    n = l2_normalize(x)
    np.testing.assert_allclose(np.linalg.norm(n[np.arange(20) != 3], axis=1), 1.0, rtol=1e-6)
    assert (n[3] == 0).all() and n.dtype == np.float32
    p = pca_reduce(x, 3, seed=0)
    assert p.shape == (20, 3) and p.dtype == np.float32
    np.testing.assert_array_equal(p, pca_reduce(x, 3, seed=0))
    with pytest.raises(SelectionError, match="PCA dims must be between 1 and 6"):
        pca_reduce(x, 7)


def test_standardize_and_whiten():
    rng = np.random.default_rng(0)
    # one dominant direction (x1000) and a constant column: the setting these transforms are for
    x = rng.normal(size=(200, 5)) * np.array([1000.0, 1.0, 2.0, 0.5, 0.0]) + 7.0
    z = standardize(x)
    assert z.dtype == np.float32
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(z[:, :4].std(axis=0), 1.0, rtol=1e-4)
    assert (z[:, 4] == 0).all()  # constant column: zero, not NaN
    w = whiten(x, variance=1.0)
    assert w.shape == (200, 4) and w.dtype == np.float32  # the constant direction is dropped
    np.testing.assert_allclose(np.cov(w, rowvar=False), np.eye(4), atol=1e-3)
    assert whiten(x, variance=0.9).shape[1] == 1  # the x1000 direction alone explains > 90 %
    np.testing.assert_array_equal(whiten(x, 0.9, seed=3), whiten(x, 0.9, seed=3))
    with pytest.raises(SelectionError, match="variance must be in"):
        whiten(x, variance=0.0)
    with pytest.raises(SelectionError, match="at least 2"):
        whiten(x[:1])


def test_fingerprint_tracks_weights(model):
    a = model_fingerprint(model)
    assert a == model_fingerprint(model.state_dict())
    with torch.no_grad():
        model.head.bias.add_(1.0)
    assert model_fingerprint(model) != a


def test_cache_round_trip(tmp_path, data, model):
    feats = extract_features(model, data, progress=False)
    save_features(tmp_path / "f", data.ids, feats, {"pool": 1, "weights_sha256": model_fingerprint(model)})
    got = load_features(tmp_path / "f", expected_ids=data.ids)
    assert got.ids == data.ids
    np.testing.assert_array_equal(got.features, feats)
    assert got.meta["pool"] == 1 and got.meta["n"] == 7 and got.meta["dim"] == feats.shape[1]
    ids, arr, meta = got  # also a plain tuple
    assert arr.shape == feats.shape


def test_cache_refuses_other_ids_and_stale_files(tmp_path, data):
    feats = np.random.default_rng(0).normal(size=(7, 4)).astype(np.float32)
    save_features(tmp_path, data.ids, feats)
    with pytest.raises(SelectionError, match="row 2 is image 'img2' but the dataset has 'x'"):
        load_features(tmp_path, expected_ids=["img0", "img1", "x", "img3", "img4", "img5", "img6"])
    with pytest.raises(SelectionError, match="holds 7 images, the dataset 6"):
        load_features(tmp_path, expected_ids=data.ids[:6])
    write_npy(tmp_path / "features.npy", feats + 1)  # e.g. a crash between two writes
    with pytest.raises(SelectionError, match="do not belong together"):
        load_features(tmp_path)
    (tmp_path / "feature_ids.csv").unlink()
    with pytest.raises(SelectionError, match="feature_ids.csv: missing"):
        load_features(tmp_path)


def test_cache_refuses_bad_input(tmp_path):
    with pytest.raises(SelectionError, match="3 feature rows but 2 image ids"):
        save_features(tmp_path, ["a", "b"], np.zeros((3, 2)))
    with pytest.raises(SelectionError, match="unique"):
        save_features(tmp_path, ["a", "a"], np.zeros((2, 2)))
