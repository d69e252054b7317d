"""Distributed training context: one process per GPU under ``torchrun``, or a single process.

``torchrun --nproc_per_node=N -m edgevision train …`` sets ``RANK``/``WORLD_SIZE``/
``LOCAL_RANK``; we join the process group (NCCL on GPUs, gloo on CPUs), each rank trains on a
shard of the data, and only rank 0 writes files or prints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgevision.errors import EdgeVisionError

if TYPE_CHECKING:
    import torch


@dataclass
class DistContext:
    """Where this process stands: its rank, the world size and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool = False  # True when we initialised the process group (and must close it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _pick_device(name: str, local_rank: int) -> torch.device:
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise EdgeVisionError("--device cuda: no CUDA GPU is visible", "use --device cpu")
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def setup(device: str = "auto") -> DistContext:
    """Join the process group when launched by torchrun; otherwise a single-process context."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = _pick_device(device, local_rank)
    owns = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        owns = True
    return DistContext(rank, world, local_rank, dev, owns)


def cleanup(ctx: DistContext) -> None:
    """Leave the process group if we created it."""
    import torch.distributed as dist

    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (no-op in a single process)."""
    import torch.distributed as dist

    if ctx.distributed:
        dist.barrier()


def all_sum(ctx: DistContext, tensor: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over all ranks, in place (no-op in a single process)."""
    import torch.distributed as dist

    if ctx.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_buffers(ctx: DistContext, model: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running stats) to every rank.

    DDP syncs buffers at the start of each forward, so after the last step of an epoch the
    ranks' running statistics differ; this makes evaluation and checkpoints identical.
    """
    import torch.distributed as dist

    if ctx.distributed:
        for buf in model.buffers():
            dist.broadcast(buf, src=0)


def gather_objects(ctx: DistContext, obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` in a single process)."""
    import torch.distributed as dist

    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def any_rank(ctx: DistContext, flag: bool) -> bool:
    """True when ``flag`` is true on any rank (so all ranks take the same branch)."""
    import torch

    t = torch.tensor([1.0 if flag else 0.0], device=ctx.device)
    return bool(all_sum(ctx, t).item() > 0)
