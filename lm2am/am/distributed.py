"""Process placement of AM training: DDP under ``torchrun`` (gloo on CPU, nccl on CUDA), the
device of each rank, and the seeding of every RNG."""
from __future__ import annotations

import dataclasses
import os
import random

import numpy as np
import torch

from lm2am.errors import Lm2amError


@dataclasses.dataclass
class Dist:
    """Process placement: ``world_size`` 1 without torchrun."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            torch.distributed.barrier()


def setup_distributed(device: str) -> Dist:
    """Initialize ``torch.distributed`` when ``WORLD_SIZE`` > 1 (torchrun's environment)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    here = False
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend=backend, world_size=world, rank=rank)
        here = True
    return Dist(world, rank, local, here)


def resolve_device(device: str, d: Dist) -> torch.device:
    """``cuda`` -> this rank's GPU (``cuda:<local_rank>``); checks that CUDA exists."""
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise Lm2amError(f"--device {device}: CUDA is not available here; use --device cpu")
        dev = torch.device(f"cuda:{d.local_rank}") if d.world_size > 1 or device == "cuda" else torch.device(device)
        torch.cuda.set_device(dev)
        return dev
    if device != "cpu":
        raise Lm2amError(f"--device {device}: use cpu, cuda or cuda:N")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed torch, CUDA, Python and numpy RNGs."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
