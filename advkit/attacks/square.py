"""Square Attack (Andriushchenko, Croce, Flammarion, Hein, ECCV 2020): a score-based, gradient-free attack.

Random search over square-shaped updates of the perturbation, accepted per sample when the loss on the
model's logits improves. It only ever reads the model's outputs, so it is immune to gradient masking:
if it finds adversarial examples that PGD missed, PGD's gradients were misleading.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
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
)
from advkit.errors import AdvkitError

_TINY = 1e-12
LOSSES = ("margin", "ce")
# p (the fraction of pixels a square covers) halves after these iterations of a 10,000-query run; shorter
# or longer runs rescale the schedule to their own budget.
_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
DEFAULT_P_INIT = {"linf": 0.8, "l2": 0.1}
_SIGN_RETRIES = 10


def _p_at(p_init: float, it: int, n_queries: int, rescale: bool = True) -> float:
    i = int(it / n_queries * 10000) if rescale else it
    return p_init / 2 ** sum(i > t for t in _HALVINGS)


def _side(p: float, h: int, w: int, smallest: int) -> int:
    """The square's side length: covers a fraction ``p`` of the ``h x w`` image, at least ``smallest`` pixels,
    at most the image."""
    return min(max(int(round(math.sqrt(p * h * w))), smallest), h, w)


def _randint(high: int, shape: tuple[int, ...], gen: torch.Generator | None,
             device: torch.device) -> torch.Tensor:
    return torch.randint(0, high, shape, generator=gen, device=device)


def _signs(shape: tuple[int, ...], gen: torch.Generator | None, device: torch.device) -> torch.Tensor:
    return _randint(2, shape, gen, device).float().mul_(2).sub_(1)


def _window(r: torch.Tensor, q: torch.Tensor, s: int, h: int, w: int) -> torch.Tensor:
    """[n, 1, h, w] bool masks of the ``s x s`` squares with top-left corners ``(r, q)``."""
    rows = torch.arange(h, device=r.device)
    cols = torch.arange(w, device=r.device)
    mr = (rows >= r[:, None]) & (rows < r[:, None] + s)
    mc = (cols >= q[:, None]) & (cols < q[:, None] + s)
    return (mr[:, :, None] & mc[:, None, :])[:, None]


def _random_windows(n: int, s: int, h: int, w: int, gen, device):
    """Uniformly placed ``s x s`` squares, one per sample: (masks, top rows, left columns)."""
    r, q = _randint(h - s + 1, (n,), gen, device), _randint(w - s + 1, (n,), gen, device)
    return _window(r, q, s, h, w), r, q


def _scores(logits: torch.Tensor, y: torch.Tensor, targeted: bool,
            loss: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(margin, objective) per sample. The margin is < 0 exactly when the sample is fooled (untargeted: the
    true class lost its lead; targeted: the target class leads); the objective is what the search lowers."""
    z = logits.float()
    zy = z.gather(1, y[:, None]).squeeze(1)
    other = z.scatter(1, y[:, None], float("-inf")).amax(1)
    margin = other - zy if targeted else zy - other
    if loss == "margin":
        return margin, margin
    ce = F.cross_entropy(z, y, reduction="none")
    return margin, (ce if targeted else -ce)


# ---- L-inf -------------------------------------------------------------------------------------------------

def _linf_init(xs, lo, hi, eps, gen):
    """Vertical stripes: one random +-eps per column and channel."""
    n, c, _, w = xs.shape
    return torch.clamp(xs + eps * _signs((n, c, 1, w), gen, xs.device), lo, hi)


def _linf_step(xs, xb, lo, hi, eps, p, gen):
    """Set one random square per sample to a random +-eps per channel. Draws whose square would not change
    the current point (the box swallowed it) are redrawn a few times, so queries are not wasted."""
    n, c, h, w = xs.shape
    mask, _, _ = _random_windows(n, _side(p, h, w, 1), h, w, gen, xs.device)
    cand = redo = None
    for _ in range(_SIGN_RETRIES):
        new = torch.clamp(torch.where(mask, xs + eps * _signs((n, c, 1, 1), gen, xs.device), xb), lo, hi)
        cand = new if cand is None or redo is None else torch.where(redo.view(-1, 1, 1, 1), new, cand)
        redo = (cand == xb).flatten(1).all(1)
        if not redo.any():
            break
    return cand


# ---- L2 ----------------------------------------------------------------------------------------------------

