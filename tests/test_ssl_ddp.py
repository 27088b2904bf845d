"""Data-parallel pretraining: two CPU processes under torchrun (gloo) on tiny data."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from saal.io import load_state, read_json
from saal.models.unet import UNet

SCRIPT = textwrap.dedent(
    """
    import os
    import sys
    from pathlib import Path

    import numpy as np

    from saal.data.dataset import LesionData
    from saal.ssl import PretrainConfig, pretrain

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(16, 32, 32, 1), dtype=np.uint8)
    pool = LesionData(ids=[f"img{i}" for i in range(16)], images=images)
    config = PretrainConfig(epochs=2, batch_size=4, base_width=4, steps_per_epoch=3, patience=0, n_samples=1)
    result = pretrain(pool, sys.argv[1], config=config, progress=False, seed=1)
    Path(sys.argv[2], f"rank{os.environ['RANK']}.done").write_text(str(result.epochs_run))
    """
)


@pytest.mark.slow  # two interpreter starts and a process group: ~15-25 s on 2 busy cores
def test_torchrun_two_cpu_processes_train_and_rank0_writes(tmp_path):
    script = tmp_path / "ddp_pretrain.py"
    script.write_text(SCRIPT)
    run_dir = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
         str(script), str(run_dir), str(tmp_path)],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for rank in (0, 1):  # both ranks returned after both epochs
        assert (tmp_path / f"rank{rank}.done").read_text() == "2"

    meta = read_json(run_dir / "ssl" / "model.json")
    assert meta["world_size"] == 2 and meta["metrics"]["epochs_run"] == 2
    model = UNet(**meta["unet"])
    model.load_state_dict(load_state(run_dir / "ssl" / "weights.pt"))
    ckpt = load_state(run_dir / "ssl" / "checkpoint.pt")
    assert ckpt["epoch"] == 2 and len(ckpt["history"]) == 2
    assert all(torch.isfinite(torch.tensor(h["train_loss"])) for h in ckpt["history"])
