"""Restoration pretraining: learning, files, exact resume, reuse, weight transfer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

import importlib
from saal.config import get_preset
from saal.data.dataset import LesionData
from saal.errors import SaalError
from saal.io import load_state, read_csv, read_json
from saal.models.unet import UNet, transfer_weights
from saal.ssl import PretrainConfig, load_pretrained, pretrain, split_validation

S = 32
pretrain_mod = importlib.import_module("saal.ssl.pretrain")  # the module; saal.ssl.pretrain is the function



def structured_pool(n: int = 24, channels: int = 1, seed: int = 0) -> LesionData:
    """Smooth textured backgrounds with a bright disc: structure worth restoring."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:S, :S]
    images = []
    for _ in range(n):
        cy, cx = rng.uniform(8, 24, 2)
        r, phase, freq = rng.uniform(4, 10), rng.uniform(0, 6), rng.uniform(3, 7)
        im = 110 + 50 * np.sin(xx / freq + phase) * np.cos(yy / freq) + 80 * ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r)
        images.append(np.repeat(im[..., None], channels, axis=2) * np.linspace(1.0, 0.8, channels))
    images = np.clip(np.stack(images), 0, 255).astype(np.uint8)
    return LesionData(ids=[f"img{i:03d}" for i in range(n)], images=images)


def tiny(**kw) -> PretrainConfig:
    base = dict(epochs=3, batch_size=6, base_width=4, lr=3e-3, patience=0, steps_per_epoch=4, n_samples=2)
    return PretrainConfig(**{**base, **kw})


def test_restoration_loss_decreases_and_files_are_written(tmp_path):
    pool = structured_pool()
    result = pretrain(pool, tmp_path, config=tiny(epochs=4, steps_per_epoch=8), progress=False)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < 0.8 * losses[0]
    assert result.epochs_run == 4 and not result.stopped_early and not result.reused

    ssl = tmp_path / "ssl"
    for name in ("checkpoint.pt", "weights.pt", "model.json", "history.csv", "samples.png"):
        assert (ssl / name).is_file(), name
    meta = read_json(ssl / "model.json")
    assert meta["unet"] == {"in_channels": 1, "out_channels": 1, "base_width": 4, "dropout": 0.0}
    assert meta["training"]["epochs"] == 4 and meta["metrics"]["epochs_run"] == 4
    assert meta["metrics"]["n_val"] == len(meta["val_ids"]) == round(0.1 * 24)
    assert meta["metrics"]["best_val_loss"] == min(h["val_loss"] for h in result.history)
    rows = read_csv(ssl / "history.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert set(rows[0]) == {"epoch", "train_loss", "val_loss", "val_restore", "val_identity", "restoration_gain",
                            "val_contrastive", "lr", "seconds"}
    for h in result.history:  # the restoration is compared with the trivial answer, the damaged input itself
        assert h["val_loss"] == h["val_restore"] and h["val_identity"] > 0 and h["val_contrastive"] is None
        assert h["restoration_gain"] == pytest.approx(1 - h["val_restore"] / h["val_identity"])
    assert result.history[-1]["restoration_gain"] > result.history[0]["restoration_gain"]
    with Image.open(ssl / "samples.png") as im:
        # two rows of damaged | restored | original, each image enlarged well beyond its S pixels
        assert im.width >= 3 * 100 and 1.2 < im.width / im.height < 1.6

    # The best epoch's weights are the ones saved.
    best = load_state(ssl / "weights.pt")
    model = load_pretrained(tmp_path)
    assert not model.training
    assert all(torch.equal(v, best[k]) for k, v in model.state_dict().items())


def test_validation_split_is_seeded_and_disjoint():
    train, val = split_validation(50, 0.1, seed=3)
    assert len(val) == 5 and len(train) == 45
    assert not set(train) & set(val) and set(train) | set(val) == set(range(50))
    assert np.array_equal(val, split_validation(50, 0.1, seed=3)[1])
    assert not np.array_equal(val, split_validation(50, 0.1, seed=4)[1])


def _interrupt_after_epoch(monkeypatch, epoch: int):
    """Make the run die (like Ctrl-C) right after the checkpoint of ``epoch`` is on disk."""
    original = pretrain_mod._Run.save

    def save_then_die(self, improved):
        original(self, improved)
        if self.epoch == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(pretrain_mod._Run, "save", save_then_die)


