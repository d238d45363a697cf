"""Any foolbox 3 attack as ``foolbox:NAME`` (the :data:`FOOLBOX` family), behind advkit's attack signature.

The model is wrapped as a foolbox ``PyTorchModel`` with bounds (0, 1); the result is foolbox's
``clipped`` output, so minimum-norm attacks (C&W, DeepFool, Boundary) are projected onto the eps-ball.
"""

from __future__ import annotations

import difflib
import inspect
import logging
import math
import typing
from functools import cache, lru_cache
from typing import Any

import numpy as np
import torch
from torch import nn

from advkit.attacks.base import AttackInfo
from advkit.attacks.common import (
    DISTANCES,
    as_fp32,
    attack_mode,
    check_eps,
    check_inputs,
    check_labels,
    to_caller_dtype,
    usable,
)
from advkit.errors import AdvkitError
from advkit.registry import register_family

log = logging.getLogger(__name__)

# the one spelling of the prefix: every foolbox name is FOOLBOX.join(NAME)
FOOLBOX = register_family("foolbox", "attack", "NAME")

# Not attacks on their own: DatasetAttack must be fed other samples first; BinarizationRefinementAttack
# refines the result of another attack (it needs its starting points). PointwiseAttack fails inside
# foolbox 3.3.4 itself (it reads a `_distance` it never sets).
_EXCLUDED = {"DatasetAttack", "BinarizationRefinementAttack", "PointwiseAttack"}
# The Brendel-Bethge attacks need numba, an optional dependency: listed only when it is installed.
_NEEDS_NUMBA = {"L0BrendelBethgeAttack", "L1BrendelBethgeAttack", "L2BrendelBethgeAttack",
                "LinfinityBrendelBethgeAttack"}
TARGETED_ONLY = {"GenAttack"}
# foolbox's score- and decision-based families, which only read the model's outputs. GenAttack, SpatialAttack
# and L2ContrastReductionAttack read no gradient either but have always been counted as white-box here;
# they stay so, since moving them would change the gradient-free check of existing reports.
_GRADIENT_FREE = ("BaseAdditiveNoiseAttack", "BaseRepeatedAdditiveNoiseAttack", "SaltAndPepperNoiseAttack",
                  "LinearSearchBlendedUniformNoiseAttack", "GaussianBlurAttack", "LinearSearchContrastReductionAttack",
                  "BinarySearchContrastReductionAttack", "InversionAttack", "BoundaryAttack", "HopSkipJumpAttack")


@lru_cache(maxsize=1)
def foolbox_attack_names() -> tuple[str, ...]:
    """Every concrete attack class foolbox exports (aliases such as ``PGD`` included).

    Returns:
        The class names, sorted; empty when foolbox is not installed.
    """
    try:
        import foolbox
    except ImportError:  # foolbox is a dependency, but keep the native attacks usable without it
        return ()
    import importlib.util

    skip = _EXCLUDED | (set() if importlib.util.find_spec("numba") else _NEEDS_NUMBA)
    base = foolbox.attacks.base.Attack
    names = [n for n, c in vars(foolbox.attacks).items()
             if isinstance(c, type) and issubclass(c, base) and not inspect.isabstract(c) and n not in skip]
    return tuple(sorted(names))


def _norm_of(attack) -> str:
    """advkit's name for the norm foolbox measures the attack in."""
    import foolbox

    dist = getattr(attack, "distance", None)
    p = getattr(dist, "p", None) if isinstance(dist, foolbox.distances.LpDistance) else None
    if p is None:  # an attack without an Lp distance is counted as L-inf
        return "linf"
    return {math.inf: "linf", 2: "l2", 1: "l1", 0: "l0"}.get(p, f"l{p}")


