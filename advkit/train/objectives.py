"""Training objectives: ``objective(model, x, y) -> (loss, logits)``. Adversarial ones plug in here."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from advkit.registry import Registry

Objective = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
_OBJECTIVES: Registry[Callable[..., Objective]] = Registry("objective")


def register_objective(name: str):
    """Register a factory ``(**params) -> objective``."""
    return _OBJECTIVES.register(name)


def list_objectives() -> list[str]:
    return _OBJECTIVES.names()


def get_objective(name: str, **params) -> Objective:
    return _OBJECTIVES.get(name)(**params)


@register_objective("clean")
def clean() -> Objective:
    def objective(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        logits = model(x)
        return F.cross_entropy(logits, y), logits
    return objective
