"""Segmentation trainer, prediction and evaluation on small generated lesions (32 px, width 8)."""

import numpy as np
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook
from PIL import Image

from saal.config import get_preset
from saal.data.dataset import LesionData
from saal.errors import SaalError
from saal.io import read_csv
from saal.models.unet import UNet
from saal.segmentation import (
    SegConfig, evaluate, iter_predictions, predict_proba, save_prediction_overlays, train_segmentation,
)
from saal.segmentation.trainer import batch_schedule, load_initial_weights

SIZE = 32


def lesions(n, seed=0, size=SIZE, channels=1):
    """Dark ellipses on a noisy bright background, like a crude dermoscopy image."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.uniform(0.3 * size, 0.7 * size, (2, n, 1, 1))
    ry, rx = rng.uniform(0.12 * size, 0.3 * size, (2, n, 1, 1))
    masks = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1).astype(np.uint8)
    images = 170 + rng.normal(0, 20, (n, size, size, channels)) - 90 * masks[..., None]
    return LesionData(ids=[f"les{seed}_{i}" for i in range(n)], images=np.clip(images, 0, 255).astype(np.uint8),
                      masks=masks)


def small_config(**kw):
    base = dict(steps=20, batch_size=4, lr=3e-3, base_width=8, dropout=0.0, augment="none", device="cpu")
    return SegConfig(**{**base, **kw})


def params(model):
    return {k: v.detach().clone() for k, v in model.named_parameters()}


@pytest.fixture(scope="module")
def data():
    return lesions(6)


@pytest.fixture(scope="module")
def overfit(data):
    return train_segmentation(data, small_config(steps=150, batch_size=6), progress=False)


@pytest.mark.slow
def test_overfits_a_handful_of_images(data, overfit):
    model, log = overfit
    result = evaluate(model, data, batch_size=4, device="cpu")
    assert result.summary["dice"]["mean"] > 0.9
    assert log.losses[-1] < 0.5 * log.losses[0]
    assert not model.training


@pytest.mark.slow
def test_same_seed_same_weights_other_seed_other_weights(data):
    state = torch.get_rng_state()
    a = params(train_segmentation(data, small_config(augment="full", dropout=0.2), seed=1, progress=False)[0])
    b = params(train_segmentation(data, small_config(augment="full", dropout=0.2), seed=1, progress=False)[0])
    c = params(train_segmentation(data, small_config(augment="full", dropout=0.2), seed=2, progress=False)[0])
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert torch.equal(torch.get_rng_state(), state)  # callers' global RNG untouched


def _count_optimizer_steps(run):
    count = []
    handle = register_optimizer_step_post_hook(lambda *a: count.append(1))
    try:
        _, log = run()
    finally:
        handle.remove()
    return len(count), log


def test_steps_are_optimizer_steps_whatever_the_set_size():
    tiny = lesions(3)  # fewer images than the batch: batches are still full
    n, log = _count_optimizer_steps(lambda: train_segmentation(tiny, small_config(steps=7, batch_size=8),
                                                               progress=False))
    assert n == log.steps == len(log.losses) == 7
    assert log.images_seen == 7 * 8


def test_epoch_schedule_runs_epochs_times_batches_per_epoch():
    data = lesions(13)
    n, log = _count_optimizer_steps(lambda: train_segmentation(data, small_config(epochs=3, batch_size=4),
                                                               progress=False))
    assert n == log.steps == 3 * 4  # ceil(13 / 4) = 4 batches per epoch


def test_batch_schedule_covers_each_image_once_per_pass():
    order = batch_schedule(5, steps=6, batch_size=5, generator=torch.Generator().manual_seed(0))
    assert order.shape == (6, 5)
    for row in order:  # here one pass = one batch
        assert sorted(row.tolist()) == list(range(5))
    small = batch_schedule(3, steps=2, batch_size=4, generator=torch.Generator().manual_seed(0))
    assert small.shape == (2, 4) and set(small.flatten().tolist()) == {0, 1, 2}


def test_transfer_modes_load_what_they_say():
    source = UNet(base_width=8, out_channels=1).state_dict()  # restoration net: other head
    fresh = lambda: UNet(base_width=8, out_channels=2)  # noqa: E731
    for mode, copied in [("all-but-head", ("encoder.", "decoder.")), ("encoder", ("encoder.",)), ("none", ())]:
        torch.manual_seed(123)
        model = fresh()
        init = model.state_dict()
        init = {k: v.clone() for k, v in init.items()}
        names = load_initial_weights(model, source, mode)
        for key, value in model.state_dict().items():
            expected = source[key] if key.startswith(copied) else init[key]
            assert torch.equal(value, expected), (mode, key)
        assert all(name.startswith(copied) for name in names) and (len(names) > 0) == bool(copied)
    previous = fresh().state_dict()
    model = fresh()
    load_initial_weights(model, previous, "full")
    assert all(torch.equal(v, previous[k]) for k, v in model.state_dict().items())
    with pytest.raises(SaalError, match="head.weight"):
        load_initial_weights(fresh(), source, "full")  # head shapes differ
    with pytest.raises(SaalError, match="width or channels"):
        load_initial_weights(fresh(), UNet(base_width=16).state_dict(), "all-but-head")


def test_trainer_starts_from_the_transferred_weights(data):
    """With a vanishing learning rate the trained model is its starting point."""
    source = UNet(base_width=8, out_channels=1).state_dict()
    still = small_config(steps=1, lr=1e-12)
    scratch = params(train_segmentation(data, still, seed=4, progress=False)[0])
    model, log = train_segmentation(data, still, init_state=source, transfer="all-but-head", seed=4, progress=False)
    for key, value in params(model).items():
        expected = scratch[key] if key.startswith("head.") else source[key]
        assert torch.allclose(value, expected, atol=1e-9), key
    assert log.loaded == sum(k.startswith(("encoder.", "decoder.")) for k in source)
    assert log.transfer == "all-but-head"


def test_bad_training_input_raises_saal_errors(data):
    with pytest.raises(SaalError, match="masks"):
        train_segmentation(LesionData(ids=data.ids, images=data.images), small_config(), progress=False)
    with pytest.raises(SaalError, match="channel"):
        train_segmentation(lesions(4, channels=3), small_config(), progress=False)
    with pytest.raises(SaalError, match="transfer mode"):
        train_segmentation(data, small_config(), transfer="decoder", progress=False)
    with pytest.raises(SaalError, match="steps"):
        train_segmentation(data, small_config(steps=0), progress=False)


def test_config_from_presets():
    demo = SegConfig.from_preset(get_preset("demo"))
    assert (demo.steps, demo.epochs, demo.batch_size, demo.lr_schedule) == (200, None, 16, "cosine")
    paper = SegConfig.from_preset(get_preset("paper"))
    assert (paper.epochs, paper.batch_size, paper.lr, paper.base_width, paper.lr_schedule) == (
        10, 10, 1e-4, 64, "constant")
    assert paper.total_steps(300) == 10 * 30
    assert SegConfig.from_preset(get_preset("demo"), augment="none").augment == "none"


def test_mc_dropout_samples_differ_only_with_dropout(data):
    dropped = train_segmentation(data, small_config(dropout=0.5, steps=5), progress=False)[0]
    plain = train_segmentation(data, small_config(dropout=0.0, steps=5), progress=False)[0]
    for model, differ in [(dropped, True), (plain, False)]:
        samples = predict_proba(model, data, batch_size=4, device="cpu", mc_samples=3)
        assert samples.shape == (len(data), 3, SIZE, SIZE)
        assert (not torch.equal(samples[:, 0], samples[:, 1])) == differ
    # BatchNorm stays in eval mode: without dropout, MC samples equal the deterministic pass
    single = predict_proba(plain, data.images, batch_size=4, device="cpu")
    assert single.shape == (len(data), SIZE, SIZE)
    assert torch.allclose(single, predict_proba(plain, data, device="cpu", mc_samples=2)[:, 1], atol=1e-6)
    # repeatable for the same generator, and the model's modes are restored
    dropped.train()
    a = predict_proba(dropped, data, device="cpu", mc_samples=2, generator=torch.Generator().manual_seed(9))
    b = predict_proba(dropped, data, device="cpu", mc_samples=2, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a, b) and dropped.training


def test_iter_predictions_streams_softmax_batches(overfit, data):
    model, _ = overfit
    seen = []
    for index, probs in iter_predictions(model, data, batch_size=4, device="cpu"):
        assert probs.shape == (index.stop - index.start, 1, 2, SIZE, SIZE)
        assert torch.allclose(probs.sum(2), torch.ones(()), atol=1e-5)
        assert not torch.is_inference_mode_enabled()  # nothing leaks into the caller between batches
        seen.extend(range(index.start, index.stop))
    assert seen == list(range(len(data)))
    with pytest.raises(SaalError, match="uint8"):
        iter_predictions(model, data.images.astype(np.float32))


def test_evaluation_rows_csv_and_overlays(overfit, data, tmp_path):
    model, _ = overfit
    result = evaluate(model, data, batch_size=4, device="cpu")
    assert [row["image_id"] for row in result.rows] == data.ids
    assert result.predictions.shape == data.masks.shape
    assert set(result.summary) == {"dice", "iou", "hd95", "assd", "precision", "recall", "fg_fraction_true",
                                   "fg_fraction_pred"}
    rows = read_csv(result.write_csv(tmp_path / "eval.csv"))
    assert len(rows) == len(data) and float(rows[0]["dice"]) == pytest.approx(result.rows[0]["dice"])
    np.testing.assert_allclose(result.column("fg_fraction_true"), data.masks.mean(axis=(1, 2)))
    order = np.argsort(result.column("dice"))[[0, -1]]  # worst and best
    png = save_prediction_overlays(tmp_path / "cases.png", data.images[order], data.masks[order],
                                   result.predictions[order], [data.ids[i] for i in order],
                                   result.column("dice")[order])
    with Image.open(png) as image:
        assert image.size[0] > 100 and image.size[1] > 100
    with pytest.raises(SaalError, match="masks"):
        evaluate(model, LesionData(ids=data.ids, images=data.images))
