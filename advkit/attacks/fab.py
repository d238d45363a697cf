"""FAB-T: the targeted Fast Adaptive Boundary attack (Croce & Hein 2020, ICML, "Minimally distorted adversarial
examples with a fast adaptive boundary attack"), L-inf and L2.

FAB looks for the adversarial point closest to ``x``: at each iteration it linearises the decision boundary
between the true class and a target class at the current point, projects both the current point and the
original one onto that hyperplane intersected with the [0,1] box, and steps to a mix of the two projections,
overshooting a little (``eta``) and leaning towards the original point (weight ``alpha``, at most
``alpha_max``). When a step lands on the adversarial side it is recorded if it is the closest so far, and the
iterate is pulled back towards ``x`` (``beta``), so the search keeps shrinking the perturbation.
"""

from __future__ import annotations

import torch
from torch import nn

from advkit.attacks.base import register_attack
from advkit.attacks.common import (
    as_fp32,
    attack_mode,
    check_eps,
    check_inputs,
    check_labels,
    per_sample_norm,
    to_caller_dtype,
    usable,
)
from advkit.errors import AdvkitError

_TINY = 1e-12


def project_hyperplane_box(w: torch.Tensor, c: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                           norm: str) -> torch.Tensor:
    """The smallest ``delta`` (in ``norm``) with ``<w, delta> = c`` and ``lo <= delta <= hi``, per row.

    ``w``, ``lo`` (<= 0) and ``hi`` (>= 0) are ``[n, d]``, ``c`` is ``[n]``. The paper's reduction: with the
    direction ``s = sign(w * c)`` and the room ``r >= 0`` the box leaves along it, the minimiser is
    ``s * min(t, r)`` (L-inf) or ``s * min(t * |w|, r)`` (L2) for one scalar ``t``; ``<w, delta>`` grows
    piecewise linearly in ``t``, with a kink where a coordinate hits the box, so sorting the kinks gives ``t``
    exactly. When the hyperplane misses the box, the box corner closest to it along ``s`` is returned.

    Returns:
        ``delta`` of shape ``[n, d]``.
    """
    a = w.abs()
    s = torch.sign(w) * torch.sign(c)[:, None]
    room = torch.where(s > 0, hi, -lo)
    if norm == "linf":   # |<w, delta>| = sum_i a_i min(t, k_i)
        v, k = a, room
    else:                # sum_i a_i^2 min(t, k_i) with k_i = r_i / a_i (coordinates with a_i = 0 add nothing)
        v, k = a * a, torch.where(a > 0, room / a.clamp_min(_TINY), torch.zeros_like(a))
    ks, order = k.sort(1)
    vs = v.gather(1, order)
    before_vk = (vs * ks).cumsum(1) - vs * ks    # sum of v_i k_i over coordinates already at their bound
    before_v = vs.cumsum(1) - vs
    rest_v = vs.sum(1, keepdim=True) - before_v  # weight still growing with t
    at_kink = before_vk + ks * rest_v            # |<w, delta>| when t reaches the j-th kink
    goal = c.abs()[:, None]
    reach = at_kink >= goal
    j = reach.int().argmax(1, keepdim=True)      # the first kink past the goal: t lies just below it
    t = (goal - before_vk.gather(1, j)) / rest_v.gather(1, j).clamp_min(_TINY)
    t = torch.where(reach.any(1, keepdim=True), t, ks[:, -1:])  # unreachable: every coordinate at its bound
    delta = s * (torch.minimum(t, k) if norm == "linf" else a * torch.minimum(t, k))
    return torch.maximum(torch.minimum(delta, hi), lo)  # rounding in a * (r / a) must not leave the box


def _random_start(x0: torch.Tensor, radius: torch.Tensor, norm: str, gen: torch.Generator | None) -> torch.Tensor:
    """A random point at distance up to ``radius`` (per row) from ``x0``, clipped to the box."""
    if norm == "linf":
        u = 2 * torch.rand(x0.shape, generator=gen, device=x0.device) - 1
    else:
        u = torch.randn(x0.shape, generator=gen, device=x0.device)
        u = u / per_sample_norm(u, "l2").clamp_min(_TINY)[:, None]
    return (x0 + u * radius[:, None]).clamp_(0, 1)