def _foolbox_class(name: str) -> type[Any]:
    """``foolbox.attacks.<name>``; unknown names list the valid ones."""
    names = foolbox_attack_names()
    if name in _NEEDS_NUMBA and name not in names:
        raise AdvkitError(f"{FOOLBOX.join(name)} needs numba: pip install numba")
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" (did you mean '{FOOLBOX.join(close[0])}'?)" if close else ""
        raise AdvkitError(f"unknown foolbox attack {name!r}{hint}; valid: "
                          f"{', '.join(FOOLBOX.join(n) for n in names)}")
    import foolbox

    return getattr(foolbox.attacks, name)


def make_foolbox_attack(name: str, **kwargs: Any) -> Any:
    """Instantiate ``foolbox.attacks.<name>(**kwargs)``.

    Args:
        name: the foolbox class name (``LinfDeepFoolAttack``).
        **kwargs: the class's parameters; ``distance`` (for attacks that take one) is advkit's norm name
            (``l2``, the default, ``linf``, ``l1``, ``l0``).

    Returns:
        The foolbox attack object.

    Raises:
        AdvkitError: an unknown name (the message lists the valid ones), an attack that needs numba, an
            unknown distance, or parameters the class does not take.
    """
    cls = _foolbox_class(name)
    if "distance" in inspect.signature(cls.__init__).parameters:
        import foolbox

        # attacks that measure in a norm of the caller's choosing: name it as advkit does (default l2)
        dist = kwargs.pop("distance", "l2")
        if dist not in DISTANCES:
            raise AdvkitError(f"{FOOLBOX.join(name)}: distance must be one of {', '.join(DISTANCES)}, "
                              f"got {dist!r}")
        kwargs["distance"] = getattr(foolbox.distances, dist)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise AdvkitError(f"{FOOLBOX.join(name)}: {e}") from None


def _literal_choices(annotation) -> set[str]:
    """The strings a ``Literal[...]`` (or a Union of them) allows."""
    if typing.get_origin(annotation) is typing.Literal:
        return {a for a in typing.get_args(annotation) if isinstance(a, str)}
    return set().union(*(_literal_choices(a) for a in typing.get_args(annotation)))


def _declared_norms(cls: type[Any]) -> tuple[str, ...]:
    params = inspect.signature(cls.__init__).parameters
    if "distance" in params:  # any norm, chosen with distance=
        return DISTANCES
    if "constraint" in params:  # HopSkipJump: constraint="l2" or "linf"
        choices = _literal_choices(params["constraint"].annotation)
        return tuple(d for d in DISTANCES if d in choices)
    try:
        return (_norm_of(cls()),)
    except TypeError:  # a required argument (VirtualAdversarialAttack's steps): the class attribute says it
        return (_norm_of(cls),)


@cache
def foolbox_info(name: str) -> AttackInfo:
    """The facts of a foolbox attack, read from its class.

    Args:
        name: the foolbox class name.

    Returns:
        Its norms, and whether it is one of foolbox's score- or decision-based families (gradient-free);
        reports label it by its foolbox name.

    Raises:
        AdvkitError: an unknown name.
    """
    cls = _foolbox_class(name)
    gradient_free = any(b.__name__ in _GRADIENT_FREE for b in cls.__mro__)
    return AttackInfo(FOOLBOX.join(name), _declared_norms(cls), gradient_free, takes_norm=False, title=name)


def foolbox_norm(name: str, **kwargs: Any) -> str:
    """The norm a configured foolbox attack measures eps in.

    Args:
        name: the foolbox class name.
        **kwargs: its parameters (see :func:`make_foolbox_attack`).

    Returns:
        advkit's name of the norm (``linf``, ``l2``, ...).

    Raises:
        AdvkitError: as :func:`make_foolbox_attack`.
    """
    return _norm_of(make_foolbox_attack(name, **kwargs))


