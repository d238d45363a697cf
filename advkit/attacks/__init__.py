"""Attacks in pixel space on models ``f(x in [0,1]) -> logits``.

``fgsm`` and ``pgd`` are plain functions; :func:`get_attack` gives any registered attack (including
every foolbox 3 attack as ``foolbox:NAME``) behind one signature::

    attack = get_attack("pgd", steps=20)
    x_adv = attack(model, x, y, eps=8/255)
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from advkit.attacks._common import NORMS, attack_mode, per_sample_norm
from advkit.attacks.fgsm import fgsm
from advkit.attacks.foolbox_bridge import foolbox_attack_names, foolbox_norm, run_foolbox
from advkit.attacks.pgd import pgd
from advkit.attacks.square import square
from advkit.errors import AdvkitError
from advkit.registry import Registry

__all__ = ["fgsm", "pgd", "square", "Attack", "get_attack", "list_attacks", "register_attack",
           "per_sample_norm", "attack_mode", "NORMS"]

_ATTACKS: Registry[Callable[..., torch.Tensor]] = Registry("attack")


def register_attack(name: str):
    """Register ``fn(model, x, y, *, eps, targeted=False, ...) -> x_adv``."""
    return _ATTACKS.register(name)


_ATTACKS.add("fgsm", fgsm)
_ATTACKS.add("pgd", pgd)
_ATTACKS.add("square", square)


@dataclass(frozen=True)
class Attack:
    """A configured attack: ``attack(model, x, y, *, eps, targeted=False, generator=None) -> x_adv``.

    ``norm`` is the norm ``eps`` is measured in; ``kwargs`` are the attack's own parameters.
    """

    name: str
    norm: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    fn: Callable[..., torch.Tensor] | None = None

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float,
                 targeted: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.name.startswith("foolbox:"):
            return run_foolbox(self.name[8:], model, x, y, eps=eps, targeted=targeted, generator=generator,
                               **self.kwargs)
        extra = {"generator": generator} if "generator" in inspect.signature(self.fn).parameters else {}
        return self.fn(model, x, y, eps=eps, targeted=targeted, **self.kwargs, **extra)


def list_attacks(include_foolbox: bool = True) -> list[str]:
    """Registered attack names, then ``foolbox:NAME`` for every foolbox attack."""
    return _ATTACKS.names() + ([f"foolbox:{n}" for n in foolbox_attack_names()] if include_foolbox else [])


def get_attack(name: str, **kwargs: Any) -> Attack:
    """The attack ``name`` configured with ``kwargs`` (``steps=``, ``norm=``, ...). Unknown names, and
    parameters the attack does not take, raise with the valid choices."""
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if name.startswith("foolbox:"):
        return Attack(name, foolbox_norm(name[8:], **kwargs), kwargs)
    if name not in _ATTACKS:
        raise AdvkitError(_ATTACKS.unknown_message(name, ["foolbox:NAME"]))
    fn = _ATTACKS.get(name)
    params = inspect.signature(fn).parameters
    own = [p for p in params if p not in ("model", "x", "y", "eps", "targeted", "generator")]
    bad = sorted(set(kwargs) - set(own))
    if bad:
        raise AdvkitError(f"attack {name!r} takes no parameter {', '.join(bad)}; valid: {', '.join(own)}")
    norm = kwargs.get("norm", params["norm"].default if "norm" in params else "linf")
    if norm not in NORMS:
        raise AdvkitError(f"unknown norm {norm!r}; valid: {', '.join(NORMS)}")
    return Attack(name, norm, kwargs, fn)
