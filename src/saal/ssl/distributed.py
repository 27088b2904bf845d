"""Data-parallel context for pretraining under ``torchrun`` (PyTorch DDP).

``torchrun --nproc_per_node N ...`` starts N copies of the program and tells each
its place through the environment (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``/``PORT``). This module turns that environment into a
:class:`DistContext`: which device the process uses, whether it writes files
(rank 0 only) and the collectives the trainer needs. Without torchrun it is a
world of one and every operation is a no-op, so the trainer has a single code path.

:meth:`DistContext.gather_rows` is the one collective that autograd sees: the
contrastive loss of a rank compares its own projections with those of the whole
global batch, so the gradient of every rank's loss must reach the projections of
every rank (see :func:`saal.ssl.objectives.Objective.contrast`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import SaalError
from ..runtime import resolve_device


@dataclass
class DistContext:
    rank: int
    world_size: int
    device: torch.device
    owns_group: bool  # we initialised the process group, so we tear it down

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only rank 0 writes files and shows progress."""
        return self.rank == 0

    def all_mean(self, value: torch.Tensor) -> torch.Tensor:
        """Average a tensor over ranks (identity in a world of one)."""
        if self.enabled:
            value = value.clone()
            dist.all_reduce(value)
            value /= self.world_size
        return value

    def all_sum(self, value: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            value = value.clone()
            dist.all_reduce(value)
        return value

    def gather_rows(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every rank's ``tensor`` stacked along dim 0 in rank order, differentiably (``tensor`` in a world of one).

        Each rank must pass the same shape. Backward sums, over all ranks, the
        gradient that each rank's loss sends to this rank's rows, so every rank's
        projections receive the gradient of the sum of the ranks' losses.
        """
        return _GatherRows.apply(tensor) if self.enabled else tensor

    def gather_shards(self, shard: torch.Tensor, total: int) -> torch.Tensor:
        """The ``total`` rows that the ranks hold as ``rows[rank::world_size]``, gathered and back in their order.

        The inverse of sharding a list by rank: what every rank needs to treat
        the list as one process would (``shard`` itself in a world of one). The
        shards differ in length by at most one; the shorter ones are padded for
        the all-gather, and the padding falls after the last row.
        """
        if not self.enabled:
            return shard
        longest = -(-total // self.world_size)
        padded = torch.cat([shard, shard.new_zeros(longest - len(shard), *shard.shape[1:])])
        gathered = self.gather_rows(padded).view(self.world_size, longest, *shard.shape[1:])
        return gathered.transpose(0, 1).reshape(self.world_size * longest, *shard.shape[1:])[:total]

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group together: a rank that tears gloo down while another still talks to it
        aborts the other (``terminate called without an active exception``)."""
        if self.owns_group and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


class _GatherRows(torch.autograd.Function):
    """All-gather along dim 0 whose backward returns this rank's rows of the gradient summed over ranks.

    Written on the public ``all_gather`` / ``all_reduce`` (which gloo and NCCL both
    implement) rather than ``torch.distributed.nn.functional.all_gather``, which is
    deprecated in favour of a private module. The backward all-reduces the whole
    gathered gradient (world x the rows of a reduce-scatter): projections are a few
    kilobytes, so the simpler collective costs nothing measurable.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.contiguous()
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor)
        ctx.rows = slice(dist.get_rank() * tensor.shape[0], (dist.get_rank() + 1) * tensor.shape[0])
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone(memory_format=torch.contiguous_format)  # autograd may still hold ``grad``
        dist.all_reduce(total)
        return total[ctx.rows]


def setup(device: str = "auto", distributed: bool | None = None) -> DistContext:
    """The process's place in the run: single process, or one rank of a torchrun job.

    ``distributed=None`` follows the environment (``WORLD_SIZE`` > 1 means
    torchrun started us); ``True`` insists on it. Each rank uses gloo on CPU
    and NCCL on its own GPU (``cuda:LOCAL_RANK``).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if distributed is None:
        distributed = world > 1
    if not distributed:
        return DistContext(0, 1, resolve_device(device), owns_group=False)
    if "RANK" not in os.environ:
        raise SaalError("distributed pretraining needs torchrun: run 'torchrun --nproc_per_node N ...' "
                        "(RANK/WORLD_SIZE are not set)")
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), dev, owns_group=owns)