def _linearise(model: nn.Module, pts: torch.Tensor, y: torch.Tensor, t: torch.Tensor, targeted: bool,
               shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """The boundary function ``g = z_t - z_rival`` at ``pts`` (> 0 on the target's side) and its
    gradient. The rival is the true class ``y``, or (targeted) the strongest class other than ``t``."""
    pts = pts.detach().requires_grad_(True)
    z = model(pts.view(-1, *shape)).float()
    zd = z.detach()
    rival = zd.scatter(1, t[:, None], float("-inf")).argmax(1) if targeted else y
    g = z.gather(1, t[:, None]).squeeze(1) - z.gather(1, rival[:, None]).squeeze(1)
    (w,) = torch.autograd.grad(g.sum(), pts)
    return g.detach(), w


def _boundary_search(model: nn.Module, x0: torch.Tensor, start: torch.Tensor, y: torch.Tensor, t: torch.Tensor,
                     targeted: bool, shape: tuple[int, ...], norm: str, steps: int, alpha_max: float,
                     eta: float, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One FAB run on flat rows ``x0`` from ``start`` towards the targets ``t``: the closest adversarial point
    found and its norm (inf where none was). Untargeted, a point is adversarial when ``y`` is not the top class
    (the boundary followed is ``z_t = z_y``); targeted, when ``t`` is."""
    best = x0.clone()
    best_n = torch.full((len(x0),), float("inf"), device=x0.device)
    cur = start
    for _ in range(steps):
        g, w = _linearise(model, cur, y, t, targeted, shape)
        with torch.no_grad():
            d_cur = project_hyperplane_box(w, -g, -cur, 1 - cur, norm)
            d_orig = project_hyperplane_box(w, -g - (w * (x0 - cur)).sum(1), -x0, 1 - x0, norm)
            n_cur, n_orig = per_sample_norm(d_cur, norm), per_sample_norm(d_orig, norm)
            alpha = (n_cur / (n_cur + n_orig).clamp_min(_TINY)).clamp(max=alpha_max)[:, None]
            cur = ((1 - alpha) * (cur + eta * d_cur) + alpha * (x0 + eta * d_orig)).clamp_(0, 1)
            pred = model(cur.view(-1, *shape)).argmax(1)
            adv = (pred == t) if targeted else (pred != y)
            n = per_sample_norm(cur - x0, norm)
            take = adv & (n < best_n)
            best[take], best_n[take] = cur[take], n[take]
            # the backward step: an adversarial iterate is pulled back towards x before the next linearisation
            cur = torch.where(adv[:, None], (1 - beta) * x0 + beta * cur, cur)
    return best, best_n


def _label(params: dict) -> str:
    return "FAB-T"


# FAB-T always follows a boundary towards a target class, so it registers as white-box FAB-T whatever its
# parameters; AutoAttack's standard version runs it with 9 targets, 100 steps, 1 restart (the defaults).
@register_attack("fab-t", norms=("linf", "l2"), label=_label)
def fab_t(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str = "linf", steps: int = 100,
          n_target_classes: int = 9, restarts: int = 1, alpha_max: float = 0.1, eta: float = 1.05,
          beta: float = 0.9, targeted: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
    """Targeted FAB (Croce & Hein 2020) with the eps bound of the threat model.

    ``x`` in [0,1]; ``eps`` in pixel units of ``norm`` (``linf`` or ``l2``). Untargeted use (the default, as in
    AutoAttack): for each of the ``n_target_classes`` classes the model ranks highest after the true one on
    the clean ``x`` (in that order), run ``restarts`` FAB searches of ``steps`` iterations towards it, keeping
    the adversarial point of smallest norm; a sample leaves the target loop once it holds one within eps.
    With ``K`` classes there are at most ``K - 1`` targets: a 2-class model (a detector) has exactly one, the
    other class. ``targeted=True``: ``y`` are the target classes, each sample runs towards its own target
    (the boundary followed is between the target and its strongest rival), and success means the target wins.

    Per step (the paper's Algorithm 1): linearise the boundary at the iterate, project the iterate and the
    original point onto it within the box, move to ``(1 - alpha)(x_i + eta d_i) + alpha (x + eta d_orig)``,
    ``alpha = min(|d_i| / (|d_i| + |d_orig|), alpha_max)``; an adversarial iterate is recorded and pulled back
    to ``(1 - beta) x + beta x_i``. The first restart starts at ``x``, later ones at a random point within
    half the best norm found so far (at most eps). ``generator`` drives those random starts.

    Args:
        model: ``f(x in [0,1]) -> logits``.
        x: images ``[B, C, H, W]`` in [0,1].
        y: true labels ``[B]`` (targeted: the target classes).
        eps: the budget, pixel units of ``norm``.
        norm: ``linf`` or ``l2``.
        steps: FAB iterations per target and restart.
        n_target_classes: how many classes to target, highest-ranked first (at most ``K - 1``).
        restarts: searches per target.
        alpha_max: the largest weight of the step towards the original point's projection.
        eta: the overshoot of each projection step.
        beta: how far an adversarial iterate is pulled back towards ``x``.
        targeted: ``y`` are target classes.
        generator: seeds the random starts of restarts after the first.

    Returns:
        Per sample the closest adversarial point found when its norm is at most eps, else ``x`` itself (so
        the eps bound and the box always hold); ``x``'s shape and dtype (a half-precision result is rounded
        towards ``x``, so the bound holds there too). Samples the model already gets wrong
        (targeted: already classified as the target) come back unchanged.

    Raises:
        AdvkitError: bad eps, inputs or parameters.
    """
    eps = check_eps(eps, norm)
    check_inputs(x, y)
    if min(steps, n_target_classes, restarts) < 1:
        raise AdvkitError(f"steps, n_target_classes and restarts must be >= 1, got {steps}, {n_target_classes}, "
                          f"{restarts}")
    if not (0 <= alpha_max <= 1 and eta >= 1 and 0 <= beta <= 1):
        raise AdvkitError(f"need 0 <= alpha_max <= 1, eta >= 1, 0 <= beta <= 1; got {alpha_max}, {eta}, {beta}")
    shape = tuple(x.shape[1:])
    with attack_mode(model):
        x0, y = as_fp32(x).flatten(1), usable(y).long()  # ordinary tensors even under inference_mode
        with torch.no_grad():
            z = model(x0.view(-1, *shape)).float()
        check_labels(z, y)
        if z.ndim != 2 or z.shape[1] < 2:
            raise AdvkitError(f"fab-t needs logits [B, K] with K >= 2 classes, got {tuple(z.shape)}")
        if targeted:
            plan = [y]
            done = z.argmax(1) == y
        else:  # the targets: the classes ranked highest after the true one, clean logits
            ranked = z.scatter(1, y[:, None], float("-inf")).argsort(1, descending=True)
            plan = list(ranked[:, :min(n_target_classes, z.shape[1] - 1)].T)
            done = z.argmax(1) != y
        best = x0.clone()
        best_n = torch.where(done, 0.0, float("inf"))
        for t in plan:
            for r in range(restarts):
                idx = (best_n > eps).nonzero().squeeze(1)  # still standing within eps
                if idx.numel() == 0 or eps == 0:
                    break
                xs = x0[idx]
                start = xs if r == 0 else _random_start(xs, best_n[idx].clamp(max=eps) / 2, norm, generator)
                found, n = _boundary_search(model, xs, start, y[idx], t[idx], targeted, shape, norm, steps,
                                            alpha_max, eta, beta)
                closer = n < best_n[idx]
                best[idx[closer]], best_n[idx[closer]] = found[closer], n[closer]
        out = torch.where((best_n <= eps)[:, None], best, x0).view(x.shape)
        return to_caller_dtype(out, x)  # rounded towards x: the bound holds in a half-precision x too
