"""Metrics against MONAI, the ISIC challenge's scorer and a brute-force reference, and the documented empty-mask values.

The real-mask tests use the ISIC 2017 validation ground truth (``../shared/data``; skipped when absent) with
synthetic errors as predictions: erosions, dilations, shifts and ragged borders of the true masks.
"""

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from saal.segmentation.metrics import (
    ISIC_IOU_THRESHOLD, mask_surface, overlap_metrics, segmentation_metrics, summarise, surface_distances,
    thresholded_iou,
)

SIZE = 40
# MONAI computes in float32; our values are float64.
MONAI_TOL = dict(rtol=1e-5, atol=1e-4)
# MONAI's HD95 interpolates between two sorted distances at a float32 rank (torch.quantile): where the two are far
# apart (tens of pixels, at a 95th percentile falling in a gap), that moves it by up to ~1e-3 px at 256 px.
MONAI_HD95_TOL = dict(rtol=1e-5, atol=2e-3)
TRUTH_FOLDER = "ISIC-2017_Validation_Part1_GroundTruth"


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


def read_truth(isic_val_256: Path) -> tuple[list[str], np.ndarray]:
    """File names and bool masks ``(150, 256, 256)`` of the ISIC 2017 validation ground truth (> 128, as ISIC)."""
    files = sorted((isic_val_256 / TRUTH_FOLDER).glob("ISIC_*_segmentation.png"))
    masks = []
    for f in files:
        with Image.open(f) as im:
            masks.append(np.asarray(im.convert("L")) > 128)
    return [f.name for f in files], np.stack(masks)


def model_errors(truth: np.ndarray, seed: int = 0) -> np.ndarray:
    """One plausible error per true mask, in turn: erosion, dilation, shift, ragged border; sizes 1-24 px.

    The sizes spread the IoU over about 0.3-1, so that many images fall on either side of the ISIC threshold.
    """
    rng = np.random.default_rng(seed)
    pred = np.empty_like(truth)
    for i, t in enumerate(truth):
        r = int(rng.integers(1, 25))
        kind = i % 4
        if kind == 0:
            pred[i] = ndimage.binary_erosion(t, iterations=r)
        elif kind == 1:
            pred[i] = ndimage.binary_dilation(t, iterations=r)
        elif kind == 2:
            pred[i] = np.roll(t, (r, -r), axis=(0, 1))
        else:
            ragged = ndimage.gaussian_filter(rng.normal(size=t.shape), 3) > 0.1
            pred[i] = t ^ (ragged & ndimage.binary_dilation(t, iterations=r))
    return pred


@pytest.fixture(scope="module")
def real_pairs(isic_val_256):
    """(names, predictions, truth) on the 150 real validation masks; one prediction empty, one perfect."""
    names, truth = read_truth(isic_val_256)
    pred = model_errors(truth)
    pred[5] = False
    pred[6] = truth[6]
    return names, pred, truth


def monai_edges_and_distances(pred, true):
    """Per image: MONAI's edge maps (``get_mask_edges``) and both directed distance sets (``get_surface_distance``)."""
    from monai.metrics.utils import get_mask_edges, get_surface_distance

    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # always_return_as_numpy's default changed in MONAI 1.5
        for p, t in zip(pred.astype(bool), true.astype(bool)):
            ep, et = (np.asarray(e) for e in get_mask_edges(p, t, crop=False))
            out.append((ep, et, np.asarray(get_surface_distance(ep, et), dtype=np.float64),
                        np.asarray(get_surface_distance(et, ep), dtype=np.float64)))
    return out


def monai_hd95_assd(pred, true):
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

    p, t = (torch.from_numpy(np.asarray(a, dtype=np.uint8))[:, None].float() for a in (pred, true))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI's empty-mask warnings and deprecations
        hd95 = compute_hausdorff_distance(p, t, include_background=True, percentile=95)[:, 0]
        assd = compute_average_surface_distance(p, t, include_background=True, symmetric=True)[:, 0]
    return hd95.double().numpy(), assd.double().numpy()


