"""Semi-supervised training: pseudo-labels from the unlabeled pool, without labels, tests or randomness leaking in."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from saal.active import loop as loop_module
from saal.active import run_simulated
from saal.config import get_preset
from saal.errors import SaalError
from saal.experiments.matrix import Cell, build_matrix
from saal.experiments.results import results_from_rows
from saal.pipeline import pool_features, run_loop_config
from saal.segmentation import SegConfig, train_segmentation
from saal.segmentation.semi import CUTMIX_AREA, cutmix_boxes, masked_cross_entropy, strong_view_and_targets
from saal.workspace import open_workspace
from test_seg_training import lesions

TINY = get_preset("demo").with_overrides(
    name="tiny", image_size=32, synth_n=48, pool_size=36, test_size=12, ssl_epochs=1, seg_steps=3,
    seg_batch=4, budgets=(4, 8), n_clusters=3, seg_train="semi")


def semi_config(**kw):
    base = dict(steps=6, batch_size=4, unlabeled_batch=4, lr=3e-3, base_width=8, dropout=0.0, augment="flips",
                device="cpu", train="semi", confidence=0.6)
    return SegConfig(**{**base, **kw})


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_weights(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def labeled():
    return lesions(4, seed=1)


@pytest.fixture(scope="module")
def unlabeled():
    return lesions(10, seed=2)


def test_the_unlabeled_loss_never_reads_masks(labeled, unlabeled):
    """Training with the unlabeled images' true masks, other masks or none gives the same model."""
    other = lesions(10, seed=2)
    other.masks = 1 - other.masks
    without = lesions(10, seed=2)
    without.masks = None
    runs = [train_segmentation(labeled, semi_config(), unlabeled=u, seed=3, progress=False) for u in
            (unlabeled, other, without)]
    first = weights(runs[0][0])
    assert all(same_weights(first, weights(model)) for model, _ in runs[1:])
    log = runs[0][1]
    assert log.train == "semi" and len(log.unlabeled_losses) == 6 and np.isfinite(log.unlabeled_losses).all()


def test_semi_training_uses_the_unlabeled_images_and_is_deterministic(labeled, unlabeled):
    a, _ = train_segmentation(labeled, semi_config(), unlabeled=unlabeled, seed=3, progress=False)
    b, _ = train_segmentation(labeled, semi_config(), unlabeled=unlabeled, seed=3, progress=False)
    c, _ = train_segmentation(labeled, semi_config(), unlabeled=lesions(10, seed=5), seed=3, progress=False)
    sup, log = train_segmentation(labeled, semi_config(train="supervised"), unlabeled=unlabeled, seed=3,
                                  progress=False)
    assert same_weights(weights(a), weights(b))
    assert not same_weights(weights(a), weights(c))  # other unlabeled images, another model
    assert not same_weights(weights(a), weights(sup))
    assert log.train == "supervised" and log.unlabeled_losses == []


def test_semi_without_unlabeled_images_trains_supervised_and_says_so(labeled, capsys):
    sup, _ = train_segmentation(labeled, semi_config(train="supervised"), seed=3, progress=False)
    capsys.readouterr()
    for empty in (None, labeled.subset([])):
        model, log = train_segmentation(labeled, semi_config(), unlabeled=empty, seed=3, progress=False)
        assert log.train == "supervised"
        assert same_weights(weights(model), weights(sup))
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "no unlabeled images left, training supervised on the 4" in err


def test_bad_semi_settings_are_refused(labeled):
    with pytest.raises(SaalError, match="unknown training mode 'fixmatch'"):
        semi_config(train="fixmatch").validated()
    with pytest.raises(SaalError, match="confidence must be in"):
        semi_config(confidence=1.0).validated()
    with pytest.raises(SaalError, match="differ from the labeled ones"):
        train_segmentation(labeled, semi_config(), unlabeled=lesions(5, seed=2, size=16), progress=False)


