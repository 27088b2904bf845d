"""The ``precision`` setting: the arithmetic of training steps, from the preset to every training step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saal.config import Preset, get_preset, parse_settings
from saal.errors import SaalError
from saal.io import read_json, write_json
from saal.runtime import MixedPrecision, cpu_has_native_bf16
from saal.segmentation import SegConfig, train_segmentation
from saal.ssl import PretrainConfig, pretrain

from test_seg_training import lesions, small_config
from test_ssl_pretrain import structured_pool, tiny

CPU = torch.device("cpu")


def record_conv_dtypes(monkeypatch) -> set:
    """The dtypes of every convolution output from now on (``Conv2d.forward`` patched for the test)."""
    seen: set = set()
    original = torch.nn.Conv2d.forward

    def recording(self, x):
        out = original(self, x)
        seen.add(out.dtype)
        return out

    monkeypatch.setattr(torch.nn.Conv2d, "forward", recording)
    return seen


def test_mixed_precision_per_device_and_setting():
    assert MixedPrecision.for_device(CPU, "auto") == MixedPrecision(None, None)  # CPUs train in fp32 unless asked
    assert MixedPrecision.for_device(CPU, "fp32") == MixedPrecision(None, None)
    assert MixedPrecision.for_device(CPU, "bf16") == MixedPrecision(torch.bfloat16, None)
    with pytest.raises(SaalError, match="choose one of auto, fp32, bf16"):
        MixedPrecision.for_device(CPU, "fp16")
    assert isinstance(cpu_has_native_bf16(), bool)


def test_preset_records_precision_and_old_records_read_as_auto():
    assert get_preset("demo").precision == "auto"
    assert parse_settings(["precision=bf16"]) == {"precision": "bf16"}
    with pytest.raises(SaalError, match="precision 'half'"):
        get_preset("demo").with_overrides(precision="half")
    record = get_preset("demo").with_overrides(precision="bf16").to_dict()
    assert Preset.from_record(record).precision == "bf16"
    del record["precision"]
    assert Preset.from_record(record).precision == "auto"  # runs made before the setting trained as auto does
    bf16 = get_preset("demo").with_overrides(precision="bf16")
    assert SegConfig.from_preset(bf16).precision == PretrainConfig.from_preset(bf16).precision == "bf16"
    with pytest.raises(SaalError, match="precision"):
        SegConfig(precision="fp8").validated()
    with pytest.raises(SaalError, match="precision"):
        PretrainConfig(precision="fp8")


def test_segmentation_steps_run_in_the_precision_asked_for(monkeypatch):
    data, runs = lesions(6), {}
    for precision in ("fp32", "bf16"):
        seen = record_conv_dtypes(monkeypatch)
        model, log = train_segmentation(data, small_config(steps=30, precision=precision), progress=False)
        runs[precision] = (model, log, set(seen))
        monkeypatch.undo()
    assert runs["fp32"][2] == {torch.float32}
    assert torch.bfloat16 in runs["bf16"][2]
    for model, log, _ in runs.values():
        assert all(p.dtype == torch.float32 for p in model.parameters())  # the weights stay fp32
        assert np.isfinite(log.losses).all() and log.losses[-1] < log.losses[0]
    fp32, bf16 = (dict(runs[p][0].named_parameters()) for p in ("fp32", "bf16"))
    assert any(not torch.equal(fp32[k], bf16[k]) for k in fp32)  # the setting changed the arithmetic


def test_pretraining_in_bf16_learns_records_it_and_old_runs_are_reused(tmp_path, monkeypatch):
    seen = record_conv_dtypes(monkeypatch)
    result = pretrain(structured_pool(), tmp_path, config=tiny(epochs=3, precision="bf16"), progress=False)
    assert torch.bfloat16 in seen
    losses = [h["train_loss"] for h in result.history]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    meta_path = tmp_path / "ssl" / "model.json"
    assert read_json(meta_path)["training"]["precision"] == "bf16"

    # A run recorded before the setting existed (no "precision") is reused as one made with "auto".
    auto_dir = tmp_path / "auto"
    pretrain(structured_pool(), auto_dir, config=tiny(epochs=1), progress=False)
    meta = read_json(auto_dir / "ssl" / "model.json")
    for record in (meta["training"], meta["fingerprint"]["config"]):
        del record["precision"]
    write_json(auto_dir / "ssl" / "model.json", meta)
    assert pretrain(structured_pool(), auto_dir, config=tiny(epochs=1), progress=False).reused
    with pytest.raises(SaalError, match="config.precision"):
        pretrain(structured_pool(), auto_dir, config=tiny(epochs=1, precision="bf16"), progress=False)
