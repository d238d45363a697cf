"""APGD (Croce & Hein, ICML 2020, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks"): PGD with momentum whose step size adapts itself, so it needs no tuning.

The step starts at ``2 * eps`` and is halved at checkpoints when the loss stopped rising often enough; each
halving restarts the iterate from the best point found. Losses: cross-entropy (``ce``) and the difference of
logits ratio (``dlr``), which is invariant to shifting and rescaling the logits; APGD-T runs the targeted DLR
loss once per likely wrong class. L-inf and L2.
"""

from __future__ import annotations

import math
from typing import Any, Callable

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
    random_point,
    to_caller_dtype,
    usable,
)
from advkit.errors import AdvkitError

_TINY = 1e-12
_MOMENTUM = 0.75  # the paper's alpha: weight of the new step against the previous move
LOSSES = ("ce", "dlr")
Target = torch.Tensor | None


def checkpoints(steps: int) -> list[int]:
    """The iterations ``w_j = ceil(p_j * steps)`` at which APGD may halve its step, in increasing order.

    ``p_0 = 0``, ``p_1 = 0.22``, ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``: the checks come closer
    together as the run goes on (22, 41, 57, 70, 80, 87, 93, 99 for 100 steps). Duplicates (short runs) fold.

    Args:
        steps: the run's iteration count.

    Returns:
        The checkpoint iterations, increasing, each in [1, steps].
    """
    out: list[int] = []
    p_prev, p = 0.0, 0.22
    while p <= 1:
        w = math.ceil(round(p * steps, 9))  # 0.41 * 100 is 41.00000000000001 in floating point
        if w >= 1 and (not out or w > out[-1]):
            out.append(w)
        p_prev, p = p, round(p + max(p - p_prev - 0.03, 0.06), 9)
    return out


def _sorted_gap(z: torch.Tensor, targeted: bool) -> torch.Tensor | None:
    """DLR's scale: ``z_pi1 - z_pi3`` (targeted: ``z_pi1 - (z_pi3 + z_pi4) / 2``); None when the model has too
    few classes for it (the caller falls back to the plain margin)."""
    k = z.shape[1]
    if k < 3:
        return None
    zs = z.topk(min(k, 4), dim=1).values
    return zs[:, 0] - (zs[:, 2] + zs[:, 3]) / 2 if targeted and k >= 4 else zs[:, 0] - zs[:, 2]


def dlr_loss(logits: torch.Tensor, y: torch.Tensor | None, target: Target = None) -> torch.Tensor:
    """Per-sample difference of logits ratio loss (higher = closer to being fooled), in fp32.

    Untargeted: ``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3 + 1e-12)`` with ``pi`` sorting the logits in
    descending order. Targeted towards ``target``: ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)``;
    when ``y`` is None (the true class is unknown) ``z_y`` is the largest logit other than ``z_t``.

    Fewer classes: with 3 classes the targeted scale is ``z_pi1 - z_pi3``; with 2 classes there is no third
    logit, and the loss is the plain margin ``-(z_y - z_other)`` (dividing by ``|z_y - z_other|`` would make
    it a constant). Both are < 0 exactly when the sample is not fooled, as DLR is.

    Args:
        logits: ``[B, K]`` model outputs, ``K >= 2``.
        y: ``[B]`` true labels (None only with ``target``).
        target: ``[B]`` target labels for the targeted loss, or None.

    Returns:
        ``[B]`` fp32 losses.
    """
    z = logits.float()
    if target is not None:
        z_o = z.gather(1, target[:, None]).squeeze(1)
        z_y = (z.gather(1, y[:, None]).squeeze(1) if y is not None
               else z.scatter(1, target[:, None], -math.inf).amax(1))
    elif y is not None:
        z_y = z.gather(1, y[:, None]).squeeze(1)
        z_o = z.scatter(1, y[:, None], -math.inf).amax(1)
    else:
        raise ValueError("dlr_loss needs the true labels y, the targets, or both")
    gap = _sorted_gap(z, targeted=target is not None)
    margin = z_y - z_o
    return -margin if gap is None else -margin / (gap + _TINY)


def _objective(logits: torch.Tensor, loss: str, y: Target, t: Target) -> torch.Tensor:
    """The loss APGD climbs: untargeted (``t`` None) or towards ``t``."""
    if loss == "dlr":
        return dlr_loss(logits, y, t)
    if t is not None:
        return -F.cross_entropy(logits.float(), t, reduction="none")
    if y is None:
        raise ValueError("the untargeted loss needs the true labels")
    return F.cross_entropy(logits.float(), y, reduction="none")