@pytest.mark.realdata
def test_surfaces_and_distances_match_monai_on_real_masks(real_pairs):
    """Same surface pixels and distance sets as MONAI; HD95 / ASSD within MONAI's float32 error."""
    _, pred, true = real_pairs
    keep = np.r_[0:150:3, 5]  # 51 images (every error kind, and the empty prediction): a quick test
    pred, true = pred[keep], true[keep]
    both = pred.any(axis=(1, 2)) & true.any(axis=(1, 2))
    assert 45 <= both.sum() < len(keep)  # a few predictions are empty: the empty one, small lesions eroded away
    hd95, assd = surface_distances(pred, true)
    sp, st = mask_surface(pred), mask_surface(true)
    for i, (ep, et, p_to_t, t_to_p) in enumerate(monai_edges_and_distances(pred, true)):
        np.testing.assert_array_equal(sp[i], ep)
        np.testing.assert_array_equal(st[i], et)
        if both[i]:  # the same definitions in float64: MONAI's float32 distances are the only difference
            assert hd95[i] == pytest.approx(max(np.percentile(p_to_t, 95), np.percentile(t_to_p, 95)), rel=1e-6)
            assert assd[i] == pytest.approx(np.concatenate([p_to_t, t_to_p]).mean(), rel=1e-6)
    ref_hd95, ref_assd = monai_hd95_assd(pred, true)
    np.testing.assert_allclose(hd95[both], ref_hd95[both], **MONAI_HD95_TOL)
    np.testing.assert_allclose(assd[both], ref_assd[both], **MONAI_TOL)
    assert hd95[~both] == pytest.approx(math.hypot(256, 256)) and not np.isfinite(ref_hd95[~both]).any()
    assert 1 < np.median(hd95[both]) < 60  # the errors are realistic: a few to tens of pixels


def test_empty_masks_are_finite_where_monai_gives_nan_or_inf():
    empty = np.zeros((16, 16), dtype=np.uint8)
    lesion = empty.copy()
    lesion[3:9, 4:12] = 1
    pred, true = np.stack([empty, empty, lesion]), np.stack([empty, lesion, empty])
    hd95, assd = surface_distances(pred, true)
    ref_hd95, ref_assd = monai_hd95_assd(pred, true)
    assert not np.isfinite(ref_hd95).any() and not np.isfinite(ref_assd).any()
    np.testing.assert_array_equal(hd95, [0, math.hypot(16, 16), math.hypot(16, 16)])
    np.testing.assert_array_equal(assd, hd95)


def test_batched_distances_do_not_leak_between_images():
    """A lone pixel beside a big lesion of the *next* image still measures to its own image's lesion."""
    pred = np.zeros((3, 20, 20), dtype=np.uint8)
    true = np.zeros_like(pred)
    pred[0, 0, 19] = 1  # top right corner: the next image's lesion at x = 0 is one stride away
    true[0, 19, 0] = 1  # its own truth: the opposite corner
    pred[1, :, :3] = true[1, :, :3] = 1
    true[2, 5, 5] = 1  # the last image has no prediction: the worst case, not a neighbour's distance
    hd95, assd = surface_distances(pred, true)
    np.testing.assert_allclose(hd95, [math.hypot(19, 19), 0, math.hypot(20, 20)])
    np.testing.assert_allclose(assd, [math.hypot(19, 19), 0, math.hypot(20, 20)])
    one = [surface_distances(pred[i:i + 1], true[i:i + 1]) for i in range(3)]
    np.testing.assert_array_equal(hd95, [h[0] for h, _ in one])