def _eta(a: int, b: int, device) -> torch.Tensor:
    """The paper's ``a x b`` pattern: concentric square rings whose value grows towards the centre, ring k
    (counted from the outside, 0-based) holding ``sum_{j<=k} 1/(n+1-j)^2`` with ``n = max(a, b) // 2``."""
    n = max(a, b) // 2
    csum = (1.0 / torch.arange(n + 1, 0, -1, device=device, dtype=torch.float32) ** 2).cumsum(0)
    dr = (torch.arange(a, device=device) - a // 2).abs()
    dc = (torch.arange(b, device=device) - b // 2).abs()
    return csum[n - torch.maximum(dr[:, None], dc[None, :])]


def _l2_square_pattern(s: int, device) -> torch.Tensor:
    """Unit-norm ``s x s`` update: ``eta`` on the left half, ``-eta`` on the right half."""
    k = s // 2
    pat = _eta(s, s, device) if k == 0 else torch.cat([_eta(s, k, device), -_eta(s, s - k, device)], 1)
    return pat / pat.norm()


def _l2_init(xs, eps, gen):
    """A (up to) 5 x 5 grid of ``eta`` blocks, each with a random sign per channel, scaled to L2 norm eps."""
    n, c, h, w = xs.shape
    sh, sw = max(h // 5, 1), max(w // 5, 1)
    nh, nw = min(5, h // sh), min(5, w // sw)
    oh, ow = (h - nh * sh) // 2, (w - nw * sw) // 2
    signs = _signs((n, c, nh, nw), gen, xs.device)
    grid = signs.repeat_interleave(sh, 2).repeat_interleave(sw, 3) * _eta(sh, sw, xs.device).repeat(nh, nw)
    delta = torch.zeros_like(xs)
    delta[:, :, oh:oh + nh * sh, ow:ow + nw * sw] = grid
    delta *= eps / per_sample_norm(delta, "l2").clamp_min(_TINY).view(-1, 1, 1, 1)
    return (xs + delta).clamp_(0, 1)


def _l2_step(xs, xb, eps, p, gen):
    """The paper's L2 update: per channel, the perturbation mass in two random squares W1 and W2 (plus an even
    share of the budget left unused, e.g. lost to clipping) is moved into W1, along the old W1 direction plus
    a random-sign ``+-eta`` pattern; W2 is emptied. The total norm stays eps before clipping to the box."""
    n, c, h, w = xs.shape
    dev = xs.device
    s = _side(p, h, w, 2)
    m1, r1, q1 = _random_windows(n, s, h, w, gen, dev)
    m2, _, _ = _random_windows(n, s, h, w, gen, dev)
    union = m1 | m2
    pat = _l2_square_pattern(s, dev)
    flip = _randint(2, (n,), gen, dev).bool().view(-1, 1, 1)
    pats = torch.where(flip, pat.t(), pat)  # [n, s, s]: half the squares are split the other way
    # place each sample's pattern at its W1: read it at (row - r1, col - q1), zero outside W1
    li = (torch.arange(h, device=dev)[None] - r1[:, None]).clamp(0, s - 1)
    lj = (torch.arange(w, device=dev)[None] - q1[:, None]).clamp(0, s - 1)
    eta = pats[torch.arange(n, device=dev)[:, None, None], li[:, :, None], lj[:, None, :]][:, None] * m1
    rho = _signs((n, c, 1, 1), gen, dev)

    nu = xb - xs
    unused = (eps ** 2 - nu.pow(2).flatten(1).sum(1)).clamp_min(0).view(-1, 1, 1, 1)
    nu1 = nu * m1
    temp = rho * eta + nu1 / nu1.pow(2).sum((2, 3), keepdim=True).sqrt().clamp_min(_TINY)
    avail = ((nu * union).pow(2).sum((2, 3), keepdim=True) + unused / c).sqrt()
    temp_norm = temp.pow(2).sum((2, 3), keepdim=True).sqrt().clamp_min(_TINY)
    new = nu * ~union + temp * (avail / temp_norm)
    new *= (eps / per_sample_norm(new, "l2").clamp_min(_TINY)).clamp(max=1).view(-1, 1, 1, 1)  # rounding
    return (xs + new).clamp_(0, 1)


# ---- the attack --------------------------------------------------------------------------------------------

# never reads a gradient: only the model's outputs (what the gradient-masking check relies on)
@register_attack("square", norms=("linf", "l2"), gradient_free=True,
                 label=lambda params: f"Square-{params.get('n_queries', 1000)}")
def square(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str = "linf",
           n_queries: int = 1000, p_init: float | None = None, targeted: bool = False, loss: str = "margin",
           rescale_schedule: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
    """Square Attack: random search with square-shaped updates, using only the model's logits.

    Each sample gets at most ``n_queries`` forward passes, after one clean pass that finds the samples already
    fooled: those come back unchanged, and a sample stops being queried (and the attack stops once all have)
    as soon as it is fooled. Samples never fooled come back at the best point found.

    Search: start from a random point at distance eps (before clipping to the box), then each iteration
    draws one square per sample, proposes a change inside it, and keeps it when the objective decreases (or
    the proposal fools the model).
    The square's side is ``round(sqrt(p * H * W))``; ``p`` starts at ``p_init`` (default 0.8 for linf, 0.1 for
    l2, the paper's values) and halves at iterations 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 of a
    10,000-query budget, rescaled to ``n_queries`` (or taken as they are with ``rescale_schedule=False``, as
    AutoAttack's ``standard`` run does with its 5,000 queries: ``p`` then ends at ``p_init / 128``, not
    ``p_init / 512``).

    * ``linf``: starts from vertical stripes of +-eps (a random sign per column and channel); an update sets
      the square to a random +-eps per channel, the result clipped to the box.
    * ``l2``: the paper's scheme: starts from a 5 x 5 grid of centred "ring" patterns ``eta`` with random
      signs per channel, scaled to norm eps; an update moves, per channel, the mass of two random squares
      W1 and W2 (plus the budget left unused, e.g. lost to clipping) into W1 along its old direction plus a
      random-sign ``(eta, -eta)`` pattern, emptying W2, so the norm stays eps before clipping to the box.
      Small deviations from the paper: the squares are drawn per sample (not one per batch), their side is
      at least 2 pixels (the split pattern needs both halves), and for images under 5 pixels a side the
      init grid has 1-pixel blocks.

    No gradient is ever computed: the model runs under ``torch.no_grad()``.

    Args:
        model: a classifier ``f(x in [0,1]) -> logits [B, K]``, K >= 2.
        x: an image batch ``[B, C, H, W]`` in [0,1] (any channel count and size).
        y: labels [B] (targeted: the target classes).
        eps: the radius, in pixel units of ``norm``.
        norm: ``linf`` or ``l2``.
        n_queries: forward passes per sample, at most (an integer >= 1).
        p_init: the fraction of the image the first squares cover, in (0, 1]; default 0.8 for linf, 0.1 for
            l2 (the paper's values).
        targeted: push each sample towards the class ``y`` instead of away from it.
        loss: ``"margin"`` (the paper's choice: untargeted ``z_y - max_{j!=y} z_j``, targeted
            ``max_{j!=t} z_j - z_t``, both < 0 exactly when fooled) or ``"ce"`` (untargeted: minus the
            cross-entropy of ``y``; targeted: the cross-entropy of the target).
        rescale_schedule: stretch the halving iterations of ``p`` (set for 10,000 queries) to ``n_queries``;
            False keeps them at their absolute iterations.
        generator: drives every random draw (on ``x``'s device): the same seed gives the same result.

    Returns:
        The adversarial batch: inside the eps-ball around ``x`` and in [0,1], with ``x``'s shape and dtype
        (fp16/bf16 results are rounded towards ``x``, so the bound holds in that dtype).

    Raises:
        AdvkitError: an unusable eps, ``n_queries``, ``p_init`` or ``loss``, inputs that are not an image batch
            in [0,1], or a model whose output is not logits with at least two classes.
    """
    eps = check_eps(eps, norm)
    check_inputs(x, y)
    if x.ndim != 4:
        raise AdvkitError(f"square needs an image batch [B, C, H, W], got shape {tuple(x.shape)}")
    if isinstance(n_queries, bool) or not isinstance(n_queries, int) or n_queries < 1:
        raise AdvkitError(f"n_queries must be an integer >= 1, got {n_queries!r}")
    p_init = DEFAULT_P_INIT[norm] if p_init is None else p_init
    try:
        p_init = float(p_init)
    except (TypeError, ValueError):
        raise AdvkitError(f"p_init must be a number in (0, 1], got {p_init!r}") from None
    if not 0 < p_init <= 1:
        raise AdvkitError(f"p_init must be in (0, 1], got {p_init}")
    if loss not in LOSSES:
        raise AdvkitError(f"unknown loss {loss!r}; valid: {', '.join(LOSSES)}")
    y = y.long()
    with attack_mode(model), torch.no_grad():
        x0 = as_fp32(x)
        x_best = x0.clone()
        logits = model(x0)
        check_labels(logits, y)
        if logits.ndim != 2 or logits.shape[1] < 2:
            raise AdvkitError(f"square needs logits [B, K] with K >= 2 classes, got {tuple(logits.shape)}")
        margin, _ = _scores(logits, y, targeted, loss)
        idx = (margin >= 0).nonzero().squeeze(1)  # not fooled yet: the only samples ever queried
        if eps == 0 or idx.numel() == 0:
            return to_caller_dtype(x_best, x)
        if norm == "linf":  # the intersection of the eps-ball and the box, once
            lo, hi = (x0 - eps).clamp_(min=0), (x0 + eps).clamp_(max=1)
            init = _linf_init(x0[idx], lo[idx], hi[idx], eps, generator)
        else:
            init = _l2_init(x0[idx], eps, generator)
        margin_best = torch.full_like(margin, -math.inf)
        obj_best = torch.full_like(margin, -math.inf)
        x_best[idx] = init
        margin_best[idx], obj_best[idx] = _scores(model(init), y[idx], targeted, loss)

        for it in range(1, n_queries):
            act = (margin_best >= 0).nonzero().squeeze(1)
            if act.numel() == 0:
                break
            p = _p_at(p_init, it, n_queries, bool(rescale_schedule))
            xs, xb = x0[act], x_best[act]
            if norm == "linf":
                cand = _linf_step(xs, xb, lo[act], hi[act], eps, p, generator)
            else:
                cand = _l2_step(xs, xb, eps, p, generator)
            m, obj = _scores(model(cand), y[act], targeted, loss)
            take = (obj < obj_best[act]) | (m < 0)
            upd = act[take]
            x_best[upd] = cand[take]
            margin_best[upd] = m[take]
            obj_best[upd] = obj[take]
    return to_caller_dtype(x_best, x)