def run_foolbox(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float,
                targeted: bool = False, generator: torch.Generator | None = None, **kwargs: Any) -> torch.Tensor:
    """Run a foolbox attack behind advkit's attack signature.

    Foolbox draws its randomness from torch's and numpy's global RNGs; with ``generator`` both are seeded
    from it for the run and restored afterwards, so results repeat and the caller's RNGs are untouched.

    Args:
        name: the foolbox class name.
        model: a classifier ``f(x in [0,1]) -> logits [B, K]`` (wrapped with bounds (0, 1)).
        x: inputs [B, ...] in [0,1], any float dtype.
        y: labels [B] (targeted: the target classes).
        eps: the radius, in pixel units of the attack's own norm, checked as the native attacks check it (an
            L-inf eps above 1 is refused).
        targeted: reach the classes ``y`` instead of leaving them.
        generator: seeds foolbox's randomness for this run.
        **kwargs: the attack class's parameters (see :func:`make_foolbox_attack`).

    Returns:
        Foolbox's clipped result (minimum-norm attacks projected onto the eps-ball) in ``x``'s shape and
        dtype; samples with non-finite results come back unchanged.

    Raises:
        AdvkitError: a bad name, parameters, eps or inputs, a targeted-only attack run untargeted, or an
            attack that cannot run on this model or device.
    """
    import foolbox

    attack = make_foolbox_attack(name, **kwargs)
    if name in TARGETED_ONLY and not targeted:
        raise AdvkitError(f"{FOOLBOX.join(name)} supports targeted attacks only: pass targeted=True (--targeted) "
                          f"with target labels")
    check_inputs(x, y)
    eps = check_eps(eps, _norm_of(attack), norms=DISTANCES)  # the native attacks' check, in foolbox's norm
    with attack_mode(model):
        x0, y = as_fp32(x).contiguous(), usable(y)
        with torch.no_grad():
            check_labels(model(x0[:1]), y)  # only the class count is needed
        fmodel = foolbox.PyTorchModel(model, bounds=(0, 1), device=x0.device)
        devices = [x0.device] if x0.device.type == "cuda" else []
        np_state = np.random.get_state() if generator is not None else None
        with torch.random.fork_rng(devices=devices, enabled=generator is not None):
            if generator is not None:
                seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
                torch.manual_seed(seed)
                np.random.seed(seed % 2**32)
            try:
                clipped = _run(attack, fmodel, x0, y, targeted, eps)
            except (NotImplementedError, ValueError) as e:
                raise AdvkitError(f"{FOOLBOX.join(name)} cannot run here: {e}") from None
            finally:
                if np_state is not None:
                    np.random.set_state(np_state)
    clipped = clipped.detach()
    bad = ~torch.isfinite(clipped).flatten(1).all(1)
    if bad.any():  # e.g. VirtualAdversarialAttack normalizing a zero gradient: no attack, not NaN
        log.warning("%s produced non-finite values for %d sample(s); returned unchanged",
                    FOOLBOX.join(name), int(bad.sum()))
        clipped = torch.where(bad.view(-1, *[1] * (x0.ndim - 1)), x0, clipped)
    return to_caller_dtype(clipped, x)


def _criterion(y: torch.Tensor, targeted: bool):
    import foolbox

    return foolbox.criteria.TargetedMisclassification(y) if targeted else foolbox.criteria.Misclassification(y)


def _run(attack, fmodel, x: torch.Tensor, y: torch.Tensor, targeted: bool, eps: float) -> torch.Tensor:
    """Decision-based attacks (Boundary, HopSkipJump) need an adversarial starting point for every sample and
    fail the whole batch when their init attack finds none; then each sample runs alone, and a sample with
    no starting point is returned unchanged: that attack did not fool it."""
    try:
        return attack(fmodel, x, _criterion(y, targeted), epsilons=eps)[1]
    except ValueError as e:
        if "init_attack failed" not in str(e) or x.shape[0] == 1:
            raise
    out, skipped = [], 0
    for i in range(x.shape[0]):
        try:
            out.append(attack(fmodel, x[i:i + 1], _criterion(y[i:i + 1], targeted), epsilons=eps)[1])
        except ValueError as e:
            if "init_attack failed" not in str(e):
                raise
            out.append(x[i:i + 1])
            skipped += 1
    log.info("%s: no adversarial starting point for %d of %d samples; returned unchanged",
             type(attack).__name__, skipped, x.shape[0])
    return torch.cat(out)
