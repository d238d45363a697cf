"""Hygiene shared by every attack: eval mode and parameter state restored, inputs validated, labels
checked against the model's output, the norm helpers. Attacks never touch parameter ``.grad``."""

from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from advkit.errors import AdvkitError

NORMS = ("linf", "l2")
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@contextlib.contextmanager
def attack_mode(model: nn.Module) -> Iterator[None]:
    """Run the attack with the model in eval mode and its parameters frozen, then restore both exactly.

    Gradients are enabled inside, so an attack called under ``torch.no_grad()`` still works. Freezing keeps
    any ``.backward()`` (foolbox's) from writing parameter ``.grad`` and lets autograd skip weight gradients;
    restoring each module's own flag keeps mixed train/eval models as they were.
    """
    modes = [(m, m.training) for m in model.modules()]
    frozen = [p for p in model.parameters() if p.requires_grad]
    model.eval()
    for p in frozen:
        p.requires_grad_(False)
    try:
        with torch.enable_grad():  # attacks need input gradients even when called under no_grad
            yield
    finally:
        for p in frozen:
            p.requires_grad_(True)
        for m, training in modes:
            m.training = training


def check_eps(eps: float, norm: str = "linf") -> float:
    """``eps`` as a float, checked: finite, >= 0, and at most 1 for L-inf (pixel units on images in [0,1]).

    Raises:
        AdvkitError: an unknown norm, or an eps that is not a usable radius.
    """
    if norm not in NORMS:
        raise AdvkitError(f"unknown norm {norm!r}; valid: {', '.join(NORMS)}")
    try:
        eps = float(eps)
    except (TypeError, ValueError):
        raise AdvkitError(f"eps must be a number, got {eps!r}") from None
    if not math.isfinite(eps) or eps < 0:
        raise AdvkitError(f"eps must be finite and >= 0, got {eps}")
    if norm == "linf" and eps > 1:
        raise AdvkitError(f"eps {eps} > 1 is meaningless for L-inf on images in [0,1] (use pixel units, "
                          f"e.g. 8/255)")
    return eps


def check_inputs(x: torch.Tensor, y: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        raise AdvkitError(f"x must be a batch tensor [B, ...], got {getattr(x, 'shape', type(x))}")
    if not x.is_floating_point():
        raise AdvkitError(f"x must be a float tensor in [0,1], got {x.dtype}")
    if y.shape != (x.shape[0],) or y.dtype not in (torch.int64, torch.int32):
        raise AdvkitError(f"y must be integer labels of shape ({x.shape[0]},), got {y.dtype} {tuple(y.shape)}")
    if not torch.isfinite(x).all():
        raise AdvkitError("x contains NaN or infinite values")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise AdvkitError(f"x must be in [0,1] (got [{x.min().item():.3g}, {x.max().item():.3g}]); "
                          f"normalization belongs inside the model")


def check_labels(logits: torch.Tensor, y: torch.Tensor) -> None:
    k = logits.shape[-1]
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= k):
        raise AdvkitError(f"labels must be in [0, {k - 1}] for a model with {k} outputs, got "
                          f"[{int(y.min())}, {int(y.max())}]")


def default_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy, in fp32 even when the forward ran under autocast."""
    return F.cross_entropy(logits.float(), y, reduction="none")


def per_sample_norm(d: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample size of a perturbation ``d`` in ``linf``, ``l2``, ``l1`` or ``l0`` (count of changed values)."""
    flat = d.flatten(1).float()
    if norm == "linf":
        return flat.abs().amax(1)
    if norm == "l2":
        return flat.norm(p=2, dim=1)
    if norm == "l1":
        return flat.abs().sum(1)
    if norm == "l0":
        return (flat != 0).sum(1).float()
    raise AdvkitError(f"unknown norm {norm!r}")
