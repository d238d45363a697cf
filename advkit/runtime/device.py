"""The device, seeds and cache folder of a run: decided once, near the top, and passed down."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from advkit.errors import AdvkitError


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The device a run uses.

    Args:
        device: ``"auto"`` or ``None`` (CUDA when present, else the CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``
            or a ``torch.device``.

    Returns:
        The device.

    Raises:
        AdvkitError: an unknown device name, or CUDA asked for on a machine without it.
    """
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
    """Seed Python's, NumPy's and torch's global random streams.

    Args:
        seed: any integer (NumPy gets it modulo 2**32).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def cache_dir() -> Path:
    """Where advkit keeps things it can rebuild, such as the default model.

    Returns:
        ``$ADVKIT_CACHE`` when set, else ``advkit`` in the user's cache folder (``$XDG_CACHE_HOME`` or
        ``~/.cache``); the folder may not exist yet.
    """
    env = os.environ.get("ADVKIT_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "advkit"