def _fooled(logits: torch.Tensor, y: Target, t: Target) -> torch.Tensor:
    """Success: misclassified when the true label is known (APGD-T included), else the target reached."""
    pred = logits.argmax(1)
    hit = pred != y if y is not None else pred == t
    return hit & torch.isfinite(logits).all(1)  # a NaN output never counts as fooled


def _project(xs: torch.Tensor, s: dict[str, torch.Tensor], eps: float, norm: str) -> torch.Tensor:
    """Onto the eps-ball around ``s["x0"]`` and the [0,1] box (L2: the ball, then the box, which only shrinks
    the perturbation since ``x0`` is in the box)."""
    if norm == "linf":
        return torch.clamp(xs, s["lo"], s["hi"])
    d = xs - s["x0"]
    n = per_sample_norm(d, "l2").clamp_min(_TINY).view(-1, *[1] * (d.ndim - 1))
    return (s["x0"] + d * (eps / n).clamp(max=1.0)).clamp_(0, 1)


def _direction(g: torch.Tensor, norm: str) -> torch.Tensor:
    if norm == "linf":
        return g.sign()
    return g / per_sample_norm(g, "l2").clamp_min(_TINY).view(-1, *[1] * (g.ndim - 1))


def _evaluate(model: nn.Module, xs: torch.Tensor, s: dict[str, torch.Tensor],
              loss: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The loss per sample, its gradient (NaN read as 0) and whether each sample is fooled at ``xs``."""
    xs = xs.detach().requires_grad_(True)
    logits = model(xs)
    f = _objective(logits, loss, s.get("y"), s.get("t"))
    (g,) = torch.autograd.grad(f.sum(), xs)
    return f.detach(), g.nan_to_num_(0.0, 0.0, 0.0), _fooled(logits.detach(), s.get("y"), s.get("t"))


def _single_run(model: nn.Module, start: torch.Tensor, s: dict[str, torch.Tensor], *, loss: str, eps: float,
                norm: str, steps: int, rho: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One APGD run from ``start`` (Algorithm 1 of the paper) on the samples of ``s`` (``x0``, labels, box).

    Returns per sample: the first point that fooled the model, else the highest-loss point; whether it
    fooled; its loss (inf when fooled). Fooled samples leave the batch at once.
    """
    n = start.shape[0]
    res, fooled, best = start.clone(), torch.zeros(n, dtype=torch.bool, device=start.device), \
        torch.full((n,), -math.inf, device=start.device)
    s = {**s, "idx": torch.arange(n, device=start.device), "x": start}
    s["f"], s["g"], hit = _evaluate(model, start, s, loss)

    def settle(s: dict[str, torch.Tensor], hit: torch.Tensor) -> dict[str, torch.Tensor]:
        if not hit.any():
            return s
        res[s["idx"][hit]] = s["x"][hit]
        fooled[s["idx"][hit]] = True
        return {k: v[~hit] for k, v in s.items()}

    s = settle(s, hit)
    s.update(x_prev=s["x"], x_max=s["x"], f_max=s["f"], g_max=s["g"], count=torch.zeros_like(s["f"]),
             eta=torch.full_like(s["f"], 2 * eps))
    s.update(eta_ck=s["eta"], f_max_ck=s["f_max"])  # eta and f_max at the previous checkpoint (w_0 = 0)
    marks, last = set(checkpoints(steps)), 0
    for it in range(1, steps + 1):
        if s["idx"].numel() == 0:
            break
        with torch.no_grad():
            x, shape = s["x"], (-1, *[1] * (start.ndim - 1))
            z = _project(x + s["eta"].view(shape) * _direction(s["g"], norm), s, eps, norm)
            if it > 1:  # momentum: the new step weighted alpha, the previous move 1 - alpha
                z = _project(x + _MOMENTUM * (z - x) + (1 - _MOMENTUM) * (x - s["x_prev"]), s, eps, norm)
        f, g, hit = _evaluate(model, z, s, loss)
        with torch.no_grad():
            up = f > s["f_max"]  # NaN never wins
            b = up.view(shape)
            s.update(count=s["count"] + (f > s["f"]), x_prev=x, x=z, f=f, g=g, f_max=torch.where(up, f, s["f_max"]),
                     x_max=torch.where(b, z, s["x_max"]), g_max=torch.where(b, g, s["g_max"]))
            s = settle(s, hit)
            if it in marks:
                # halve where under rho of the steps since the last checkpoint raised the loss, or where
                # neither the step nor the best loss moved since then; restart those from their best point
                few = s["count"] < rho * (it - last)
                stuck = (s["eta"] == s["eta_ck"]) & (s["f_max"] == s["f_max_ck"])
                half = (few | stuck)
                hb = half.view(shape)
                s.update(eta_ck=s["eta"], f_max_ck=s["f_max"], eta=torch.where(half, s["eta"] / 2, s["eta"]),
                         x=torch.where(hb, s["x_max"], s["x"]), x_prev=torch.where(hb, s["x_max"], s["x_prev"]),
                         g=torch.where(hb, s["g_max"], s["g"]), f=torch.where(half, s["f_max"], s["f"]),
                         count=torch.zeros_like(s["count"]))
                last = it
    res[s["idx"]] = s["x_max"]
    best[s["idx"]] = s["f_max"]
    best[fooled] = math.inf
    return res, fooled, best


def _run(model: nn.Module, x: torch.Tensor, y: Target, targets: list[Target], *, loss: str, eps: float,
         norm: str, steps: int, restarts: int, rho: float, generator: torch.Generator | None) -> torch.Tensor:
    """APGD once per target (None: untargeted) and restart, each run only on the samples not fooled yet;
    per sample the fooling point wins, else the highest loss. ``x`` fp32, model in attack mode."""
    res, best = x.clone(), torch.full((x.shape[0],), -math.inf, device=x.device)
    for t in targets:
        for r in range(restarts):
            left = (best < math.inf).nonzero().squeeze(1)
            if left.numel() == 0:
                return res
            x0 = x[left]
            s = {"x0": x0, **({"y": y[left]} if y is not None else {}), **({"t": t[left]} if t is not None else {})}
            if norm == "linf":  # the intersection of the eps-ball and the box, once per run
                s.update(lo=(x0 - eps).clamp_(min=0), hi=(x0 + eps).clamp_(max=1))
            # the first restart starts at x itself; later ones at random points, drawn for the whole batch so
            # that a sample's draw does not depend on which others are left
            start = x0 if r == 0 else random_point(x, eps, norm, generator).clamp_(0, 1)[left]
            out, _, f = _single_run(model, start, s, loss=loss, eps=eps, norm=norm, steps=steps, rho=rho)
            take = f > best[left]
            res[left[take]] = out[take]
            best[left[take]] = f[take]
    return res


def _prepare(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str, steps: int,
             restarts: int, rho: float) -> tuple[float, torch.Tensor, torch.Tensor | None]:
    """Checked eps, fp32 ``x`` and the clean logits (None for an empty batch); call in attack mode."""
    eps = check_eps(eps, norm)
    check_inputs(x, y)
    for name, v in (("steps", steps), ("restarts", restarts)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise AdvkitError(f"{name} must be an integer >= 1, got {v!r}")
    if not 0 <= rho <= 1:
        raise AdvkitError(f"rho must be in [0, 1], got {rho!r}")
    x0 = as_fp32(x)
    if x0.shape[0] == 0:
        return eps, x0, None
    with torch.no_grad():
        logits = model(x0)
    check_labels(logits, y)
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise AdvkitError(f"apgd needs logits [B, K] with K >= 2 classes, got {tuple(logits.shape)}")
    return eps, x0, logits


def apgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str = "linf",
         steps: int = 100, loss: str = "ce", targeted: bool = False, n_target_classes: int = 9,
         restarts: int = 1, rho: float = 0.75, generator: torch.Generator | None = None) -> torch.Tensor:
    """Auto-PGD (Croce & Hein 2020) in pixel space: APGD-CE, APGD-DLR, and APGD-T with ``targeted=True``.

    Each run starts with step ``2 * eps`` and takes ``steps`` momentum steps (weight 0.75 on the new
    gradient step: ``z = P(x_k + eta * step)``, ``x_{k+1} = P(x_k + 0.75 (z - x_k) + 0.25 (x_k - x_{k-1}))``,
    ``P`` the projection on the eps-ball and the [0,1] box; L-inf steps are signed gradients, L2 steps
    normalized ones). At the checkpoints of :func:`checkpoints` a sample's step halves, and its iterate
    restarts from its best point, when fewer than ``rho`` of its steps since the last checkpoint raised the
    loss, or when neither its step nor its best loss changed since then. The first restart starts at ``x``
    (deterministic), further ones at random points of the ball (seeded by ``generator``).

    A sample that is fooled keeps its first fooling point and leaves the batch (later runs, restarts and
    targets skip it); samples already misclassified come back unchanged; the others come back at their
    highest-loss point. Every sample is attacked independently of the rest of the batch.

    ``targeted=True`` is APGD-T, AutoAttack's targeted attack under the untargeted threat model: ``y`` are
    the TRUE labels (unlike :func:`advkit.attacks.pgd`, where they are the targets). For each of the
    ``n_target_classes`` most likely wrong classes of the clean logits (the 2nd most likely class first; at
    most K - 1) it runs the targeted loss (``dlr``: targeted DLR; ``ce``: minus the cross-entropy of the
    target) on the samples not yet misclassified. For attacks towards given targets use the registered
    ``apgd-ce`` / ``apgd-dlr`` with ``targeted=True``.

    Args:
        model: ``f(x in [0,1]) -> logits [B, K]``, ``K >= 2``.
        x: inputs ``[B, ...]`` in [0,1]; never modified.
        y: ``[B]`` true labels.
        eps: radius in pixel units of ``norm``.
        norm: ``linf`` or ``l2``.
        steps: iterations per run (AutoAttack: 100).
        loss: ``ce`` or ``dlr`` (see :func:`dlr_loss`; with 2 classes DLR is the plain logit margin, so
            APGD-T on a 2-class model equals the untargeted margin attack).
        targeted: run APGD-T (see above).
        n_target_classes: APGD-T's number of target classes (AutoAttack: 9).
        restarts: runs per target (AutoAttack: 1).
        rho: the fraction of loss-raising steps below which the step halves (0.75).
        generator: seeds the random starts of restarts after the first.

    Returns:
        ``x_adv`` with ``x``'s shape and dtype, in the eps-ball around ``x`` and in [0,1].

    Raises:
        AdvkitError: bad eps, norm, loss, counts or inputs.
    """
    if loss not in LOSSES:
        raise AdvkitError(f"unknown loss {loss!r}; valid: {', '.join(LOSSES)}")
    if targeted and (isinstance(n_target_classes, bool) or not isinstance(n_target_classes, int)
                     or n_target_classes < 1):
        raise AdvkitError(f"n_target_classes must be an integer >= 1, got {n_target_classes!r}")
    with attack_mode(model):
        eps, x0, logits = _prepare(model, x, y, eps, norm, steps, restarts, rho)
        if eps == 0 or logits is None:
            return to_caller_dtype(x0, x)
        y = usable(y).long()
        targets: list[Target] = [None]
        if targeted:  # the most likely wrong classes, most likely first
            k = min(n_target_classes, logits.shape[1] - 1)
            wrong = logits.float().scatter(1, y[:, None], -math.inf)
            targets = list(wrong.topk(k, dim=1).indices.unbind(1))
        x_adv = _run(model, x0, y, targets, loss=loss, eps=eps, norm=norm, steps=steps, restarts=restarts,
                     rho=rho, generator=generator)
    return to_caller_dtype(x_adv, x)


def _registered(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, loss: str, apgd_t: bool, targeted: bool,
                eps: float, norm: str, steps: int, restarts: int, rho: float, n_target_classes: int,
                generator: torch.Generator | None) -> torch.Tensor:
    """The registry's convention: ``targeted=True`` means ``y`` are target labels, attacked with ``loss`` towards
    them (success: ``argmax == y``); else ``y`` are true labels (APGD-T when ``apgd_t``)."""
    if not targeted:
        return apgd(model, x, y, eps=eps, norm=norm, steps=steps, loss=loss, targeted=apgd_t,
                    n_target_classes=n_target_classes, restarts=restarts, rho=rho, generator=generator)
    with attack_mode(model):
        eps, x0, logits = _prepare(model, x, y, eps, norm, steps, restarts, rho)
        if eps == 0 or logits is None:
            return to_caller_dtype(x0, x)
        x_adv = _run(model, x0, None, [usable(y).long()], loss=loss, eps=eps, norm=norm, steps=steps,
                     restarts=restarts, rho=rho, generator=generator)
    return to_caller_dtype(x_adv, x)


def _labeler(title: str) -> Callable[[dict[str, Any]], str]:
    def label(params: dict[str, Any]) -> str:
        steps, restarts = params.get("steps", 100), params.get("restarts", 1)
        return title + (f"-{steps}" if steps != 100 else "") + (f"x{restarts}" if restarts > 1 else "")
    return label


@register_attack("apgd-ce", norms=("linf", "l2"), label=_labeler("APGD-CE"))
def apgd_ce(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str = "linf",
            steps: int = 100, restarts: int = 1, rho: float = 0.75, targeted: bool = False,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """APGD on the cross-entropy (AutoAttack's APGD-CE): :func:`apgd` with ``loss="ce"``.

    ``targeted=True`` follows advkit's convention: ``y`` are target labels, and the attack descends their
    cross-entropy until the model predicts them.

    Args:
        model: ``f(x in [0,1]) -> logits [B, K]``, ``K >= 2``.
        x: inputs ``[B, ...]`` in [0,1]; never modified.
        y: ``[B]`` labels: true labels, or target labels when ``targeted``.
        eps: radius in pixel units of ``norm``.
        norm: ``linf`` or ``l2``.
        steps: iterations per run.
        restarts: runs per target.
        rho: the fraction of loss-raising steps below which the step halves.
        targeted: ``y`` are target labels (see above).
        generator: seeds the random starts of restarts after the first.

    Returns:
        ``x_adv`` with ``x``'s shape and dtype, in the eps-ball around ``x`` and in [0,1].

    Raises:
        AdvkitError: bad eps, norm, counts or inputs.
    """
    return _registered(model, x, y, loss="ce", apgd_t=False, targeted=targeted, eps=eps, norm=norm, steps=steps,
                       restarts=restarts, rho=rho, n_target_classes=1, generator=generator)


@register_attack("apgd-dlr", norms=("linf", "l2"), label=_labeler("APGD-DLR"))
def apgd_dlr(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str = "linf",
             steps: int = 100, restarts: int = 1, rho: float = 0.75, targeted: bool = False,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """APGD on the DLR loss (AutoAttack's APGD-DLR): :func:`apgd` with ``loss="dlr"``.

    ``targeted=True``: ``y`` are target labels, attacked with the targeted DLR loss (see :func:`dlr_loss`).

    Args:
        model: ``f(x in [0,1]) -> logits [B, K]``, ``K >= 2``.
        x: inputs ``[B, ...]`` in [0,1]; never modified.
        y: ``[B]`` labels: true labels, or target labels when ``targeted``.
        eps: radius in pixel units of ``norm``.
        norm: ``linf`` or ``l2``.
        steps: iterations per run.
        restarts: runs per target.
        rho: the fraction of loss-raising steps below which the step halves.
        targeted: ``y`` are target labels (see above).
        generator: seeds the random starts of restarts after the first.

    Returns:
        ``x_adv`` with ``x``'s shape and dtype, in the eps-ball around ``x`` and in [0,1].

    Raises:
        AdvkitError: bad eps, norm, counts or inputs.
    """
    return _registered(model, x, y, loss="dlr", apgd_t=False, targeted=targeted, eps=eps, norm=norm, steps=steps,
                       restarts=restarts, rho=rho, n_target_classes=1, generator=generator)


@register_attack("apgd-t", norms=("linf", "l2"), label=_labeler("APGD-T"))
def apgd_t(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str = "linf",
           steps: int = 100, n_target_classes: int = 9, restarts: int = 1, rho: float = 0.75,
           targeted: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
    """AutoAttack's APGD-T: ``y`` are the true labels; the targeted DLR loss is run towards each of the
    ``n_target_classes`` most likely wrong classes, and a sample counts as broken once misclassified
    (:func:`apgd` with ``loss="dlr", targeted=True``).

    ``targeted=True`` (advkit's convention: ``y`` are target labels) runs the targeted DLR loss towards
    those targets only, as ``apgd-dlr`` does.

    Args:
        model: ``f(x in [0,1]) -> logits [B, K]``, ``K >= 2``.
        x: inputs ``[B, ...]`` in [0,1]; never modified.
        y: ``[B]`` labels: true labels, or target labels when ``targeted``.
        eps: radius in pixel units of ``norm``.
        norm: ``linf`` or ``l2``.
        steps: iterations per run.
        n_target_classes: how many of the most likely wrong classes are targets.
        restarts: runs per target.
        rho: the fraction of loss-raising steps below which the step halves.
        targeted: ``y`` are target labels (see above).
        generator: seeds the random starts of restarts after the first.

    Returns:
        ``x_adv`` with ``x``'s shape and dtype, in the eps-ball around ``x`` and in [0,1].

    Raises:
        AdvkitError: bad eps, norm, counts or inputs.
    """
    return _registered(model, x, y, loss="dlr", apgd_t=True, targeted=targeted, eps=eps, norm=norm, steps=steps,
                       restarts=restarts, rho=rho, n_target_classes=n_target_classes, generator=generator)
