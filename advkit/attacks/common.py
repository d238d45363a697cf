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
# every norm an eps can be measured in: advkit's own attacks use NORMS, foolbox's also measure in l1 and l0
DISTANCES = (*NORMS, "l1", "l0")
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


_INFERENCE_MODEL = ("the model holds tensors created under torch.inference_mode(), which autograd cannot "
                    "differentiate through: build or load the model outside inference mode before attacking it")


@contextlib.contextmanager
def attack_mode(model: nn.Module) -> Iterator[None]:
    """Run the attack with the model in eval mode and its parameters frozen, then restore both exactly.

    A context manager. Gradients are enabled inside, so an attack called under ``torch.no_grad()`` or
    ``torch.inference_mode()`` still works (its inputs must then come through :func:`as_fp32` and
    :func:`usable`, which copy them out of inference mode).
    Freezing keeps any ``.backward()`` (foolbox's) from writing parameter ``.grad`` and lets autograd skip
    weight gradients; restoring each module's own flag keeps mixed train/eval models as they were.

    Args:
        model: the model under attack.

    Yields:
        Nothing; the body runs with the model in attack mode.

    Raises:
        AdvkitError: the model's own tensors were created under ``torch.inference_mode()``, so autograd
            cannot differentiate through them.
    """
    if any(p.is_inference() for p in model.parameters()):
        raise AdvkitError(_INFERENCE_MODEL)
    modes = [(m, m.training) for m in model.modules()]
    frozen = [p for p in model.parameters() if p.requires_grad]
    model.eval()
    for p in frozen:
        p.requires_grad_(False)
    try:
        # attacks need input gradients even when called under no_grad or inference_mode
        with torch.inference_mode(False), torch.enable_grad():
            yield
    except RuntimeError as e:
        if "Inference tensors cannot be saved for backward" not in str(e):
            raise
        raise AdvkitError(_INFERENCE_MODEL) from None
    finally:
        for p in frozen:
            p.requires_grad_(True)
        for m, training in modes:
            m.training = training


def check_eps(eps: float, norm: str = "linf", *, norms: tuple[str, ...] = NORMS) -> float:
    """``eps`` as a float, checked: finite, >= 0, and at most 1 for L-inf (pixel units on images in [0,1]).

    The one check every attack runs, native or foolbox's (those pass ``norms=DISTANCES``).

    Args:
        eps: the radius, in pixel units of ``norm``.
        norm: the norm ``eps`` is measured in.
        norms: the norms the caller accepts.

    Returns:
        ``eps`` as a float.

    Raises:
        AdvkitError: a norm not in ``norms``, or an eps that is not a usable radius.
    """
    if norm not in norms:
        raise AdvkitError(f"unknown norm {norm!r}; valid: {', '.join(norms)}")
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


def usable(t: torch.Tensor) -> torch.Tensor:
    """``t`` detached, as an ordinary tensor autograd can save. Attacks pass their labels through it.

    Args:
        t: any tensor; one created under ``torch.inference_mode()`` is copied out of it (``t`` itself is never
            changed).

    Returns:
        ``t`` detached, or its copy.
    """
    with torch.inference_mode(False):
        t = t.detach()
        return t.clone() if t.is_inference() else t


def as_fp32(x: torch.Tensor) -> torch.Tensor:
    """``x`` detached, in fp32, as an ordinary tensor autograd can use (see :func:`usable`).

    Args:
        x: the caller's inputs.

    Returns:
        An fp32 tensor that is never ``x`` itself when ``x`` is not fp32.
    """
    with torch.inference_mode(False):
        return usable(x.detach().float())


def to_caller_dtype(x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The fp32 result ``x_adv`` in the dtype of the caller's ``x``, each value rounded towards ``x``.

    A plain cast rounds to nearest, which can move a value away from ``x`` and break the eps bound. Rounding
    towards ``x`` never makes a coordinate of the perturbation larger, so
    every norm bound that held in fp32 still holds, measured exactly (``x_adv.float() - x.float()``), and so
    does the box [0,1] (0 and 1 are representable).

    Args:
        x_adv: the attack's fp32 result.
        x: the caller's inputs; their dtype is the one returned.

    Returns:
        ``x_adv`` in ``x``'s dtype (fp32 inputs: as it is).
    """
    if torch.finfo(x.dtype).bits >= 32:  # fp32 as it is; fp64 holds every fp32 value exactly
        return x_adv.to(x.dtype)
    near = x_adv.to(x.dtype)
    xc = x.detach()
    over = (near.float() - xc.float()).abs() > (x_adv - xc.float()).abs()
    # one step towards x undoes the cast's rounding: x is representable, so no value passes it
    return torch.where(over, torch.nextafter(near, xc), near)


def check_inputs(x: torch.Tensor, y: torch.Tensor) -> None:
    """Check an attack's inputs before it starts.

    Args:
        x: images [B, ...], float, finite, in [0,1].
        y: integer labels [B].

    Raises:
        AdvkitError: ``x`` or ``y`` breaks one of those rules (the message says which).
    """
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
    """Check that the labels are classes the model can output.

    Args:
        logits: the model's output [B, K].
        y: labels [B].

    Raises:
        AdvkitError: a label outside [0, K-1].
    """
    k = logits.shape[-1]
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= k):
        raise AdvkitError(f"labels must be in [0, {k - 1}] for a model with {k} outputs, got "
                          f"[{int(y.min())}, {int(y.max())}]")


def default_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy, in fp32 even when the forward ran under autocast.

    Args:
        logits: the model's output [B, K].
        y: labels [B].

    Returns:
        The loss of each sample [B], fp32.
    """
    return F.cross_entropy(logits.float(), y, reduction="none")


def per_sample_norm(d: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample size of a perturbation.

    Args:
        d: perturbations [B, ...].
        norm: ``linf``, ``l2``, ``l1`` or ``l0`` (the count of changed values).

    Returns:
        The norm of each sample's perturbation [B], fp32.

    Raises:
        AdvkitError: an unknown norm.
    """
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


_TINY = 1e-12


def random_point(x0: torch.Tensor, eps: float, norm: str, gen: torch.Generator | None) -> torch.Tensor:
    """A random point around ``x0`` for PGD-style attacks; not clipped to the box (callers clip).

    Args:
        x0: the clean inputs ``[B, ...]``.
        eps: the radius, pixel units of ``norm``.
        norm: ``linf`` (uniform in the cube) or ``l2``.
        gen: seeds the draw.

    Returns:
        ``x0`` plus the random offset, ``x0``'s shape and dtype.
    """
    if norm == "linf":
        u = torch.rand(x0.shape, generator=gen, device=x0.device, dtype=x0.dtype)
        return x0 + (2 * u - 1) * eps
    # a uniformly random direction at a radius drawn uniformly from [0, eps] (torchattacks' PGDL2 rule).
    # Not uniform in the ball: in d dimensions that puts nearly every start on the sphere (radius
    # eps * U^(1/d)), far from the data, which makes a weaker attack.
    g = torch.randn(x0.shape, generator=gen, device=x0.device, dtype=x0.dtype)
    g = g / per_sample_norm(g, "l2").clamp_min(_TINY).view(-1, *[1] * (x0.ndim - 1))
    r = torch.rand(x0.shape[0], generator=gen, device=x0.device, dtype=x0.dtype) * eps
    return x0 + g * r.view(-1, *[1] * (x0.ndim - 1))
