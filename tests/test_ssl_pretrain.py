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
from saal.runtime import Stream, generator, stream_seed
from saal.cli.pipeline_cmds import OBJECTIVE_HELP, pretrain_cmd
from saal.cli.text import help_text
from saal.ssl import (OBJECTIVES, PretrainConfig, PretrainResult, describe_objective, load_pretrained, pretrain,
                      sample_columns, split_validation)
from saal.ssl.objectives import Objective

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
    base = dict(epochs=3, batch_size=6, base_width=4, lr=3e-3, patience=0, steps_per_epoch=4, n_samples=2,
                objective="genesis", lr_schedule="step")
    return PretrainConfig(**{**base, **kw})


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True in a 1-D mask."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def sample_grid(png, size: int = S) -> np.ndarray:
    """The grey images of ``samples.png`` read back from the picture: ``(rows, columns, size, size)``.

    Every image is an enlarged framed tile on a white page: rows and columns of
    tiles are the runs of non-white pixel rows and columns (the column titles are
    too short a run to count as a row of tiles). Each of the ``size x size`` pixels
    is read at the centre of its enlarged block, inside the one-pixel frame.
    """
    with Image.open(png) as im:
        grey = np.asarray(im.convert("L")).astype(np.int16)
    ink = grey < 250
    rows = [(a, b) for a, b in _runs(ink.any(axis=1)) if b - a > 3 * size]
    columns = _runs(ink[np.concatenate([np.arange(a, b) for a, b in rows])].any(axis=0))
    tiles = {(b - a) for a, b in rows + columns}
    assert max(tiles) - min(tiles) <= 1 and min(tiles) > 3 * size, f"tiles of unequal or small sides {tiles}"
    centres = lambda a, b: (a + 1 + (np.arange(size) + 0.5) * (b - a - 2) / size).astype(int)  # noqa: E731
    return np.array([[grey[np.ix_(centres(*r), centres(*c))] for c in columns] for r in rows])


def expected_samples(pool: LesionData, result: PretrainResult, config: PretrainConfig, seed: int) -> np.ndarray:
    """What samples.png must show, redrawn from the run's seed and best weights: ``(rows, 3, S, S)`` grey levels.

    Damaged input, the best weights' restoration and the (equally flipped) original when the objective
    restores; the two contrastive views and the original otherwise.
    """
    pos = [pool.ids.index(i) for i in result.val_ids[:config.n_samples]]
    clean = torch.from_numpy(pool.images[pos]).permute(0, 3, 1, 2).float() / 255
    rule = Objective(config.objective, config.genesis, config.views, config.temperature, config.contrastive_weight)
    draw = rule.draw(clean, generator(stream_seed(seed, Stream.SSL_SAMPLES)))
    if rule.restores:
        with torch.no_grad():
            columns = (draw.damaged, torch.sigmoid(load_pretrained(result.ssl_dir.parent)(draw.damaged)), draw.targets)
    else:
        columns = (*draw.views.chunk(2), clean)
    return np.stack([(c[:, 0].clamp(0, 1) * 255).round().numpy() for c in columns], axis=1)


def test_restoration_loss_decreases_and_files_are_written(tmp_path):
    pool, config = structured_pool(), tiny(epochs=4, steps_per_epoch=8)
    result = pretrain(pool, tmp_path, config=config, progress=False)
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
    # two rows of damaged | restored | original (flipped like the input), each enlarged well beyond its S pixels
    shown, expected = sample_grid(ssl / "samples.png"), expected_samples(pool, result, config, seed=0)
    assert shown.shape == expected.shape == (2, 3, S, S)
    assert np.abs(shown - expected).max() <= 2  # grey levels; the restoration differs from input and original
    assert np.abs(expected[:, 1] - expected[:, 0]).mean() > 10 and np.abs(expected[:, 1] - expected[:, 2]).mean() > 5

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


def _recorded(run_dir) -> tuple[list[dict], float]:
    """history.csv as numbers (an empty cell as None), and the rate the optimiser would use next (checkpoint)."""
    rows = [{k: float(v) if v else None for k, v in r.items()} for r in read_csv(run_dir / "ssl" / "history.csv")]
    return rows, load_state(run_dir / "ssl" / "checkpoint.pt")["optimizer"]["param_groups"][0]["lr"]


