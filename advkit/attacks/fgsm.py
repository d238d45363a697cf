"""FGSM (Goodfellow, Shlens, Szegedy 2015): one signed-gradient step of size eps."""

from __future__ import annotations

import torch
from torch import nn

from advkit.attacks.base import register_attack
from advkit.attacks.common import LossFn, attack_mode, check_eps, check_inputs, check_labels, default_loss


@register_attack("fgsm", norms=("linf",), label=lambda params: "FGSM")
def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, targeted: bool = False,
         loss: LossFn | None = None) -> torch.Tensor:
    """``x_adv = clip(x + eps * sign(grad_x loss), 0, 1)``; ``x`` in [0,1], ``eps`` in pixel units (L-inf).

    Targeted: ``y`` are the target classes and the step goes down the loss. Returns a new tensor of
    ``x``'s shape and dtype; ``x`` and the model's parameters and mode are left as they were.
    """
    eps = check_eps(eps, "linf")
    check_inputs(x, y)
    loss_fn = loss or default_loss
    x0 = x.detach().float()
    with attack_mode(model):
        xr = x0.clone().requires_grad_(True)
        logits = model(xr)
        check_labels(logits, y)
        (g,) = torch.autograd.grad(loss_fn(logits, y).sum(), xr)
        step = -eps if targeted else eps
        x_adv = (x0 + step * g.sign()).clamp_(0, 1)
    return x_adv.to(x.dtype)
