"""The few-label recipe's parts: lesion prior, test-time augmentation, strong augmentation, colour, transfer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from saal.active.annotate import preannotate
from saal.config import get_preset, parse_settings
from saal.data.dataset import LesionData, to_grayscale
from saal.errors import SaalError
from saal.models.unet import UNet, UNetConfig, adapt_input_channels, transfer_weights
from saal.segmentation import SegConfig, evaluate, predict_proba
from saal.segmentation.augment import augment_batch, strong_geometry
from saal.segmentation.prior import apply_prior, fill_holes, largest_component


def random_masks(n=12, size=24, seed=0) -> np.ndarray:
    """Blobby masks with several components, holes and border contact."""
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.normal(size=(n, size, size)), (0, 2, 2)) > 0.15


def test_the_prior_on_a_batch_equals_the_prior_image_by_image():
    masks = random_masks()
    masks[3] = False  # an empty mask stays empty
    eight = np.ones((3, 3), bool)
    for i, m in enumerate(masks):
        labels, n = ndimage.label(m, structure=eight)
        expected = labels == (1 + int(np.argmax(np.bincount(labels.ravel())[1:]))) if n else np.zeros_like(m)
        assert np.array_equal(largest_component(masks)[i], expected), i
        assert np.array_equal(fill_holes(masks)[i], ndimage.binary_fill_holes(m)), i
    both = apply_prior(masks, "lesion")
    assert np.array_equal(both, fill_holes(largest_component(masks)))
    assert not both[3].any() and np.array_equal(apply_prior(masks, "none"), masks)
    assert np.array_equal(apply_prior(masks[0], "largest"), largest_component(masks[:1])[0])  # one (H, W) mask
    with pytest.raises(SaalError, match="unknown lesion prior 'biggest'"):
        apply_prior(masks, "biggest")


def test_holes_open_to_the_border_or_to_the_next_image_stay_background():
    masks = np.zeros((2, 9, 9), bool)
    masks[0, 2:7, 2:7] = True
    masks[0, 4, 4] = False  # a hole
    masks[1, 0:5, 0:5] = True
    masks[1, 0, 2] = False  # a notch that reaches the border
    filled = fill_holes(masks)
    assert filled[0, 4, 4] and not filled[1, 0, 2]


def test_a_diagonal_outline_encloses_its_inside_and_noise_fills_like_scipy():
    ring = np.zeros((1, 7, 7), bool)  # a diamond drawn with diagonal steps: one 8-connected closed outline
    for r, c in [(1, 3), (2, 2), (2, 4), (3, 1), (3, 5), (4, 2), (4, 4), (5, 3)]:
        ring[0, r, c] = True
    assert fill_holes(ring)[0, 3, 3] and fill_holes(ring)[0, 2:5, 3].all()
    noise = np.random.default_rng(1).random((20, 15, 17)) < 0.55  # many diagonal-only contacts
    for i, m in enumerate(noise):
        assert np.array_equal(fill_holes(noise)[i], ndimage.binary_fill_holes(m)), i


def small_net(in_channels=1, seed=0) -> UNet:
    torch.manual_seed(seed)
    return UNet(UNetConfig(in_channels=in_channels, out_channels=2, base_width=4)).eval()


def test_tta_averages_the_eight_symmetries_and_is_equivariant():
    model = small_net()
    images = np.random.default_rng(1).integers(0, 256, (3, 16, 16, 1), dtype=np.uint8)
    plain = predict_proba(model, images, device="cpu")
    tta = predict_proba(model, images, device="cpu", tta=True)
    assert not torch.allclose(plain, tta)
    flipped = np.ascontiguousarray(images[:, :, ::-1].transpose(0, 2, 1, 3))  # flip width, then transpose
    expected = tta.flip(-1).transpose(-1, -2)
    assert torch.allclose(predict_proba(model, flipped, device="cpu", tta=True), expected, atol=1e-6)
    with pytest.raises(SaalError, match="without MC-dropout"):
        predict_proba(model, images, device="cpu", tta=True, mc_samples=4)


def test_evaluation_and_preannotations_use_the_prior():
    model = small_net()
    rng = np.random.default_rng(2)
    data = LesionData(ids=[f"i{k}" for k in range(4)], images=rng.integers(0, 256, (4, 16, 16, 1), dtype=np.uint8),
                      masks=rng.integers(0, 2, (4, 16, 16), dtype=np.uint8))
    plain = evaluate(model, data, device="cpu")
    cleaned = evaluate(model, data, device="cpu", prior="lesion")
    assert np.array_equal(cleaned.predictions, apply_prior(plain.predictions.astype(bool), "lesion"))
    proposals = preannotate(model, data, data.ids, model_version="t", prior="lesion")
    mask = proposals.mask("i0", 40, 30)
    assert mask.shape == (30, 40) and np.array_equal(mask, apply_prior(mask.astype(bool), "lesion"))


def test_strong_augmentation_moves_image_and_mask_together_and_repeats():
    masks = torch.from_numpy(random_masks(8, 32, seed=3)).long()
    images = masks[:, None].float().repeat(1, 3, 1, 1)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a_img, a_mask = augment_batch(images, masks, g1, "strong")
    b_img, b_mask = augment_batch(images, masks, g2, "strong")
    assert torch.equal(a_img, b_img) and torch.equal(a_mask, b_mask)
    assert a_img.shape == images.shape and set(a_mask.unique().tolist()) <= {0, 1} and not torch.equal(a_mask, masks)
    u = torch.rand(8, 5, generator=torch.Generator().manual_seed(6))
    warped, warped_mask = strong_geometry(images, masks, u, torch.randn(8, 2, 4, 4))
    agree = ((warped[:, 0] > 0.5) == warped_mask.bool()).float().mean()
    assert agree > 0.97  # the image's lesion is where the mask says (bilinear vs nearest differ at the edge)


def test_colour_and_gray_networks_initialise_each_other():
    gray_net, rgb_target = small_net(1, seed=0), small_net(3, seed=1)
    transfer_weights(rgb_target, gray_net.state_dict(), "all-but-head")
    rgb_target.head.load_state_dict(gray_net.head.state_dict())
    g = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(gray_net(g), rgb_target(g.repeat(1, 3, 1, 1)), atol=1e-5)
    w = torch.randn(4, 3, 3, 3)
    assert torch.allclose(adapt_input_channels(w, 1), w.sum(dim=1, keepdim=True))
    assert adapt_input_channels(w, 3) is w


def test_channels_settings_and_the_gray_view():
    rgb = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    data = LesionData(ids=["a", "b"], images=rgb)
    assert data.as_channels("rgb") is data and np.array_equal(data.as_channels("gray").images, to_grayscale(rgb))
    demo = get_preset("demo")
    old = {k: v for k, v in demo.to_dict().items() if k not in ("channels", "feature_channels")}
    assert type(demo).from_record({**old, "grayscale": False}).channels == "rgb"
    assert type(demo).from_record({**old, "grayscale": True}).feature_channels == "gray"
    colour = demo.with_overrides(channels="rgb")
    assert SegConfig.from_preset(colour).in_channels == 3 and not colour.loads_gray


def test_transfer_trained_takes_what_the_objective_trained():
    demo = get_preset("demo").with_overrides(seg_transfer="trained")
    assert SegConfig.from_preset(demo.with_overrides(ssl_objective="contrastive")).transfer == "encoder"
    assert SegConfig.from_preset(demo.with_overrides(ssl_objective="genesis")).transfer == "all-but-head"
    assert SegConfig.from_preset(demo.with_overrides(seg_transfer="encoder")).transfer == "encoder"


def test_set_reads_values_by_their_constraint():
    assert parse_settings(["seg_prior=lesion", "seg_tta=yes", "pool_size=none", "ssl_lr=3e-4", "budgets=10,20"]) == {
        "seg_prior": "lesion", "seg_tta": True, "pool_size": None, "ssl_lr": 3e-4, "budgets": (10, 20)}
    for bad, message in (("seg_prior", "expected SETTING=VALUE"), ("colour=rgb", "expected SETTING=VALUE"),
                         ("seg_steps=many", "--set seg_steps=many: must be an integer")):
        with pytest.raises(SaalError, match=message):
            parse_settings([bad])
