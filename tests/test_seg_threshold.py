"""Probabilities to masks: the ``argmax`` and per-image ``otsu`` rules, and every consumer using the run's rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saal.active.annotate import preannotate
from saal.active.stopset import save_stop_predictions
from saal.config import get_preset, parse_settings
from saal.data.dataset import LesionData
from saal.errors import SaalError
from saal.models.unet import UNet, UNetConfig
from saal.segmentation import SegConfig, evaluate, predict_proba
from saal.segmentation.prior import apply_prior
from saal.segmentation.threshold import OTSU_BINS, binarise, otsu_thresholds


def within_class_variance_cut(values: np.ndarray) -> float:
    """Otsu by its other definition: the cut between two sorted groups with the least weighted within-class
    variance, tried at every distinct value (a brute-force reference for the histogram implementation)."""
    levels = np.unique(values)
    best, cut = np.inf, 0.5
    for t in levels[1:]:
        low, high = values[values < t], values[values >= t]
        score = low.size * low.var() + high.size * high.var()
        if score < best - 1e-12:
            best, cut = score, t
    return cut


def test_otsu_matches_the_within_class_definition_image_by_image():
    rng = np.random.default_rng(0)
    # values at bin centres, so the histogram loses nothing and both definitions see the same numbers
    bins = np.concatenate([rng.integers(10, 80, (6, 200)), rng.integers(120, 250, (6, 56))], axis=1)
    bins[3] = rng.integers(0, OTSU_BINS, 256)  # one image without two clear groups
    probs = ((bins + 0.5) / OTSU_BINS).reshape(6, 16, 16)
    got = otsu_thresholds(probs)
    for image, threshold in zip(probs, got):
        reference = within_class_variance_cut(image.ravel())
        # the same split of the pixels (the histogram's cut lies at the lower edge of the reference's bin)
        assert np.array_equal(image >= threshold, image >= reference)


def test_otsu_finds_the_lesion_of_a_model_too_sure_or_too_unsure_of_itself():
    lesion = np.zeros((24, 24), bool)
    lesion[6:14, 8:18] = True
    too_sure = np.where(lesion, 0.99, 0.7)  # every pixel above 0.5: arg-max draws the whole frame
    too_unsure = np.where(lesion, 0.4, 0.02)  # no pixel above 0.5: arg-max draws nothing
    stack = np.stack([too_sure, too_unsure])
    assert binarise(stack, "argmax").sum(axis=(1, 2)).tolist() == [24 * 24, 0]
    masks = binarise(stack, "otsu")
    assert np.array_equal(masks[0], lesion) and np.array_equal(masks[1], lesion)
    assert np.array_equal(binarise(too_sure, "otsu"), lesion)  # one (H, W) map
    # nonempty: arg-max where it draws something, otsu where it draws nothing
    masks = binarise(stack, "nonempty")
    assert masks[0].all() and np.array_equal(masks[1], lesion)


def test_nothing_to_separate_keeps_one_half_and_bad_rules_are_refused():
    flat = np.stack([np.full((8, 8), 0.7), np.full((8, 8), 0.3), np.zeros((8, 8)), np.ones((8, 8))])
    assert otsu_thresholds(flat).tolist() == [0.5] * 4
    assert binarise(flat, "otsu").sum(axis=(1, 2)).tolist() == [64, 0, 0, 64]
    assert binarise(flat, "nonempty").sum(axis=(1, 2)).tolist() == [64, 0, 0, 64]
    with pytest.raises(SaalError, match="unknown threshold rule 'mean'"):
        binarise(flat, "mean")


def small_net() -> UNet:
    torch.manual_seed(0)
    return UNet(UNetConfig(in_channels=1, out_channels=2, base_width=4)).eval()


def test_evaluation_preannotations_and_the_stop_set_use_the_rule(tmp_path):
    model = small_net()
    rng = np.random.default_rng(2)
    data = LesionData(ids=[f"i{k}" for k in range(4)], images=rng.integers(0, 256, (4, 16, 16, 1), dtype=np.uint8),
                      masks=rng.integers(0, 2, (4, 16, 16), dtype=np.uint8))
    probs = predict_proba(model, data, device="cpu").numpy()
    result = evaluate(model, data, device="cpu", prior="lesion", threshold="otsu")
    assert np.array_equal(result.predictions, apply_prior(binarise(probs, "otsu"), "lesion"))
    proposals = preannotate(model, data, data.ids, model_version="t", prior="lesion", threshold="otsu")
    assert np.array_equal(proposals.mask("i1", 16, 16), result.predictions[1])
    path = save_stop_predictions(tmp_path, model, data, round=0, seed=0, device="cpu", prior="lesion",
                                 threshold="otsu")
    stop_ids = [row.split(",")[0] for row in (tmp_path / "stopset.csv").read_text().split()[1:]]
    assert np.array_equal(np.load(path), result.predictions[data.index_of(stop_ids)])


def test_the_rule_is_a_preset_setting():
    assert parse_settings(["seg_threshold=otsu"]) == {"seg_threshold": "otsu"}
    preset = get_preset("demo").with_overrides(seg_threshold="otsu")
    assert SegConfig.from_preset(preset).threshold == "otsu"
    assert get_preset("paper").seg_threshold == "argmax"
    with pytest.raises(SaalError, match="seg_threshold 'mean'"):
        get_preset("demo").with_overrides(seg_threshold="mean")