def test_pseudo_labels_keep_only_confident_pixels_and_move_with_the_cutmix_box():
    images = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(0))

    def sure_left(x):  # class 1 with certainty on the left half, undecided on the right
        logits = torch.zeros(x.shape[0], 2, 16, 16)
        logits[:, 1, :, :8] = 20.0
        return logits

    strong, targets = strong_view_and_targets(sure_left, images, torch.Generator().manual_seed(1), 0.95)
    assert strong.shape == images.shape and 0 <= strong.min() and strong.max() <= 1
    assert set(targets.unique().tolist()) <= {-1, 1}
    # each image's confident pixels form the left half, in its own frame or a pasted box of the next image
    assert 0 < (targets == 1).float().mean() < 1
    boxes = cutmix_boxes(4, 20, torch.rand(4, 2))
    side = round(20 * CUTMIX_AREA ** 0.5)
    assert boxes.sum(dim=(1, 2)).tolist() == [side * side] * 4
    logits = torch.zeros(1, 2, 2, 2)
    assert masked_cross_entropy(logits, torch.full((1, 2, 2), -1)) == 0


def test_the_loop_gives_semi_training_the_pool_minus_labels_and_resumes_a_killed_round(tmp_path, monkeypatch):
    ws = open_workspace(tmp_path / "run", preset=TINY, progress=False)
    feats = pool_features(ws, progress=False)
    config = run_loop_config(ws, budgets=(4, 8), query="random", init="scratch", seed=1)
    assert config.seg.train == "semi"
    args = dict(pool=ws.pool, test=ws.test, config=config, features=feats, ssl_state=None, progress=False)
    real = loop_module.train_segmentation
    seen = []

    def spy(labeled, seg, *, unlabeled=None, **kw):
        seen.append((list(labeled.ids), list(unlabeled.ids), unlabeled.masks))
        return real(labeled, seg, unlabeled=unlabeled, **kw)

    monkeypatch.setattr(loop_module, "train_segmentation", spy)
    straight = run_simulated(tmp_path / "straight", **args)
    assert [r["train"] for r in straight] == ["semi", "semi"]
    for labeled_ids, unlabeled_ids, masks in seen:
        assert sorted(unlabeled_ids) == sorted(set(ws.pool.ids) - set(labeled_ids))
        assert not set(unlabeled_ids) & set(ws.test.ids) and masks is None

    def crash(labeled, seg, **kw):
        if kw["seed"] % 1000 == 1:
            raise KeyboardInterrupt("simulated kill")
        return real(labeled, seg, **kw)

    monkeypatch.setattr(loop_module, "train_segmentation", crash)
    with pytest.raises(KeyboardInterrupt):
        run_simulated(tmp_path / "crashed", **args)
    monkeypatch.undo()
    resumed = run_simulated(tmp_path / "crashed", **args)
    assert [r["dice"] for r in resumed] == [r["dice"] for r in straight]
    a = torch.load(tmp_path / "straight/models/latest.pt", weights_only=True)
    b = torch.load(tmp_path / "crashed/models/latest.pt", weights_only=True)
    assert same_weights(a, b)
    assert json.loads((tmp_path / "crashed/config.json").read_text())["seg"]["train"] == "semi"


def test_the_matrix_crosses_training_modes_and_results_keep_them_apart():
    preset = get_preset("demo")
    cells = build_matrix(preset, cold_starts="random", inits="ssl", queries="random", trains="supervised,semi")
    assert [c.name for c in cells] == ["random-ssl-random", "random-ssl-random-semi"]
    assert build_matrix(preset, cold_starts="random", inits="ssl")[0].train == preset.seg_train
    with pytest.raises(SaalError, match="--train: unknown training mode 'mean-teacher'"):
        build_matrix(preset, trains="mean-teacher")
    rows = [dict(cold_start="random", init="ssl", query="random", train=c.train, cell=c.name, seed=0, round=0,
                 n_labeled=10, dice=0.5) for c in cells]
    results = results_from_rows(rows)
    assert [Cell(*results.meta(c)) for c in results.cells] == cells
    legacy = results_from_rows([{k: v for k, v in rows[0].items() if k != "train"}])
    assert legacy.meta("random-ssl-random")[3] == "supervised"
