"""PGD (Madry et al. 2018): iterated gradient steps projected onto the eps-ball and the [0,1] box,
with random start and restarts; L-inf (signed steps) or L2 (normalized steps)."""

from __future__ import annotations

import torch
from torch import nn

from advkit.attacks.base import register_attack
from advkit.attacks.common import (
    LossFn,
    as_fp32,
    attack_mode,
    check_eps,
    check_inputs,
    check_labels,
    default_loss,
    per_sample_norm,
    random_point,
    to_caller_dtype,
    usable,
)
from advkit.errors import AdvkitError

_TINY = 1e-12


def _l2_project(delta: torch.Tensor, eps: float) -> torch.Tensor:
    n = per_sample_norm(delta, "l2").clamp_min(_TINY).view(-1, *[1] * (delta.ndim - 1))
    return delta * (eps / n).clamp(max=1.0)


def _label(params: dict) -> str:
    steps, restarts = params.get("steps", 10), params.get("restarts", 1)
    return f"PGD-{steps}" + (f"x{restarts}" if restarts > 1 else "")


@register_attack("pgd", norms=("linf", "l2"), label=_label)
def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, alpha: float | None = None,
        steps: int = 10, norm: str = "linf", random_start: bool = True, restarts: int = 1,
        targeted: bool = False, loss: LossFn | None = None,
        generator: torch.Generator | None = None, box_start: bool = True) -> torch.Tensor:
    """Projected gradient descent on the loss, in pixel space.

    ``x`` and ``delta`` stay fp32; only the model's forward runs under a caller's autocast. ``x`` and the
    model's parameters and mode are left as they were.

    Args:
        model: a classifier ``f(x in [0,1]) -> logits [B, K]``.
        x: inputs [B, ...] in [0,1], any float dtype.
        y: labels [B] (targeted: the target classes).
        eps: the radius, in pixel units of ``norm``.
        alpha: the step size; default ``2.5 * eps / steps``.
        steps: gradient steps per restart, >= 1.
        norm: ``linf`` (signed steps) or ``l2`` (normalized steps).
        random_start: start from a random point of the eps-ball (L2: a random direction at a radius uniform
            in [0, eps]) instead of ``x``.
        restarts: runs from fresh random starts, >= 1; each sample keeps its strongest result: a fooling one
            first, then the highest loss.
        targeted: descend the loss towards the classes ``y`` instead of ascending it.
        loss: per-sample loss ``loss(logits, y) -> [B]``; default cross-entropy.
        generator: seeds the random start.
        box_start: clip the random start to [0,1] before the first gradient. ``False`` takes the first
            gradient at the unclipped start, as the fast adversarial training reference code does (fast
            adversarial training can collapse without it); every returned point is still inside the box and
            the eps-ball.

    Returns:
        The adversarial batch, of ``x``'s shape and dtype (fp16/bf16 results rounded towards ``x``, so the
        bound holds in that dtype too).

    Raises:
        AdvkitError: an unusable eps, ``steps``, ``restarts`` or ``alpha``, inputs outside [0,1] or of the
            wrong shape, or labels the model cannot output.
    """
    eps = check_eps(eps, norm)
    check_inputs(x, y)
    if steps < 1 or restarts < 1:
        raise AdvkitError(f"steps and restarts must be >= 1, got steps={steps}, restarts={restarts}")
    alpha = 2.5 * eps / steps if alpha is None else float(alpha)
    if not 0 <= alpha < float("inf"):
        raise AdvkitError(f"alpha must be finite and >= 0, got {alpha}")
    loss_fn = loss or default_loss
    sign = -1.0 if targeted else 1.0
    best: torch.Tensor | None = None
    best_score: torch.Tensor | None = None
    labels_checked = False
    with attack_mode(model):
        x0, y = as_fp32(x), usable(y)
        if norm == "linf":  # the intersection of the eps-ball and the box, once
            lo, hi = (x0 - eps).clamp_(min=0), (x0 + eps).clamp_(max=1)
        for _ in range(restarts):
            if random_start and eps > 0:
                x_adv = random_point(x0, eps, norm, generator)
                if box_start:
                    x_adv = torch.clamp(x_adv, lo, hi) if norm == "linf" else x_adv.clamp_(0, 1)
            else:
                x_adv = x0.clone()
            for _ in range(steps):
                x_adv.requires_grad_(True)
                logits = model(x_adv)
                if not labels_checked:
                    check_labels(logits, y)
                    labels_checked = True
                (g,) = torch.autograd.grad(loss_fn(logits, y).sum(), x_adv)
                with torch.no_grad():
                    if norm == "linf":  # the ball-and-box projection, one clamp
                        x_adv = torch.clamp(x_adv + (sign * alpha) * g.sign(), lo, hi)
                    else:
                        gn = per_sample_norm(g, "l2").clamp_min(_TINY).view(-1, *[1] * (g.ndim - 1))
                        delta = _l2_project(x_adv + (sign * alpha) * g / gn - x0, eps)
                        x_adv = (x0 + delta).clamp_(0, 1)
            x_adv = x_adv.detach()
            if restarts == 1:
                best = x_adv
                break
            with torch.no_grad():
                logits = model(x_adv)
                fooled = (logits.argmax(1) == y) if targeted else (logits.argmax(1) != y)
                # fooling beats not fooling; among equals, the higher (targeted: lower) loss wins
                loss_val = loss_fn(logits, y).float()
                score = fooled.float() * 1e6 + (sign * loss_val).clamp(-1e5, 1e5)
                # a NaN loss (the model broke at that point) ranks below everything and never wins
                score = score.masked_fill(torch.isnan(loss_val), float("-inf"))
            if best is None or best_score is None:
                best, best_score = x_adv, score
            else:
                take = score > best_score
                best = torch.where(take.view(-1, *[1] * (x0.ndim - 1)), x_adv, best)
                best_score = torch.where(take, score, best_score)
    if best is None:  # cannot happen: restarts >= 1 was checked above
        raise AdvkitError("pgd ran no restart")
    return to_caller_dtype(best, x)
