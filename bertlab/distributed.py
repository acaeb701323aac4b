"""Several processes, one model: data-parallel training with ``torch.distributed``, under ``torchrun``.

The same ``train(...)`` call runs in one process and in several::

    python scripts/pretrain.py --out runs/a                                        # one process
    torchrun --standalone --nproc_per_node=2 scripts/pretrain.py --out runs/a      # two, one machine
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 --rdzv_backend=c10d \\
             --rdzv_endpoint=host0:29500 --rdzv_id=run-a scripts/pretrain.py --out /shared/runs/a
    # ... and the same line with --node_rank=1 on the second machine

``torchrun`` starts the processes and tells each its place (``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``); :func:`process_group` reads them and joins the
group (gloo on the CPU, NCCL for CUDA tensors). Without ``WORLD_SIZE`` (or with 1) nothing here
runs: ``train`` takes exactly its one-process path. Across machines, ``torchrun``'s rendezvous
flags do the work; the checkpoint folder must be on a disk every machine sees.

Why plain ``torch.distributed`` and ``DistributedDataParallel`` rather than Accelerate: the
course writes the training step out by hand (accumulation, clipping, the gradient scaler, exact
resume), and DDP adds three things to it that a learner can read here: each rank takes its shard
of the global batch, gradients are averaged during ``backward`` (skipped with ``no_sync`` while
accumulating), and figures are summed over the ranks. Accelerate would wrap the optimizer, the
scheduler and the data loader, and hide exactly those steps; ``torchrun`` is the launcher either
way.

How ``train`` uses it (:class:`World`):

* ``batch_size`` is the *global* batch: every rank computes the same global batches of an epoch
  (:func:`bertlab.batching.epoch_batches`) and takes its contiguous slice of each, so two ranks
  of batch B see what one process of batch 2B sees. A global batch not divisible by the world
  size is refused (ValueError); the last, shorter batch of an epoch is split as evenly as it goes.
* The loss each rank back-propagates is weighted so that DDP's average of gradients is the
  gradient of the global batch's mean loss, even when shards hold different numbers of masked
  tokens (:mod:`bertlab.accumulation`, with the counts summed over the ranks).
* Rank 0 alone writes checkpoints, history files, TensorBoard logs and progress bars; every
  rank's random state goes into the checkpoint, so a resumed run continues exactly.
* Evaluation batches are split over the ranks and the figures merged (:meth:`World.merge`).

A rank that fails ends its process; ``torchrun`` then stops the others and reports the failed
rank's error. Every collective also gives up after ``BERTLAB_DIST_TIMEOUT`` seconds (default
600), so nothing waits forever for a rank that died.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

__all__ = ["World", "is_main", "launched", "process_group", "rank", "world_size"]

TIMEOUT_VARIABLE = "BERTLAB_DIST_TIMEOUT"


def world_size() -> int:
    """How many processes train together (1 without ``torchrun``)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's place among them (0 without ``torchrun``)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return int(os.environ.get("RANK", "0"))


def launched() -> bool:
    """True when ``torchrun`` (or the same variables) started several processes."""
    return world_size() > 1


def is_main() -> bool:
    """True in the process that writes files and prints: rank 0, or the only one."""
    return rank() == 0


@contextlib.contextmanager
def process_group() -> Iterator[bool]:
    """Join the process group for the block when launched by ``torchrun``; yield whether it is on.

    Owned by whoever opens it first: a group that is already initialised (by a script, or an
    outer ``process_group``) is used and left alone; one opened here is destroyed at the end of
    the block. In one process this does nothing at all.
    """
    if not launched() or torch.distributed.is_initialized():
        yield launched()
        return
    timeout = datetime.timedelta(seconds=float(os.environ.get(TIMEOUT_VARIABLE, "600")))
    # gloo carries CPU tensors; NCCL CUDA ones. Asking torch whether CUDA is there does not
    # initialise it, so a machine without a GPU is never probed further.
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    torch.distributed.init_process_group(backend=backend, timeout=timeout)
    try:
        yield True
    finally:
        torch.distributed.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (nothing to wait for in one process)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


class World:
    """The ranks of one ``train`` call: their data shards, gradients and figures."""

    def __init__(self, device: torch.device):
        self.rank, self.size = rank(), world_size()
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = (torch.device("cuda", self.local_rank) if device.type == "cuda"
                       else device)

    # ------------------------------------------------------------------ data

    def check_batch_size(self, batch_size: int, name: str = "batch_size") -> None:
        if batch_size % self.size:
            raise ValueError(
                f"{name}={batch_size} is the global batch, shared by {self.size} processes, and "
                f"{self.size} does not divide it; choose a multiple of {self.size} (e.g. "
                f"{batch_size - batch_size % self.size or self.size}) or another --nproc_per_node")

    def shard(self, batches: list[list[int]]) -> list[list[int]]:
        """This rank's contiguous slice of every global batch (the first ranks take one more
        example when it does not divide evenly). A global batch smaller than the world size
        would leave a rank with nothing to do, so it is dropped (at most one, the last)."""
        return [np.array_split(np.asarray(batch), self.size)[self.rank].tolist()
                for batch in batches if len(batch) >= self.size]

    def seed(self, seed: int) -> int:
        """Rank 0 keeps ``seed`` (as one process would); the others draw their own dropout and
        masks from a seed derived from (seed, rank), so no two ranks repeat each other."""
        if self.rank == 0:
            return seed
        return int(np.random.SeedSequence([seed, self.rank]).generate_state(1)[0])

    # ------------------------------------------------------------------ gradients

    def wrap(self, model: nn.Module) -> nn.Module:
        """The model under DDP, which averages gradients over the ranks during ``backward``."""
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)

    @staticmethod
    def syncing(ddp: nn.Module, last: bool):
        """Average gradients only on the last batch of an accumulated step (``no_sync`` before)."""
        return contextlib.nullcontext() if last else ddp.no_sync()

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` summed over the ranks (a tensor on this rank's device)."""
        values = values.clone()
        torch.distributed.all_reduce(values)
        return values

    # ------------------------------------------------------------------ figures and files

    def gather(self, value) -> list:
        """Every rank's ``value`` (any picklable object), in rank order."""
        values = [None] * self.size
        torch.distributed.all_gather_object(values, value)
        return values

    def merge(self, accumulator):
        """One evaluation accumulator holding what every rank's accumulated: numbers summed,
        lists joined (``bertlab.metrics`` accumulators are made of those)."""
        parts = [part for part in self.gather(accumulator) if part is not None]
        if not parts:
            return accumulator
        merged = parts[0]
        for part in parts[1:]:
            for name, value in vars(part).items():
                mine = getattr(merged, name)
                if isinstance(value, list):
                    setattr(merged, name, mine + value)
                elif isinstance(value, int | float):
                    setattr(merged, name, mine + value)
                else:
                    raise TypeError(
                        f"cannot merge {type(part).__name__}.{name} ({type(value).__name__}) "
                        "across processes: an evaluation accumulator for several processes "
                        "holds numbers and lists only")
        return merged

    def barrier(self) -> None:
        torch.distributed.barrier()
