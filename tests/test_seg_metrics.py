"""Metrics against MONAI and a brute-force reference, and the documented empty-mask values."""

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from saal.segmentation.metrics import (
    mask_surface, overlap_metrics, segmentation_metrics, summarise, surface_distances,
)

SIZE = 40
# MONAI computes in float32; our values are float64.
MONAI_TOL = dict(rtol=1e-5, atol=1e-4)


def random_blobs(n, seed, size=SIZE):
    """Irregular masks (several components, holes, some cut by the border): smoothed noise, thresholded."""
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.normal(size=(n, size, size)), sigma=(0, 3, 3))
    thresholds = rng.uniform(-0.05, 0.1, size=(n, 1, 1))
    return (noise > thresholds).astype(np.uint8)


@pytest.fixture(scope="module")
def pairs():
    pred, true = random_blobs(12, 1), random_blobs(12, 2)
    pred[0] = ndimage.binary_dilation(true[0], iterations=2)  # a near miss
    pred[1] = true[1]  # a perfect match
    assert pred.any(axis=(1, 2)).all() and true.any(axis=(1, 2)).all()
    return pred, true


def brute_force_surface_distances(pred, true):
    """HD95 / ASSD from every pair of surface pixels (scipy erosion, explicit distance matrix)."""
    hd95, assd = [], []
    for p, t in zip(pred.astype(bool), true.astype(bool)):
        sp = np.argwhere(p & ~ndimage.binary_erosion(p, border_value=0))
        st = np.argwhere(t & ~ndimage.binary_erosion(t, border_value=0))
        dist = np.sqrt(((sp[:, None, :] - st[None, :, :]) ** 2).sum(-1))
        p_to_t, t_to_p = dist.min(1), dist.min(0)
        hd95.append(max(np.percentile(p_to_t, 95), np.percentile(t_to_p, 95)))
        assd.append(np.concatenate([p_to_t, t_to_p]).mean())
    return np.array(hd95), np.array(assd)


def test_surface_distances_match_brute_force(pairs):
    hd95, assd = surface_distances(*pairs)
    ref_hd95, ref_assd = brute_force_surface_distances(*pairs)
    np.testing.assert_allclose(hd95, ref_hd95, rtol=0, atol=1e-9)
    np.testing.assert_allclose(assd, ref_assd, rtol=0, atol=1e-9)
    assert hd95[1] == assd[1] == 0
    assert hd95[0] == pytest.approx(2.0)  # dilation by 2 (cross element): surfaces 2 px apart


@pytest.mark.filterwarnings("ignore:.*always_return_as_numpy:FutureWarning")
def test_surface_distances_match_monai(pairs):
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

    pred, true = (torch.from_numpy(a)[:, None].float() for a in pairs)
    hd95, assd = surface_distances(*pairs)
    ref_hd95 = compute_hausdorff_distance(pred, true, include_background=True, percentile=95)[:, 0]
    ref_assd = compute_average_surface_distance(pred, true, include_background=True, symmetric=True)[:, 0]
    np.testing.assert_allclose(hd95, ref_hd95.double().numpy(), **MONAI_TOL)
    np.testing.assert_allclose(assd, ref_assd.double().numpy(), **MONAI_TOL)


def test_surface_is_boundary_with_outside_as_background():
    full = np.ones((1, 5, 5), dtype=np.uint8)
    surface = mask_surface(full)[0]
    assert surface[0].all() and surface[-1].all() and surface[:, 0].all() and surface[:, -1].all()
    assert not surface[1:-1, 1:-1].any()


def test_overlap_metrics_match_monai_and_counts(pairs):
    from monai.metrics import DiceMetric, MeanIoU

    pred, true = pairs
    ours = overlap_metrics(pred, true)
    p, t = (torch.from_numpy(a)[:, None].float() for a in pairs)
    dice = DiceMetric(include_background=True, reduction="none")(p, t)[:, 0]
    iou = MeanIoU(include_background=True, reduction="none")(p, t)[:, 0]
    np.testing.assert_allclose(ours["dice"].numpy(), dice.double().numpy(), **MONAI_TOL)
    np.testing.assert_allclose(ours["iou"].numpy(), iou.double().numpy(), **MONAI_TOL)
    pb, tb = pred.astype(bool), true.astype(bool)
    for i in range(len(pred)):
        tp = (pb[i] & tb[i]).sum()
        assert ours["precision"][i].item() == pytest.approx(tp / pb[i].sum())
        assert ours["recall"][i].item() == pytest.approx(tp / tb[i].sum())
    # Dice and IoU are tied: D = 2J / (1 + J)
    np.testing.assert_allclose(ours["dice"], 2 * ours["iou"] / (1 + ours["iou"]), atol=1e-12)


def test_empty_mask_cases_return_documented_values():
    empty = np.zeros((8, 8), dtype=np.uint8)
    lesion = empty.copy()
    lesion[2:5, 3:6] = 1
    pred = np.stack([empty, empty, lesion])
    true = np.stack([empty, lesion, empty])
    m = segmentation_metrics(pred, true)
    diagonal = math.hypot(8, 8)
    # both empty: perfect
    assert [m[k][0] for k in ("dice", "iou", "precision", "recall", "hd95", "assd")] == [1, 1, 1, 1, 0, 0]
    # one empty (either way): worst overlap, distances = image diagonal
    for i in (1, 2):
        assert [m[k][i] for k in ("dice", "iou", "precision", "recall")] == [0, 0, 0, 0]
        assert m["hd95"][i] == pytest.approx(diagonal) and m["assd"][i] == pytest.approx(diagonal)
    assert np.isfinite(np.concatenate(list(m.values()))).all()
    np.testing.assert_allclose(m["fg_fraction_true"], [0, 9 / 64, 0])
    np.testing.assert_allclose(m["fg_fraction_pred"], [0, 0, 9 / 64])


def test_torch_and_numpy_inputs_agree(pairs):
    pred, true = pairs
    a = segmentation_metrics(pred, true)
    b = segmentation_metrics(torch.from_numpy(pred).bool(), torch.from_numpy(true))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_summarise_gives_mean_std_median_and_skips_text():
    rows = [{"image_id": "a", "dice": 0.5, "hd95": 1.0}, {"image_id": "b", "dice": 1.0, "hd95": 3.0},
            {"image_id": "c", "dice": 0.9, "hd95": 8.0}]
    s = summarise(rows)
    assert set(s) == {"dice", "hd95"}
    assert s["dice"]["mean"] == pytest.approx(0.8)
    assert s["dice"]["median"] == pytest.approx(0.9)
    assert s["dice"]["std"] == pytest.approx(np.std([0.5, 1.0, 0.9]))
    assert s["hd95"]["n"] == 3
    assert summarise([]) == {}
