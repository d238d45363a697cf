"""GAN losses as pure functions of the discriminator's raw logits (no sigmoid applied by the caller).

``d_real`` and ``d_fake`` are D's logits on real and generated images, shape [B]; each function returns a
scalar that its player *minimizes*. Log-probabilities go through ``logsigmoid``/``softplus``:
``log sigmoid(l) = -softplus(-l)`` and ``log(1 - sigmoid(l)) = -softplus(l)``, so no logit saturates to inf.

==============  ===================================================  ===========================
name            D / critic loss                                      G loss
==============  ===================================================  ===========================
minimax         -E[log D(x)] - E[log(1 - D(G(z)))]                   E[log(1 - D(G(z)))]
nonsaturating   same as minimax                                      -E[log D(G(z))]
wgan            E[d_fake] - E[d_real]                                -E[d_fake]
hinge           E[relu(1 - d_real)] + E[relu(1 + d_fake)]            -E[d_fake]
lsgan           0.5 E[(d_real - 1)^2] + 0.5 E[d_fake^2]              0.5 E[(d_fake - 1)^2]
==============  ===================================================  ===========================

with D(x) = sigmoid(d_real). One-sided label smoothing (Salimans et al. 2016) replaces the real target 1 by
``real_label`` in the BCE losses and the LSGAN real target; generated samples keep target 0.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from advkit.errors import AdvkitError

LOSSES = ("minimax", "nonsaturating", "wgan", "hinge", "lsgan")
_TINY = 1e-12


def _check_name(name: str) -> None:
    if name not in LOSSES:
        raise AdvkitError(f"unknown GAN loss {name!r}; valid: {', '.join(LOSSES)}")


def _bce_real(d_real: torch.Tensor, real_label: float) -> torch.Tensor:
    # BCE with target s: -(s log sigmoid(l) + (1-s) log(1-sigmoid(l))) = s softplus(-l) + (1-s) softplus(l)
    loss = F.softplus(-d_real).mean()
    if real_label != 1.0:
        loss = real_label * loss + (1 - real_label) * F.softplus(d_real).mean()
    return loss


def d_loss(name: str, d_real: torch.Tensor, d_fake: torch.Tensor, *, real_label: float = 1.0) -> torch.Tensor:
    """The discriminator's (critic's) loss for GAN loss ``name`` (one of :data:`LOSSES`), to minimize.

    ``real_label`` in (0, 1] is one-sided label smoothing (e.g. 0.9) for ``minimax``, ``nonsaturating``
    and ``lsgan``; ``wgan`` and ``hinge`` have no labels (their real term is a score or a margin, not a
    target probability), so anything but 1.0 is an error there.

    Args:
        name: the GAN loss.
        d_real: D's raw logits on real images [B].
        d_fake: D's raw logits on fakes [B].
        real_label: the real images' target, in (0, 1].

    Returns:
        The scalar loss (float32).

    Raises:
        AdvkitError: an unknown loss, or label smoothing where it does not apply.
    """
    _check_name(name)
    real_label = float(real_label)
    if not 0.0 < real_label <= 1.0:
        raise AdvkitError(f"real_label must be in (0, 1], got {real_label}")
    if real_label != 1.0 and name in ("wgan", "hinge"):
        raise AdvkitError(f"label smoothing (real_label={real_label}) does not apply to the {name} loss: it "
                          "has no target labels, its real term is a raw score/margin; use real_label=1.0")
    d_real, d_fake = d_real.float(), d_fake.float()
    if name in ("minimax", "nonsaturating"):
        return _bce_real(d_real, real_label) + F.softplus(d_fake).mean()
    if name == "wgan":
        return d_fake.mean() - d_real.mean()
    if name == "hinge":
        return F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
    return 0.5 * (d_real - real_label).pow(2).mean() + 0.5 * d_fake.pow(2).mean()  # lsgan


def g_loss(name: str, d_fake: torch.Tensor) -> torch.Tensor:
    """The generator's loss for GAN loss ``name`` (one of :data:`LOSSES`), to minimize.

    ``minimax`` is the original saturating objective ``E[log(1 - D(G(z)))] = -E[softplus(d_fake)]``: its
    gradient ``-sigmoid(d_fake)`` vanishes when D confidently rejects the fakes (early training), which is
    why ``nonsaturating`` (``-E[log D(G(z))] = E[softplus(-d_fake)]``) exists.

    Args:
        name: the GAN loss.
        d_fake: D's raw logits on fakes [B].

    Returns:
        The scalar loss (float32).

    Raises:
        AdvkitError: an unknown loss.
    """
    _check_name(name)
    d_fake = d_fake.float()
    if name == "minimax":
        return -F.softplus(d_fake).mean()
    if name == "nonsaturating":
        return F.softplus(-d_fake).mean()
    if name in ("wgan", "hinge"):
        return -d_fake.mean()
    return 0.5 * (d_fake - 1).pow(2).mean()  # lsgan


def gradient_penalty(d: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor, *,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP penalty (Gulrajani et al. 2017): ``E[(||grad_x d(x_hat)||_2 - 1)^2]`` at random interpolates.

    ``x_hat = t * real + (1 - t) * fake`` with one ``t ~ U[0, 1]`` per sample (drawn with ``generator``, on
    its device). The graph is kept (``create_graph=True``) so the penalty trains ``d``; multiply by lambda
    (10 in the paper) and add it to the critic loss. Use a critic without BatchNorm
    (``DCGANDiscriminator(critic=True)``): BatchNorm couples the samples and breaks the per-sample gradient.

    Args:
        d: the critic, images -> one raw score per image.
        real: real images [B, C, H, W] in [0,1].
        fake: fakes of the same shape (detached here).
        generator: the random stream for ``t``; ``None``: torch's global one.

    Returns:
        The scalar penalty, differentiable with respect to ``d``'s parameters.

    Raises:
        AdvkitError: ``real`` and ``fake`` differ in shape.
    """
    if real.shape != fake.shape:
        raise AdvkitError(f"real and fake batches differ in shape: {list(real.shape)} vs {list(fake.shape)}")
    real, fake = real.detach().float(), fake.detach().float()
    draw_on = generator.device if generator is not None else real.device
    t = torch.rand(real.shape[0], generator=generator, device=draw_on).to(real.device)
    t = t.view(-1, *[1] * (real.ndim - 1))
    x_hat = (t * real + (1 - t) * fake).requires_grad_(True)
    out = d(x_hat)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    norm = (grad.flatten(1).pow(2).sum(1) + _TINY).sqrt()  # the epsilon keeps sqrt differentiable at 0
    return (norm - 1).pow(2).mean()


def value(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """The GAN value ``V(G, D) = E[log D(x)] + E[log(1 - D(G(z)))]`` from logits (used by the duality gap).

    It is ``-d_loss("minimax", ...)``; the optimal D gives ``-log 4`` at ``p_g = p_data``.

    Args:
        d_real: D's raw logits on real images [B].
        d_fake: D's raw logits on fakes [B].

    Returns:
        The scalar value (float32).
    """
    return F.logsigmoid(d_real.float()).mean() + F.logsigmoid(-d_fake.float()).mean()