@pytest.mark.parametrize("resume_flag", [True, False])
@pytest.mark.slow
def test_interrupted_and_resumed_run_ends_with_identical_weights(tmp_path, monkeypatch, resume_flag):
    pool = structured_pool()
    cfg = tiny(epochs=3)
    whole = pretrain(pool, tmp_path / "whole", config=cfg, seed=5, progress=False)

    with monkeypatch.context() as m:
        _interrupt_after_epoch(m, 2)
        with pytest.raises(KeyboardInterrupt):
            pretrain(pool, tmp_path / "cut", config=cfg, seed=5, progress=False)
    assert not (tmp_path / "cut" / "ssl" / "model.json").exists()
    assert load_state(tmp_path / "cut" / "ssl" / "checkpoint.pt")["epoch"] == 2

    resumed = pretrain(pool, tmp_path / "cut", config=cfg, seed=5, progress=False, resume=resume_flag)
    assert resumed.epochs_run == 3 and not resumed.reused
    for name in ("weights.pt", "checkpoint.pt"):
        a = load_state(tmp_path / "whole" / "ssl" / name)
        b = load_state(tmp_path / "cut" / "ssl" / name)
        sa, sb = (a, b) if name == "weights.pt" else (a["model"], b["model"])
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), f"{name}: {k} differs after resume"
    strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]  # noqa: E731
    assert strip(resumed.history) == strip(whole.history)
    assert resumed.val_ids == whole.val_ids


def test_finished_run_is_reused_unless_forced(tmp_path):
    pool = structured_pool()
    cfg = tiny(epochs=1)
    first = pretrain(pool, tmp_path, config=cfg, progress=False)
    ckpt = tmp_path / "ssl" / "checkpoint.pt"
    stamp = ckpt.stat().st_mtime_ns
    again = pretrain(pool, tmp_path, config=cfg, progress=False)
    assert again.reused and ckpt.stat().st_mtime_ns == stamp
    assert again.best_val_loss == pytest.approx(first.best_val_loss)
    assert [h["train_loss"] for h in again.history] == pytest.approx([h["train_loss"] for h in first.history])
    forced = pretrain(pool, tmp_path, config=cfg, progress=False, force=True)
    assert not forced.reused and ckpt.stat().st_mtime_ns != stamp

    with pytest.raises(SaalError, match="config.epochs"):
        pretrain(pool, tmp_path, config=tiny(epochs=2), progress=False)


def test_other_settings_never_continue_a_checkpoint(tmp_path, monkeypatch):
    pool = structured_pool()
    with monkeypatch.context() as m:
        _interrupt_after_epoch(m, 1)
        with pytest.raises(KeyboardInterrupt):
            pretrain(pool, tmp_path, config=tiny(), seed=0, progress=False)
    with pytest.raises(SaalError, match="seed"):
        pretrain(pool, tmp_path, config=tiny(), seed=1, progress=False)


def test_resume_without_checkpoint_is_an_error(tmp_path):
    with pytest.raises(SaalError, match="nothing to resume"):
        pretrain(structured_pool(), tmp_path, config=tiny(), resume=True, progress=False)


def test_early_stopping_keeps_the_best_weights_and_lr_decays(tmp_path, monkeypatch):
    # Validation that only gets worse after epoch 1: patience 2 stops after epoch 3.
    monkeypatch.setattr(pretrain_mod._Run, "validate", lambda self: {"val_loss": 1.0 + self.epoch})
    result = pretrain(structured_pool(), tmp_path, config=tiny(epochs=6, patience=2, lr_step=1), progress=False)
    assert result.stopped_early and result.epochs_run == 3 and result.best_epoch == 1
    assert read_json(tmp_path / "ssl" / "model.json")["metrics"]["stopped_early"] is True
    lrs = [h["lr"] for h in result.history]
    assert lrs == pytest.approx([3e-3, 1.5e-3, 7.5e-4])
    best = load_state(tmp_path / "ssl" / "weights.pt")
    last = load_state(tmp_path / "ssl" / "checkpoint.pt")["model"]
    assert not all(torch.equal(best[k], last[k]) for k in best)  # epoch 1's weights, not the last ones


@pytest.mark.parametrize("mode,prefixes", [("all-but-head", ("encoder.", "decoder.")), ("encoder", ("encoder.",))])
def test_weights_transfer_into_a_segmentation_unet(tmp_path, mode, prefixes):
    pool = structured_pool(n=12, channels=3)
    result = pretrain(pool, tmp_path, config=tiny(epochs=1, steps_per_epoch=2), progress=False)
    assert result.unet.in_channels == result.unet.out_channels == 3
    source = load_state(result.weights_path)

    seg = UNet(in_channels=3, out_channels=2, base_width=4)
    before = {k: v.clone() for k, v in seg.state_dict().items()}
    copied = transfer_weights(seg, source, mode)
    after = seg.state_dict()
    assert copied == sorted(k for k in before if k.startswith(prefixes))
    for k, v in after.items():
        if k.startswith(prefixes):
            assert torch.equal(v, source[k]), k
        else:
            assert torch.equal(v, before[k]), f"{k} should be untouched"
    assert after["head.weight"].shape[0] == 2


