"""Data-parallel context for pretraining under ``torchrun`` (PyTorch DDP).

``torchrun --nproc_per_node N ...`` starts N copies of the program and tells each
its place through the environment (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``/``PORT``). This module turns that environment into a
:class:`DistContext`: which device the process uses, whether it writes files
(rank 0 only) and the collectives the trainer needs. Without torchrun it is a
world of one and every operation is a no-op, so the trainer has a single code path.
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

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


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
