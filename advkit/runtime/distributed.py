"""Distributed state, decided once per run from torchrun's environment and passed down."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    """This process's place in the run: its ``rank`` among ``world`` processes (one process: 0 of 1).

    Built by :func:`init_distributed`; ``Dist()`` is the single-process default.
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owner: bool = False  # this call joined the process group, so its shutdown leaves it

    @property
    def enabled(self) -> bool:
        """Whether there is more than one process."""
        return self.world > 1

    @property
    def main(self) -> bool:
        """Whether this is rank 0, the process that writes and logs."""
        return self.rank == 0

    def all_sum(self, values: list[float], device: torch.device) -> list[float]:
        """Sum a few numbers over ranks (float64, so counts stay exact).

        Args:
            values: this rank's numbers.
            device: where the reduction runs (the process group's device: CUDA for nccl).

        Returns:
            The sums, the same on every rank; ``values`` itself with one process.
        """
        if not self.enabled:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()

    def barrier(self) -> None:
        """Wait until every rank gets here (nothing with one process)."""
        if self.enabled:
            dist.barrier()


def init_distributed(device_type: str) -> Dist:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1): nccl on CUDA, gloo on CPU.

    Multi-node: run the same torchrun command on every node with ``--nnodes N --node_rank K
    --rdzv_endpoint HOST:PORT``; nothing here changes. A caller that already joined (e.g. to run several
    trainings in a row: leaving and re-joining races on the rendezvous) keeps the group: the inner
    :func:`shutdown` leaves it alone.

    Args:
        device_type: ``"cuda"`` or ``"cpu"``: picks the backend.

    Returns:
        The process's :class:`Dist`; ``Dist()`` outside torchrun.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    owner = not dist.is_initialized()
    if owner:
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return Dist(rank, world, local, owner)


def is_main_process() -> bool:
    """Whether this process speaks for the run: true outside torchrun and on its rank 0. For code that runs
    before (or without) a :class:`Dist`, such as a CLI deciding who prints."""
    return os.environ.get("RANK", "0") == "0"


def shutdown(d: Dist) -> None:
    """Leave the process group if ``d``'s :func:`init_distributed` call joined it.

    Args:
        d: what :func:`init_distributed` returned.
    """
    if d.owner and dist.is_initialized():
        dist.destroy_process_group()
