"""The wrapper that gives every model the advkit contract: ``f(x in [0,1]) -> logits``."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class Normalized(nn.Module):
    """Takes images in [0,1], applies per-channel ``(x - mean) / std``, calls ``net``, returns logits.

    Normalization lives here, never in the data or the attack, so attacks work in pixel units.
    ``spec`` records how the model was built (architecture name and factory arguments); checkpoints
    store it so :func:`advkit.models.load` can rebuild the model from metadata alone.

    Args:
        net: the network; takes normalized images, returns logits ``[N, K]``.
        mean: per-channel mean, in [0,1] pixel units; ``None`` with ``std`` ``None``: no normalization.
        std: per-channel standard deviation, in [0,1] pixel units.
        spec: how the model was built, stored in checkpoints.
    """

    # buffers, declared for the type checker (torch types unknown module attributes as Tensor | Module)
    mean: torch.Tensor
    std: torch.Tensor
    meta: dict  # only on a model from advkit.models.load: the checkpoint's metadata

    def __init__(self, net: nn.Module, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 spec: dict | None = None):
        super().__init__()
        self.net = net
        self.spec = dict(spec or {})
        c = len(mean) if mean is not None else 1
        self.register_buffer("mean", torch.tensor(list(mean) if mean is not None else [0.0] * c)
                             .view(1, c, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std) if std is not None else [1.0] * c)
                             .view(1, c, 1, 1), persistent=False)
        self._identity = mean is None and std is None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._identity:
            x = (x - self.mean) / self.std
        return self.net(x)

    @property
    def normalization(self) -> dict | None:
        if self._identity:
            return None
        return {"mean": self.mean.flatten().tolist(), "std": self.std.flatten().tolist()}
