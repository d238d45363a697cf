"""Attacks in pixel space on models ``f(x in [0,1]) -> logits``.

``fgsm`` and ``pgd`` are plain functions; :func:`get_attack` gives any registered attack (including
every foolbox 3 attack as ``foolbox:NAME``) behind one signature::

    attack = get_attack("pgd", steps=20)
    x_adv = attack(model, x, y, eps=8/255)
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from advkit.attacks.apgd import apgd
from advkit.attacks.base import ATTACKS, AttackInfo, register_attack
from advkit.attacks.common import NORMS, LossFn, attack_mode, check_eps, default_loss, per_sample_norm
from advkit.attacks.fab import fab_t
from advkit.attacks.fgsm import fgsm
from advkit.attacks.foolbox_bridge import FOOLBOX, foolbox_attack_names, foolbox_info, foolbox_norm, run_foolbox
from advkit.attacks.pgd import pgd
from advkit.attacks.presets import PRESETS, is_preset, preset_members, run_cascade
from advkit.attacks.square import square
from advkit.attacks.targets import TARGET_MODES, pick_targets
from advkit.errors import AdvkitError
from advkit.registry import split_name

__all__ = ["apgd", "fgsm", "pgd", "square", "fab_t", "Attack", "AttackInfo", "get_attack", "list_attacks",
           "register_attack", "PRESETS", "is_preset", "preset_members", "run_cascade",
           "attack_info", "per_sample_norm", "attack_mode", "check_eps", "default_loss", "LossFn", "NORMS",
           "FOOLBOX", "TARGET_MODES", "pick_targets"]


@dataclass(frozen=True)
class Attack:
    """A configured attack: ``attack(model, x, y, *, eps, targeted=False, generator=None) -> x_adv``.

    ``norm`` is the norm ``eps`` is measured in; ``kwargs`` are the attack's own parameters; ``info`` holds
    what the attack declares about itself (see :class:`AttackInfo`).
    """

    name: str
    norm: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    fn: Callable[..., torch.Tensor] | None = None
    info: AttackInfo | None = None

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float,
                 targeted: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        fn = self.fn if self.fn is not None else get_attack(self.name, **self.kwargs).fn
        if fn is None:  # get_attack always sets fn; a hand-built Attack may not
            raise AdvkitError(f"attack {self.name!r} has no function to run")
        extra = {"generator": generator} if "generator" in inspect.signature(fn).parameters else {}
        return fn(model, x, y, eps=eps, targeted=targeted, **self.kwargs, **extra)

    @property
    def gradient_free(self) -> bool:
        """The attack never reads a gradient."""
        return (self.info or attack_info(self.name)).gradient_free

    @property
    def label(self) -> str:
        """The label reports use for this configuration (``PGD-50x5``)."""
        return (self.info or attack_info(self.name)).label(self.kwargs)


def list_attacks(include_foolbox: bool = True) -> list[str]:
    """Every attack name :func:`get_attack` takes.

    Args:
        include_foolbox: also list ``foolbox:NAME`` for every foolbox attack.

    Returns:
        The registered (native and preset) names, sorted, then the foolbox ones.
    """
    return ATTACKS.names() + ([FOOLBOX.join(n) for n in foolbox_attack_names()] if include_foolbox else [])


def attack_info(name: str) -> AttackInfo:
    """What attack ``name`` declares about itself: its norms, whether it is gradient-free, its label.

    Args:
        name: an attack name as :func:`get_attack` takes it.

    Returns:
        Its :class:`AttackInfo`.

    Raises:
        AdvkitError: ``name`` is not an attack (the message lists the valid ones).
    """
    family, rest = split_name(name, kind="attack")
    if family is FOOLBOX:
        return foolbox_info(rest)
    if name not in ATTACKS:
        raise AdvkitError(ATTACKS.unknown_message(name, [FOOLBOX.join(FOOLBOX.help)]))
    return ATTACKS.get(name).info


def get_attack(name: str, **kwargs: Any) -> Attack:
    """The attack ``name`` configured with ``kwargs``.

    Args:
        name: a registered attack (``pgd``, ``apgd-ce``, a preset such as ``autoattack``) or ``foolbox:NAME``.
        kwargs: the attack's own parameters (``steps=``, ``norm=``, ...); ``None`` values are dropped, so unset
            CLI options keep the attack's defaults.

    Returns:
        A callable :class:`Attack`: ``attack(model, x, y, *, eps, targeted=False, generator=None) -> x_adv``.

    Raises:
        AdvkitError: an unknown name, a parameter the attack does not take, or a norm it does not work in
            (each message lists the valid choices).
    """
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    info = attack_info(name)
    family, rest = split_name(name, kind="attack")
    if family is FOOLBOX:
        return Attack(name, foolbox_norm(rest, **kwargs), kwargs, functools.partial(run_foolbox, rest), info)
    fn = ATTACKS.get(name).fn
    params = inspect.signature(fn).parameters
    own = [p for p in params if p not in ("model", "x", "y", "eps", "targeted", "generator")]
    bad = sorted(set(kwargs) - set(own))
    if bad:
        raise AdvkitError(f"attack {name!r} takes no parameter {', '.join(bad)}; valid: {', '.join(own)}")
    norm = kwargs.get("norm", params["norm"].default if "norm" in params else info.norms[0])
    if norm not in NORMS:
        raise AdvkitError(f"unknown norm {norm!r}; valid: {', '.join(NORMS)}")
    if norm not in info.norms:
        raise AdvkitError(f"attack {name!r} works in {', '.join(info.norms)}, not {norm}")
    return Attack(name, norm, kwargs, fn, info)
