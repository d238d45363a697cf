"""Training objectives: ``objective(model, x, y, *, attack_model=None, generator=None) -> (loss, logits)``.

``get_objective(name, eps=..., ...)`` builds one. ``x`` is a batch in [0,1], ``eps`` is in pixel units of
``norm``. The attack part runs on ``attack_model`` (default ``model``; the trainer passes the module inside a
DDP wrapper) through :mod:`advkit.attacks`, which evaluates it in eval mode, restores its mode and never writes
parameter ``.grad``; the training forward then runs ``model`` in the caller's mode. ``logits`` are the
model's outputs on the inputs it trained on (the clean ones for ``clean``, ``fgsm`` and ``trades``), for train
accuracy. ``loss_fn(logits, y) -> per-sample loss`` (default cross-entropy) is the attack's loss and the
training loss alike, so 2-class detectors and discriminators with their own criterion train unchanged.
"""

from __future__ import annotations

import inspect
import math
import warnings
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from advkit.attacks import LossFn, attack_mode, check_eps, default_loss
from advkit.attacks import fgsm as fgsm_attack
from advkit.attacks import pgd as pgd_attack
from advkit.errors import AdvkitError
from advkit.registry import Registry

Objective = Callable[..., tuple[torch.Tensor, torch.Tensor]]
_OBJECTIVES: Registry[Callable[..., Objective]] = Registry("objective")


def register_objective(name: str) -> Callable[[Callable[..., Objective]], Callable[..., Objective]]:
    """Decorator: register an objective factory under ``name``.

    Args:
        name: the objective's name for :func:`get_objective`.

    Returns:
        A decorator taking a factory ``(**params) -> objective`` (it receives the parameters of
        :func:`get_objective` that it names in its signature) and returning it unchanged.

    Raises:
        KeyError: ``name`` is already registered.
    """
    return _OBJECTIVES.register(name)


def list_objectives() -> list[str]:
    """The names :func:`get_objective` takes, sorted."""
    return _OBJECTIVES.names()


def get_objective(name: str, *, eps: float = 0.0, alpha: float | None = None, steps: int = 10,
                  norm: str = "linf", mix: float = 0.5, beta: float = 6.0,
                  loss_fn: LossFn | None = None, classes: tuple[int, ...] | None = None) -> Objective:
    """The training objective ``name``: ``objective(model, x, y, ...) -> (loss, logits)``.

    Parameters an objective does not use are ignored; a step larger than ``eps`` warns.

    Args:
        name: see :func:`list_objectives`.
        eps: attack radius in [0,1] pixel units of ``norm`` (e.g. 8/255).
        alpha: attack step in pixel units; default ``1.25*eps`` for ``fgsm_rs``, ``2.5*eps/steps`` for
            ``pgd`` and ``trades``.
        steps: attack steps of ``pgd`` and ``trades``.
        norm: ``linf`` or ``l2``.
        mix: weight of the clean term of ``fgsm``, in [0, 1].
        beta: weight of the KL term of ``trades`` (Zhang et al. 2019).
        loss_fn: per-sample loss ``(logits, y) -> [B]``; default cross-entropy.
        classes: harden only the samples of these labels (the others train clean), for one-sided threats
            such as a detector's evasion, where only fakes are pushed across (``(1,)``); default all.

    Returns:
        The objective.

    Raises:
        AdvkitError: an unknown name or a bad value.
    """
    factory = _OBJECTIVES.get(name)
    eps = check_eps(eps, norm)
    if alpha is not None and not (math.isfinite(alpha) and alpha >= 0):
        raise AdvkitError(f"alpha must be finite and >= 0, got {alpha}")
    if not (isinstance(steps, int) and steps >= 1):
        raise AdvkitError(f"steps must be an integer >= 1, got {steps!r}")
    if not 0 <= mix <= 1:
        raise AdvkitError(f"mix must be in [0, 1], got {mix}")
    if not (math.isfinite(beta) and beta >= 0):
        raise AdvkitError(f"beta must be finite and >= 0, got {beta}")
    if classes is not None:
        classes = tuple(classes)
        if not classes or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in classes):
            raise AdvkitError(f"classes must be a non-empty list of labels >= 0, got {list(classes)!r}")
        if name == "clean":
            raise AdvkitError("classes selects the samples an adversarial objective hardens; 'clean' has none")
    # fgsm_rs steps 1.25*eps from a random start by design (Wong et al.); beyond 2*eps it only clips.
    limit = 2 * eps if name == "fgsm_rs" else eps
    if alpha is not None and alpha > limit and name in ("fgsm_rs", "pgd", "trades"):
        warnings.warn(f"{name}: attack step alpha={alpha} is larger than {'2*' if name == 'fgsm_rs' else ''}"
                      f"eps={eps}", UserWarning, stacklevel=2)
    params = dict(eps=eps, alpha=alpha, steps=steps, norm=norm, mix=mix, beta=beta,
                  loss_fn=loss_fn or default_loss, classes=classes)
    wanted = inspect.signature(factory).parameters
    return factory(**{k: v for k, v in params.items() if k in wanted})


