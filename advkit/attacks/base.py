"""The attack registry: each attack registers itself with the facts the rest of advkit asks about (the norms
it measures eps in, whether it ever reads a gradient, how reports label it), timm-style."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

import torch

from advkit.attacks.common import NORMS
from advkit.registry import Registry

AttackFn = Callable[..., torch.Tensor]
Labeler = Callable[[dict[str, Any]], str]


@dataclass(frozen=True)
class AttackInfo:
    """What an attack declares about itself.

    ``norms``: the norms its ``eps`` can be measured in (the first is the default). ``gradient_free``: it only
    reads the model's outputs, never a gradient (the gradient-masking check compares such attacks with the
    white-box ones). ``takes_norm``: a ``norm=`` parameter picks one of ``norms``. ``labeler``: the report label
    for a configuration (``PGD-50x5``); without one the label is ``title``.
    """

    name: str
    norms: tuple[str, ...]
    gradient_free: bool = False
    takes_norm: bool = False
    title: str = ""
    labeler: Labeler | None = None

    def label(self, params: dict[str, Any]) -> str:
        """The label reports use for this attack run with ``params``."""
        return self.labeler(params) if self.labeler else (self.title or self.name)


@dataclass(frozen=True)
class Registered:
    """A native attack: its function and its facts."""

    fn: AttackFn
    info: AttackInfo


ATTACKS: Registry[Registered] = Registry("attack")


def register_attack(name: str, *, norms: tuple[str, ...] | None = None, gradient_free: bool = False,
                    label: Labeler | None = None) -> Callable[[AttackFn], AttackFn]:
    """Register ``fn(model, x, y, *, eps, targeted=False, ...) -> x_adv`` under ``name``.

    Args:
        name: the registry name (``pgd``).
        norms: the norms ``eps`` may be measured in, default first. Default: every advkit norm when ``fn``
            takes ``norm=`` (its default first), else ``linf`` only.
        gradient_free: ``fn`` never reads a gradient (score- or decision-based).
        label: ``params -> label`` for reports; default: ``name``.

    Returns:
        A decorator that registers ``fn`` and returns it unchanged.

    Raises:
        KeyError: ``name`` is already registered.
        ValueError: several norms declared for a function without a ``norm`` parameter, or a default
            ``norm`` that is not among the declared ones.
    """
    def deco(fn: AttackFn) -> AttackFn:
        params = inspect.signature(fn).parameters
        takes_norm = "norm" in params
        default = params["norm"].default if takes_norm else "linf"
        declared = tuple(norms) if norms else ((default, *[n for n in NORMS if n != default]) if takes_norm
                                               else ("linf",))
        if len(declared) > 1 and not takes_norm:
            raise ValueError(f"attack {name!r} declares norms {declared} but has no 'norm' parameter")
        if takes_norm and default not in declared:
            raise ValueError(f"attack {name!r}: its default norm {default!r} is not among its norms {declared}")
        ATTACKS.add(name, Registered(fn, AttackInfo(name, declared, gradient_free, takes_norm, name, label)))
        return fn

    return deco