def test_config_from_preset_and_validation():
    cpu = PretrainConfig.from_preset("cpu")
    p = get_preset("cpu")
    assert (cpu.epochs, cpu.batch_size, cpu.lr, cpu.patience, cpu.base_width) == (
        p.ssl_epochs, p.ssl_batch, p.ssl_lr, p.ssl_patience, p.base_width)
    assert PretrainConfig.from_preset("paper", epochs=2, lr=None).epochs == 2
    with pytest.raises(SaalError, match="unknown pretraining option"):
        PretrainConfig.from_preset("demo", epoch=3)
    with pytest.raises(SaalError, match="val_fraction"):
        PretrainConfig(val_fraction=1.0)
    with pytest.raises(SaalError, match="optimizer"):
        PretrainConfig(optimizer="lion")


def test_too_small_pool_is_an_error(tmp_path):
    with pytest.raises(SaalError, match="at least 2"):
        pretrain(structured_pool(n=1), tmp_path, config=tiny(), progress=False)


def test_cosine_and_plateau_schedules_keep_learning(tmp_path, monkeypatch):
    cosine = pretrain(structured_pool(), tmp_path / "cos", config=tiny(epochs=4, lr_schedule="cosine"),
                      progress=False)
    low = 0.01 * 3e-3  # annealed to 1 % of the rate over the epoch cap
    expected = [low + (3e-3 - low) * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)]
    assert [h["lr"] for h in cosine.history] == pytest.approx(expected)
    # plateau: the rate halves only after more than patience // 2 epochs without improvement
    val = iter([3.0, 2.0, 2.5, 2.6, 2.7, 1.0, 1.1])
    monkeypatch.setattr(pretrain_mod._Run, "validate", lambda self: {"val_loss": next(val)})
    plateau = pretrain(structured_pool(), tmp_path / "plateau", config=tiny(epochs=7, patience=4,
                                                                            lr_schedule="plateau"), progress=False)
    assert [h["lr"] for h in plateau.history] == pytest.approx([3e-3] * 5 + [1.5e-3] * 2)


def test_contrastive_pretraining_learns_and_never_needs_masks(tmp_path):
    pool = structured_pool(n=32)
    assert pool.masks is None
    result = pretrain(pool, tmp_path, config=tiny(epochs=6, batch_size=16, steps_per_epoch=6, lr=1e-3,
                                                  objective="contrastive"), progress=False)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]  # NT-Xent falls: the views of an image become recognisable
    first = result.history[0]
    assert first["val_restore"] is None and first["restoration_gain"] is None and first["val_contrastive"] > 0
    state = load_state(result.weights_path)
    assert set(state) == set(UNet(in_channels=1, out_channels=1, base_width=4).state_dict())  # no head in weights
    assert "net.0.weight" in load_state(tmp_path / "ssl" / "checkpoint.pt")["head"]
    with Image.open(tmp_path / "ssl" / "samples.png") as im:  # view 1 | view 2 | original
        assert im.width > im.height


def test_combined_objective_records_both_terms_and_resumes_exactly(tmp_path, monkeypatch):
    config = tiny(epochs=3, batch_size=8, objective="genesis+contrastive")
    whole = pretrain(structured_pool(), tmp_path / "whole", config=config, progress=False)
    for h in whole.history:
        assert h["val_restore"] > 0 and h["val_contrastive"] > 0
        assert h["val_loss"] == pytest.approx(h["val_restore"] + 0.01 * h["val_contrastive"])
    real = pretrain_mod._Run.end_epoch

    def stop_after_two(self, epoch, *args):
        improved = real(self, epoch, *args)
        if epoch == 1:
            self.save(improved)
            raise KeyboardInterrupt
        return improved

    monkeypatch.setattr(pretrain_mod._Run, "end_epoch", stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        pretrain(structured_pool(), tmp_path / "cut", config=config, progress=False)
    monkeypatch.undo()
    resumed = pretrain(structured_pool(), tmp_path / "cut", config=config, progress=False)
    a, b = load_state(whole.weights_path), load_state(resumed.weights_path)
    assert all(torch.equal(a[k], b[k]) for k in a)
