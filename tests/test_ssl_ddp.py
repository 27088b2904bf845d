"""Data-parallel pretraining: two CPU processes under torchrun (gloo) on tiny data."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from saal.io import load_state, read_json
from saal.models.unet import UNet
from saal.ssl.contrastive import nt_xent

PRETRAIN_SCRIPT = textwrap.dedent(
    """
    import json
    import os
    import sys
    from pathlib import Path

    import numpy as np

    from saal.data.dataset import LesionData
    from saal.ssl import PretrainConfig, pretrain

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(16, 32, 32, 1), dtype=np.uint8)
    pool = LesionData(ids=[f"img{i}" for i in range(16)], images=images)
    # 5 validation images: rank 0 holds 3 (two chunks of the local batch 2), rank 1 holds 2 (one chunk)
    config = PretrainConfig(epochs=2, batch_size=4, base_width=4, steps_per_epoch=3, patience=0, n_samples=1,
                            val_fraction=0.3, objective=sys.argv[3])
    result = pretrain(pool, sys.argv[1], config=config, progress=False, seed=1)
    history = [{k: v for k, v in h.items() if k != "seconds"} for h in result.history]
    Path(sys.argv[2], f"rank{os.environ['RANK']}.json").write_text(json.dumps(history))
    """
)

# Each rank holds half of a fixed batch of projection pairs; the NT-Xent of the global batch, its gradient with
# respect to the projections, and through DDP the gradient of a linear layer that makes them. Then the shards
# rows[rank::2] of 5 rows (3 and 2), gathered back in order, as validation gathers its projections.
COLLECTIVES_SCRIPT = textwrap.dedent(
    """
    import sys

    import torch
    from torch.nn.parallel import DistributedDataParallel

    from saal.ssl import distributed as ddp
    from saal.ssl.objectives import Objective
    from saal.ssl.transforms import GenesisConfig
    from saal.ssl.views import ViewConfig

    ctx = ddp.setup("cpu", distributed=True)
    fixed = torch.load(sys.argv[1])
    share = len(fixed["pairs"]) // ctx.world_size
    mine = slice(ctx.rank * share, (ctx.rank + 1) * share)
    rule = Objective("contrastive", GenesisConfig(), ViewConfig(), temperature=0.3, contrastive_weight=0.01)

    pairs = fixed["pairs"][mine].clone().requires_grad_()
    loss = rule.contrast(pairs, ctx)
    loss.backward()

    layer = torch.nn.Linear(*fixed["weight"].shape[::-1])
    with torch.no_grad():
        layer.weight.copy_(fixed["weight"])
        layer.bias.copy_(fixed["bias"])
    net = DistributedDataParallel(layer)
    rule.contrast(net(fixed["inputs"][mine]), ctx).backward()  # DDP averages the gradients over the ranks

    rows = torch.arange(10.0).view(5, 2)
    ordered = ctx.gather_shards(rows[ctx.rank::ctx.world_size], len(rows))

    torch.save({"loss": loss.detach(), "pairs_grad": pairs.grad, "weight_grad": layer.weight.grad,
                "bias_grad": layer.bias.grad, "alone": rule.contrast(pairs.detach()), "ordered": ordered},
               f"{sys.argv[2]}/rank{ctx.rank}.pt")
    del net  # DDP's reducer before its process group, as pretrain() does
    ctx.close()
    """
)


def torchrun(tmp_path: Path, script: str, *args: str) -> None:
    """Run ``script`` as two gloo CPU processes under torchrun; fail with its output if it fails."""
    path = tmp_path / "script.py"
    path.write_text(script)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", str(path), *args],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.fixture(scope="module")
def collectives(tmp_path_factory) -> tuple[dict, list[dict]]:
    """The fixed inputs and what each of two ranks computed from its half (one torchrun for the tests below)."""
    tmp_path = tmp_path_factory.mktemp("collectives")
    g = torch.Generator().manual_seed(0)
    fixed = {"pairs": torch.randn(6, 2, 5, generator=g), "inputs": torch.randn(6, 2, 4, generator=g),
             "weight": torch.randn(5, 4, generator=g), "bias": torch.randn(5, generator=g)}
    torch.save(fixed, tmp_path / "fixed.pt")
    torchrun(tmp_path, COLLECTIVES_SCRIPT, str(tmp_path / "fixed.pt"), str(tmp_path))
    return fixed, [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]


@pytest.mark.slow  # two interpreter starts and a process group: ~10 s on 2 busy cores
def test_nt_xent_on_two_ranks_equals_one_process_with_the_whole_batch(collectives):
    fixed, ranks = collectives
    # one process, the whole batch
    pairs = fixed["pairs"].clone().requires_grad_()
    whole = nt_xent(pairs[:, 0], pairs[:, 1], 0.3)
    whole.backward()
    layer = torch.nn.Linear(4, 5)
    with torch.no_grad():
        layer.weight.copy_(fixed["weight"])
        layer.bias.copy_(fixed["bias"])
    projected = layer(fixed["inputs"])
    nt_xent(projected[:, 0], projected[:, 1], 0.3).backward()

    # the ranks' losses average to the whole batch's; per-rank negatives (3 pairs each) would not
    assert (ranks[0]["loss"] + ranks[1]["loss"]) / 2 == pytest.approx(whole.item(), abs=1e-6)
    assert (ranks[0]["alone"] + ranks[1]["alone"]) / 2 != pytest.approx(whole.item(), abs=1e-2)
    # each rank's projections get the gradient of the sum of both losses (twice the mean's), before DDP halves it
    got = torch.cat([ranks[0]["pairs_grad"], ranks[1]["pairs_grad"]]) / 2
    assert torch.allclose(got, pairs.grad, atol=1e-6)
    # after DDP's averaging both ranks hold the gradient of one process with the whole batch
    for rank in ranks:
        assert torch.allclose(rank["weight_grad"], layer.weight.grad, atol=1e-6)
        assert torch.allclose(rank["bias_grad"], layer.bias.grad, atol=1e-6)


@pytest.mark.slow  # shares the torchrun of the test above
def test_shards_of_uneven_length_are_gathered_back_in_order(collectives):
    _, ranks = collectives
    for rank in ranks:
        assert torch.equal(rank["ordered"], torch.arange(10.0).view(5, 2))


@pytest.mark.parametrize("objective", ["genesis", "contrastive"])
@pytest.mark.slow  # two interpreter starts and a process group: ~15-25 s on 2 busy cores
def test_torchrun_two_cpu_processes_train_and_rank0_writes(tmp_path, objective):
    run_dir = tmp_path / "run"
    torchrun(tmp_path, PRETRAIN_SCRIPT, str(run_dir), str(tmp_path), objective)
    histories = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert len(histories[0]) == 2  # both ranks returned after both epochs ...
    assert histories[0] == histories[1]  # ... with the same losses, so the same early-stopping decisions

    meta = read_json(run_dir / "ssl" / "model.json")
    assert meta["world_size"] == 2 and meta["metrics"]["epochs_run"] == 2
    assert meta["training"]["objective"] == objective and meta["metrics"]["n_val"] == 5
    model = UNet(**meta["unet"])
    model.load_state_dict(load_state(run_dir / "ssl" / "weights.pt"))
    ckpt = load_state(run_dir / "ssl" / "checkpoint.pt")
    assert ckpt["epoch"] == 2 and len(ckpt["history"]) == 2
    for h in ckpt["history"]:
        assert math.isfinite(h["train_loss"]) and math.isfinite(h["val_loss"])
        if objective == "contrastive":
            # NT-Xent of the 5 validation images as one chunk of 4 (global batch) and one of 1, as one process
            # forms them: positive and finite, and no restoration term
            assert h["val_contrastive"] > 0 and h["val_restore"] is None
            assert h["val_loss"] == pytest.approx(0.01 * h["val_contrastive"])
        else:
            assert h["val_restore"] > 0 and h["val_contrastive"] is None
    assert ("net.0.weight" in ckpt["head"]) == (objective == "contrastive")
    assert (run_dir / "ssl" / "samples.png").is_file()
