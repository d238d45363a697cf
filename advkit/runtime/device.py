"""The device, seeds and cache folder of a run: decided once, near the top, and passed down."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from advkit.errors import AdvkitError


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without it is a user error, not a crash."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise AdvkitError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AdvkitError(f"device {device!r} asked for, but CUDA is not available on this machine")
    return dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def cache_dir() -> Path:
    """Where advkit keeps things it can rebuild (the default model): ``ADVKIT_CACHE``, else the user's
    cache folder."""
    env = os.environ.get("ADVKIT_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "advkit"
