"""The duality gap of a GAN (Grnarova et al., "A domain agnostic measure for monitoring and evaluating
GANs", NeurIPS 2019): ``DG(G, D) = max_D' V(G, D') - min_G' V(G', D)``.

``V`` is the minimax value ``E[log D(x)] + E[log(1 - D(G(z)))]`` (:func:`advkit.gan.value`). The gap is
zero exactly at an equilibrium and positive elsewhere; in practice both optimizations are approximated by
``k`` Adam steps started from copies of the current players (as in the paper), on held-out real images.
"""

from __future__ import annotations

import copy
import math
from typing import cast

import torch
from torch import nn

from advkit.errors import AdvkitError
from advkit.gan import losses


def _frozen_copy(net: nn.Module, trainable: bool) -> nn.Module:
    c = copy.deepcopy(net).train()
    for p in c.parameters():
        p.requires_grad_(trainable)
        p.grad = None
    return c


def _randn(n: int, z_dim: int, gen: torch.Generator | None, device: torch.device) -> torch.Tensor:
    draw_on = gen.device if gen is not None else device
    return torch.randn(n, z_dim, generator=gen, device=draw_on).to(device)


def _pick(n: int, b: int, gen: torch.Generator | None) -> torch.Tensor:
    draw_on = gen.device if gen is not None else torch.device("cpu")
    return torch.randint(0, n, (b,), generator=gen, device=draw_on).cpu()


@torch.no_grad()
def _value(g: nn.Module, d: nn.Module, real: torch.Tensor, z: torch.Tensor, batch_size: int) -> float:
    """``V(g, d)`` over all of ``real`` and ``z`` (same length), chunk means weighted by chunk size."""
    total = 0.0
    for s in range(0, len(real), batch_size):
        r, zz = real[s:s + batch_size], z[s:s + batch_size]
        total += losses.value(d(r), d(g(zz))).item() * len(r)
    return total / len(real)


def duality_gap(G: nn.Module, D: nn.Module, real_heldout: torch.Tensor, *, k: int = 20, lr: float = 2e-4,
                batch_size: int = 64, generator: torch.Generator | None = None,
                betas: tuple[float, float] = (0.5, 0.999)) -> dict[str, float]:
    """Estimate the duality gap of ``(G, D)``; ``G`` and ``D`` themselves are never modified.

    The worst-case
    discriminator ``D'`` (a copy of ``D``) takes ``k`` Adam steps (``lr``, ``betas``) maximizing
    ``V(G, D')``; the worst-case generator ``G'`` (a copy of ``G``) takes ``k`` steps minimizing
    ``V(G', D)``; each step uses ``batch_size`` held-out images (drawn with replacement) and fresh z. The
    values are then computed over all the held-out images with one fixed set of z (drawn once, from
    ``generator``) shared by every term. Since the starting players are candidates of the max and the min,
    ``v_worst_d = max(V(G, D'), V(G, D))`` and ``v_worst_g = min(V(G', D), V(G, D))``, so the estimate is
    never negative. All networks run in training mode (BatchNorm on batch statistics, as in the game being
    played) on copies, so ``G``'s and ``D``'s weights, buffers, modes and ``requires_grad`` flags are left
    as they were.

    Args:
        G: the generator, ``G(z [B, z_dim]) -> images in [0,1]``, with a ``z_dim`` attribute.
        D: the discriminator, images in [0,1] -> one raw logit per image.
        real_heldout: float images in [0,1], [N, C, H, W], not used for training.
        k: Adam steps for each worst-case player.
        lr: their learning rate.
        batch_size: held-out images per step.
        generator: the random stream for z and the batches; ``None``: torch's global one.
        betas: Adam's betas.

    Returns:
        ``{"dg", "v_worst_d", "v_worst_g", "v"}`` with ``v = V(G, D)``.

    Raises:
        AdvkitError: a bad ``k``, ``lr``, ``batch_size`` or ``real_heldout``.
    """
    if not (isinstance(k, int) and k >= 1):
        raise AdvkitError(f"k must be an integer >= 1, got {k!r}")
    if not (math.isfinite(lr) and lr > 0):
        raise AdvkitError(f"lr must be > 0, got {lr}")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise AdvkitError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if not isinstance(real_heldout, torch.Tensor) or real_heldout.ndim != 4 or len(real_heldout) == 0:
        raise AdvkitError("real_heldout must be a non-empty float tensor of images [N, C, H, W]")
    device = next(G.parameters()).device
    real = real_heldout.to(device=device, dtype=torch.float32)
    n, z_dim = len(real), cast(int, G.z_dim)  # a generator carries its z size, as DCGANGenerator does
    bs = min(batch_size, n)
    z_eval = _randn(n, z_dim, generator, device)

    g0, d0 = _frozen_copy(G, False), _frozen_copy(D, False)
    v = _value(g0, d0, real, z_eval, bs)

    # the worst-case discriminator for G: maximize V(G, D') = minimize the minimax D loss
    d_w = _frozen_copy(D, True)
    opt = torch.optim.Adam(d_w.parameters(), lr=lr, betas=betas)
    for _ in range(k):
        x = real[_pick(n, bs, generator).to(device)]
        with torch.no_grad():
            fake = g0(_randn(bs, z_dim, generator, device))
        loss = losses.d_loss("minimax", d_w(x), d_w(fake))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    v_worst_d = _value(g0, d_w, real, z_eval, bs)
    del d_w, opt

    # the worst-case generator for D: minimize V(G', D) (the real term does not depend on G')
    g_w = _frozen_copy(G, True)
    opt = torch.optim.Adam(g_w.parameters(), lr=lr, betas=betas)
    for _ in range(k):
        loss = losses.g_loss("minimax", d0(g_w(_randn(bs, z_dim, generator, device))))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    v_worst_g = _value(g_w, d0, real, z_eval, bs)

    v_worst_d, v_worst_g = max(v_worst_d, v), min(v_worst_g, v)
    return {"dg": v_worst_d - v_worst_g, "v_worst_d": v_worst_d, "v_worst_g": v_worst_g, "v": v}