def test_cosine_schedule_anneals_to_one_percent_while_losses_are_recorded(tmp_path):
    result = pretrain(structured_pool(), tmp_path, config=tiny(epochs=4, lr_schedule="cosine"), progress=False)
    rows, next_lr = _recorded(tmp_path)
    low = 0.01 * 3e-3  # annealed to 1 % of the rate over the epoch cap
    expected = [low + (3e-3 - low) * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(5)]
    assert [r["lr"] for r in rows] + [next_lr] == pytest.approx(expected)
    for r in rows:  # every epoch trained and was validated, with a restoration that beats doing nothing
        assert all(math.isfinite(r[k]) for k in ("train_loss", "val_loss", "val_restore", "val_identity"))
        assert r["val_loss"] == r["val_restore"] and r["restoration_gain"] > 0
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]  # it kept learning
    assert [r["val_loss"] for r in rows] == [h["val_loss"] for h in result.history]


def test_plateau_schedule_halves_only_after_patience_on_a_given_validation_sequence(tmp_path, monkeypatch):
    # the rate halves only after more than patience // 2 epochs without improvement
    val = iter([3.0, 2.0, 2.5, 2.6, 2.7, 1.0, 1.1])
    monkeypatch.setattr(pretrain_mod._Run, "validate", lambda self: {"val_loss": next(val)})
    plateau = pretrain(structured_pool(), tmp_path, config=tiny(epochs=7, patience=4, lr_schedule="plateau"),
                       progress=False)
    assert [h["lr"] for h in plateau.history] == pytest.approx([3e-3] * 5 + [1.5e-3] * 2)


def test_plateau_schedule_and_early_stopping_on_a_real_plateau(tmp_path):
    # Adam at 3e-2 overshoots after the first epoch and the validation loss never gets back to it: patience 4
    # halves the rate after 3 epochs without improvement (more than 4 // 2) and stops after 4.
    config = tiny(epochs=8, patience=4, lr=3e-2, lr_schedule="plateau", steps_per_epoch=2)
    result = pretrain(structured_pool(n=16), tmp_path, config=config, seed=2, progress=False)
    rows, next_lr = _recorded(tmp_path)
    val = [r["val_loss"] for r in rows]
    assert all(math.isfinite(r["train_loss"]) and math.isfinite(r["val_loss"]) for r in rows)
    assert min(val[1:]) > val[0]  # the plateau: no epoch beats the first
    assert [r["lr"] for r in rows] == pytest.approx([3e-2] * 4 + [1.5e-2]) and next_lr == pytest.approx(1.5e-2)
    assert result.stopped_early and result.epochs_run == 5 and result.best_epoch == 1
    assert read_json(tmp_path / "ssl" / "model.json")["metrics"]["stopped_early"] is True


def test_contrastive_pretraining_learns_and_never_needs_masks(tmp_path):
    pool = structured_pool(n=32)
    assert pool.masks is None
    config = tiny(epochs=6, batch_size=16, steps_per_epoch=6, lr=1e-3, objective="contrastive")
    result = pretrain(pool, tmp_path, config=config, progress=False)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0]  # NT-Xent falls: the views of an image become recognisable
    first = result.history[0]
    assert first["val_restore"] is None and first["restoration_gain"] is None and first["val_contrastive"] > 0
    state = load_state(result.weights_path)
    assert set(state) == set(UNet(in_channels=1, out_channels=1, base_width=4).state_dict())  # no head in weights
    assert "net.0.weight" in load_state(tmp_path / "ssl" / "checkpoint.pt")["head"]
    # view 1 | view 2 | original: the encoder's two views, drawn again from the run's seed (no restoration)
    shown, expected = sample_grid(tmp_path / "ssl" / "samples.png"), expected_samples(pool, result, config, seed=0)
    assert shown.shape == expected.shape == (2, 3, S, S)
    assert np.abs(shown - expected).max() <= 2
    assert np.abs(expected[:, 0] - expected[:, 1]).mean() > 10 and np.abs(expected[:, 0] - expected[:, 2]).mean() > 10


def test_each_objective_is_described_by_what_it_trains_and_shows():
    restoring = {"genesis", "genesis+contrastive"}
    for objective in OBJECTIVES:
        words, columns = describe_objective(objective), sample_columns(objective)
        assert " | ".join(columns) in words  # the caption names the picture's columns
        assert columns[:2] == (("damaged input", "restored") if objective in restoring else ("view 1", "view 2"))
        assert ("restore" in words) == (objective in restoring)
        assert ("views" in words) == ("contrastive" in objective)
        assert ("the decoder was not trained" in words) == (objective == "contrastive")
        # `saal pretrain --help` names the same columns and every objective
        assert " / ".join(columns) in help_text(pretrain_cmd.__doc__) and objective in OBJECTIVE_HELP


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
