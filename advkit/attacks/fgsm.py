"""FGSM (Goodfellow, Shlens, Szegedy 2015): one signed-gradient step of size eps."""

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
    to_caller_dtype,
    usable,
)


@register_attack("fgsm", norms=("linf",), label=lambda params: "FGSM")
def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, targeted: bool = False,
         loss: LossFn | None = None) -> torch.Tensor:
    """``x_adv = clip(x + eps * sign(grad_x loss), 0, 1)``: one signed-gradient step (L-inf).

    ``x`` and the model's parameters and mode are left as they were.

    Args:
        model: a classifier ``f(x in [0,1]) -> logits [B, K]``.
        x: images [B, ...] in [0,1], any float dtype.
        y: labels [B] (targeted: the target classes).
        eps: the step, in pixel units (L-inf), in [0, 1].
        targeted: step down the loss, towards the classes ``y``, instead of up it.
        loss: per-sample loss ``loss(logits, y) -> [B]``; default cross-entropy.

    Returns:
        A new tensor of ``x``'s shape and dtype (fp16/bf16 results rounded towards ``x``, so the bound holds in
        that dtype).

    Raises:
        AdvkitError: an unusable eps, inputs outside [0,1] or of the wrong shape, or labels the model cannot
            output.
    """
    eps = check_eps(eps, "linf")
    check_inputs(x, y)
    loss_fn = loss or default_loss
    with attack_mode(model):
        x0, y = as_fp32(x), usable(y)
        xr = x0.clone().requires_grad_(True)
        logits = model(xr)
        check_labels(logits, y)
        (g,) = torch.autograd.grad(loss_fn(logits, y).sum(), xr)
        step = -eps if targeted else eps
        x_adv = (x0 + step * g.sign()).clamp_(0, 1)
    return to_caller_dtype(x_adv, x)