def _selected(y: torch.Tensor, classes: tuple[int, ...] | None) -> torch.Tensor | None:
    """The samples an objective hardens: a bool mask over the batch, or None for all of them."""
    if classes is None:
        return None
    return torch.isin(y, torch.tensor(classes, device=y.device, dtype=y.dtype))


def _perturb_selected(attack: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
                      y: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``attack(x, y)`` on the selected samples; the others stay clean."""
    if mask is None:
        return attack(x, y)
    x_adv = x.detach().clone()
    if mask.any():
        x_adv[mask] = attack(x[mask], y[mask])
    return x_adv


def _adversarial(loss_fn: LossFn, classes: tuple[int, ...] | None = None, **attack_kw) -> Objective:
    """Train on ``advkit.attacks.pgd(**attack_kw)`` inputs only (fgsm_rs and pgd); with ``classes``, only
    the samples of those labels are attacked."""
    def objective(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, attack_model: nn.Module | None = None,
                  generator: torch.Generator | None = None):
        attacked = model if attack_model is None else attack_model
        x_adv = _perturb_selected(lambda xs, ys: pgd_attack(attacked, xs, ys, loss=loss_fn, generator=generator,
                                                            **attack_kw), x, y, _selected(y, classes))
        logits = model(x_adv)
        return loss_fn(logits, y).mean(), logits
    return objective


@register_objective("clean")
def clean(loss_fn: LossFn = default_loss) -> Objective:
    """Standard training on clean inputs.

    Args:
        loss_fn: per-sample loss ``(logits, y) -> [B]``.

    Returns:
        The objective ``(model, x, y, *, attack_model=None, generator=None) -> (loss, logits)``.
    """
    def objective(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, attack_model: nn.Module | None = None,
                  generator: torch.Generator | None = None):
        logits = model(x)
        return loss_fn(logits, y).mean(), logits
    return objective


@register_objective("fgsm")
def fgsm(eps: float, norm: str = "linf", mix: float = 0.5, loss_fn: LossFn = default_loss,
         classes: tuple[int, ...] | None = None) -> Objective:
    """Goodfellow et al. 2015: ``mix*J(x) + (1-mix)*J(x + eps*sign(grad_x J))``. Defends FGSM and falls to
    iterative attacks. The objective returns the clean logits.

    Args:
        eps: attack radius in [0,1] pixel units of ``norm``.
        norm: ``linf`` only.
        mix: weight of the clean term, in [0, 1].
        loss_fn: per-sample loss ``(logits, y) -> [B]``.
        classes: harden only the samples of these labels; default all.

    Returns:
        The objective ``(model, x, y, *, attack_model=None, generator=None) -> (loss, logits)``.

    Raises:
        AdvkitError: a norm other than ``linf``.
    """
    if norm != "linf":
        raise AdvkitError(f"fgsm is an L-inf objective, got norm={norm!r} (use pgd for l2)")

    def objective(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, attack_model: nn.Module | None = None,
                  generator: torch.Generator | None = None):
        attacked = model if attack_model is None else attack_model
        x_adv = _perturb_selected(lambda xs, ys: fgsm_attack(attacked, xs, ys, eps=eps, loss=loss_fn), x, y,
                                  _selected(y, classes))
        logits = model(x)
        loss = mix * loss_fn(logits, y).mean() + (1 - mix) * loss_fn(model(x_adv), y).mean()
        return loss, logits
    return objective


@register_objective("fgsm_rs")
def fgsm_rs(eps: float, alpha: float | None = None, norm: str = "linf",
            loss_fn: LossFn = default_loss, classes: tuple[int, ...] | None = None) -> Objective:
    """Fast adversarial training (Wong, Rice, Kolter 2020): a uniform random start in the eps-ball, one
    step of ``alpha``, projected to the ball and [0,1]. The catastrophic-overfitting guard is the trainer's.

    Args:
        eps: attack radius in [0,1] pixel units of ``norm``.
        alpha: attack step in pixel units; default ``1.25*eps``.
        norm: ``linf`` or ``l2``.
        loss_fn: per-sample loss ``(logits, y) -> [B]``.
        classes: harden only the samples of these labels; default all.

    Returns:
        The objective ``(model, x, y, *, attack_model=None, generator=None) -> (loss, logits)``.
    """
    # box_start=False: the reference code takes the gradient at the unclipped random start; clipping the start
    # to [0,1] first trained far less robust MNIST models
    return _adversarial(loss_fn, classes, eps=eps, alpha=1.25 * eps if alpha is None else alpha, steps=1,
                        norm=norm, random_start=True, box_start=False)


@register_objective("pgd")
def pgd(eps: float, alpha: float | None = None, steps: int = 10, norm: str = "linf",
        loss_fn: LossFn = default_loss, classes: tuple[int, ...] | None = None) -> Objective:
    """Madry et al. 2018: train on PGD-``steps`` inputs (uniform random start in the eps-ball).

    Args:
        eps: attack radius in [0,1] pixel units of ``norm``.
        alpha: attack step in pixel units; default ``2.5*eps/steps``.
        steps: PGD steps.
        norm: ``linf`` or ``l2``.
        loss_fn: per-sample loss ``(logits, y) -> [B]``.
        classes: harden only the samples of these labels; default all.

    Returns:
        The objective ``(model, x, y, *, attack_model=None, generator=None) -> (loss, logits)``.
    """
    return _adversarial(loss_fn, classes, eps=eps, alpha=alpha, steps=steps, norm=norm, random_start=True)


def _kl(logits_adv: torch.Tensor, p_clean: torch.Tensor) -> torch.Tensor:
    """Per-sample ``KL(p_clean || softmax(logits_adv))``, in fp32."""
    return F.kl_div(F.log_softmax(logits_adv.float(), 1), p_clean, reduction="none").sum(1)


@register_objective("trades")
def trades(eps: float, alpha: float | None = None, steps: int = 10, norm: str = "linf", beta: float = 6.0,
           loss_fn: LossFn = default_loss, classes: tuple[int, ...] | None = None) -> Objective:
    """TRADES (Zhang et al. 2019): ``loss_fn(f(x), y) + beta * KL(softmax(f(x)) || softmax(f(x_adv)))``,
    KL averaged over the batch, where ``x_adv`` maximizes the KL by PGD. Returns the clean logits.

    The attack's target distribution is the model's on clean ``x`` in eval mode, as in the paper's code.
    The KL gradient is exactly zero at ``x_adv = x``, so PGD needs a random start; TRADES used
    ``x + 0.001*randn``, we use PGD's uniform start in the eps-ball (``generator`` seeds it). With
    ``classes`` the KL term covers only the samples of those labels, averaged over them.

    Args:
        eps: attack radius in [0,1] pixel units of ``norm``.
        alpha: attack step in pixel units; default ``2.5*eps/steps``.
        steps: PGD steps.
        norm: ``linf`` or ``l2``.
        beta: weight of the KL term.
        loss_fn: per-sample loss ``(logits, y) -> [B]``.
        classes: put only the samples of these labels in the KL term; default all.

    Returns:
        The objective ``(model, x, y, *, attack_model=None, generator=None) -> (loss, logits)``.
    """
    def objective(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, attack_model: nn.Module | None = None,
                  generator: torch.Generator | None = None):
        attack_model = model if attack_model is None else attack_model
        mask = _selected(y, classes)
        xs, ys = (x, y) if mask is None else (x[mask], y[mask])
        x_adv = None
        if len(xs):
            with torch.no_grad(), attack_mode(attack_model):
                p_clean = F.softmax(attack_model(xs).float(), 1)
            x_adv = pgd_attack(attack_model, xs, ys, eps=eps, alpha=alpha, steps=steps, norm=norm, random_start=True,
                               loss=lambda logits, _: _kl(logits, p_clean), generator=generator)
        logits = model(x)
        if x_adv is None:  # no sample of the hardened classes in this batch
            kl = logits.float().new_zeros(())
        else:
            p_model = F.softmax(logits.float(), 1)
            kl = _kl(model(x_adv), p_model if mask is None else p_model[mask]).mean()
        return loss_fn(logits, y).mean() + beta * kl, logits
    return objective