def test_thresholded_iou_is_the_isic_2018_rule():
    assert ISIC_IOU_THRESHOLD == 0.65
    np.testing.assert_array_equal(thresholded_iou([1.0, 0.8, 0.65, 0.6499, 0.3, 0.0]), [1.0, 0.8, 0.65, 0, 0, 0])
    # exactly at the threshold from pixel counts: TP 13, FP + FN 7 -> 13 / 20 = 0.65, kept (">=", as ISIC)
    true = np.zeros((3, 10, 10), dtype=np.uint8)
    pred = np.zeros_like(true)
    true[0, :2] = 1  # 20 pixels
    pred[0, 0] = pred[0, 1, :3] = 1  # 13 of them found, 7 missed
    pred[1, :5] = true[1, :5] = 1
    pred[1, 5, :4] = 1  # IoU 50 / 54: high, kept
    true[2, :5] = 1
    pred[2, 2:7] = 1  # IoU 30 / 70: below, zeroed
    m = segmentation_metrics(pred, true)
    np.testing.assert_array_equal(m["iou"], [13 / 20, 50 / 54, 30 / 70])
    np.testing.assert_array_equal(m["thresholded_iou"], [13 / 20, 50 / 54, 0])


@pytest.mark.realdata
def test_jaccard_and_threshold_jaccard_match_the_isic_scorer(real_pairs, isic_val_256, tmp_path):
    """Per image and mean, against isic-challenge-scoring reading the real truth PNGs and ours written as PNGs."""
    pytest.importorskip("isic_challenge_scoring", reason="isic-challenge-scoring is not installed "
                                                         "(pip install 'saal[test]' to cross-check against it)")
    from isic_challenge_scoring import metrics as isic
    from isic_challenge_scoring.confusion import create_binary_confusion_matrix
    from isic_challenge_scoring.segmentation import SegmentationScore

    names, pred, true = real_pairs
    ours = segmentation_metrics(pred, true)
    assert ((ours["iou"] > 0) & (ours["iou"] < 0.65)).sum() >= 20 and (ours["iou"] >= 0.65).sum() >= 20
    assert ours["iou"][5] == 0 and ours["iou"][6] == 1
    (tmp_path / "pred").mkdir()
    for name, mask in zip(names, pred):
        Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "pred" / name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas deprecations inside the scorer
        score = SegmentationScore.from_dir(isic_val_256 / TRUTH_FOLDER, tmp_path / "pred")
    matrices = [create_binary_confusion_matrix(truth_binary_values=t, prediction_binary_values=p)
                for p, t in zip(pred, true)]
    jaccard = np.array([isic.binary_jaccard(cm) for cm in matrices])
    threshold_jaccard = np.array([isic.binary_threshold_jaccard(cm, threshold=0.65) for cm in matrices])
    dice = np.array([isic.binary_dice(cm) for cm in matrices])
    np.testing.assert_allclose(ours["iou"], jaccard, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours["thresholded_iou"], threshold_jaccard, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours["dice"], dice, rtol=0, atol=1e-12)
    mean = score.macro_average
    assert ours["iou"].mean() == pytest.approx(mean["jaccard"], abs=1e-12)
    assert ours["thresholded_iou"].mean() == pytest.approx(mean["threshold_jaccard"], abs=1e-12)
    assert ours["dice"].mean() == pytest.approx(mean["dice"], abs=1e-12)
    assert score.overall == pytest.approx(ours["thresholded_iou"].mean(), abs=1e-12)  # the ISIC 2018 ranking score
    assert ours["thresholded_iou"].mean() < ours["iou"].mean() - 0.05  # the threshold did zero some images


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
    assert [m[k][0] for k in ("dice", "iou", "thresholded_iou", "precision", "recall", "hd95", "assd")] == [
        1, 1, 1, 1, 1, 0, 0]
    # one empty (either way): worst overlap, distances = image diagonal
    for i in (1, 2):
        assert [m[k][i] for k in ("dice", "iou", "thresholded_iou", "precision", "recall")] == [0, 0, 0, 0, 0]
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
