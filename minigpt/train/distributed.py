"""Distributed: training on several processes at once (data parallelism).

**Data parallelism.** Every process (one per GPU, or a few on a CPU) holds a full copy of the
model and draws its own batches. After each backward pass the processes average their
gradients (an *all-reduce*), so every copy makes the same update, as one process would with a
batch as large as all of theirs together. ``torchrun`` starts the processes and tells each its
place through environment variables (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``, ``MASTER_PORT``); ``setup()`` reads them and joins the *process group*, and
``minigpt.train.trainer.Trainer`` then wraps its model in ``DistributedDataParallel`` by itself::

    torchrun --standalone --nproc_per_node=2 -m minigpt train --corpus wiki --out run.pt

    # or in your own script, started by torchrun:
    from minigpt.train import distributed
    distributed.setup()                     # False (and does nothing) without torchrun
    trainer = Trainer(model, get_batch, config)   # DDP inside when a group is up
    trainer.fit()                           # progress bar and checkpoints on rank 0 only
    distributed.teardown()

Splitting one layer across workers (tensor parallelism) is ``minigpt.methods.parallel``.

Left out: pipeline parallelism, sharded optimizer states (ZeRO / FSDP), several machines
(``torchrun --nnodes``), fault tolerance, and overlapping communication by hand. DDP already
overlaps the gradient all-reduce with the backward pass, bucket by bucket.

This module imports nothing else from the package.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "all_reduce_mean", "barrier", "is_distributed", "is_main", "local_rank", "rank", "setup",
    "teardown", "world_size",
]


# ---- the process group ----------------------------------------------------------------------


def is_distributed() -> bool:
    """Whether a process group is up (this process is one of several that talk)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's number, 0 to ``world_size() - 1``; 0 without a process group."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """How many processes train together; 1 without a process group."""
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    """This process's number on its machine (torchrun's ``LOCAL_RANK``): which GPU it uses."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Whether this process prints, shows progress and writes files: rank 0, or the only one."""
    return rank() == 0


def setup(backend: str | None = None) -> bool:
    """Join the process group that torchrun's environment describes, if it describes one.

    With ``WORLD_SIZE`` > 1 (set by torchrun) and no group up yet, start one: backend
    ``"nccl"`` when CUDA is available (each process then uses GPU ``LOCAL_RANK``), else
    ``"gloo"`` (CPU); ``backend`` overrides the choice. Without torchrun it does nothing.
    Calling it again is harmless. Returns whether this process is one of several.
    """
    if is_distributed():
        return world_size() > 1
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed: run with one process, "
                           "without torchrun")
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank())  # so that "cuda" means this process's own GPU
    dist.init_process_group(backend)  # env://: the address, rank and size torchrun exported
    return world_size() > 1


def teardown() -> None:
    """Leave the process group, if one is up (call it at the end, also after an error)."""
    if is_distributed():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every process gets here (nothing to wait for without a process group)."""
    if is_distributed():
        dist.barrier()


def all_reduce_mean(tensor: Tensor) -> Tensor:
    """The mean of ``tensor`` over all processes, as a new tensor (``tensor`` is left as it
    is). Every process must call it, in the same order. Without a process group: ``tensor``."""
    if not is_distributed():
        return tensor
    total = tensor.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)  # (AVG exists for NCCL only)
    return total / world_size()


# ---- tensor parallelism, by hand --------------------------------------------------------------


