"""Any foolbox 3 attack as ``foolbox:NAME``, behind advkit's attack signature.

The model is wrapped as a foolbox ``PyTorchModel`` with bounds (0, 1); the result is foolbox's
``clipped`` output, so minimum-norm attacks (C&W, DeepFool, Boundary) are projected onto the eps-ball.
"""

from __future__ import annotations

import difflib
import inspect
import math
from functools import lru_cache

import torch
from torch import nn

from advkit.attacks._common import attack_mode, check_inputs, check_labels
from advkit.errors import AdvkitError

# Not an attack on its own: needs to be fed a dataset of other samples first.
_EXCLUDED = {"DatasetAttack"}


@lru_cache(maxsize=1)
def foolbox_attack_names() -> tuple[str, ...]:
    """Every concrete attack class foolbox exports (aliases such as ``PGD`` included)."""
    try:
        import foolbox
    except ImportError:  # foolbox is a dependency, but keep the native attacks usable without it
        return ()
    base = foolbox.attacks.base.Attack
    names = [n for n, c in vars(foolbox.attacks).items()
             if isinstance(c, type) and issubclass(c, base) and not inspect.isabstract(c) and n not in _EXCLUDED]
    return tuple(sorted(names))


def _norm_of(attack) -> str:
    """advkit's name for the norm foolbox measures the attack in."""
    import foolbox

    dist = getattr(attack, "distance", None)
    p = getattr(dist, "p", None) if isinstance(dist, foolbox.distances.LpDistance) else None
    return {math.inf: "linf", 2: "l2", 1: "l1", 0: "l0"}.get(p, "linf" if p is None else f"l{p}")


def make_foolbox_attack(name: str, **kwargs):
    """Instantiate ``foolbox.attacks.<name>(**kwargs)``; unknown names list the valid ones."""
    names = foolbox_attack_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" (did you mean 'foolbox:{close[0]}'?)" if close else ""
        raise AdvkitError(f"unknown foolbox attack {name!r}{hint}; valid: "
                          f"{', '.join('foolbox:' + n for n in names)}")
    import foolbox

    try:
        return getattr(foolbox.attacks, name)(**kwargs)
    except TypeError as e:
        raise AdvkitError(f"foolbox:{name}: {e}") from None


def foolbox_norm(name: str, **kwargs) -> str:
    return _norm_of(make_foolbox_attack(name, **kwargs))


def run_foolbox(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float,
                targeted: bool = False, generator: torch.Generator | None = None, **kwargs) -> torch.Tensor:
    """Run foolbox attack ``name`` at ``eps`` (pixel units, in the attack's own norm).

    Foolbox draws its randomness from torch's global RNG; with ``generator`` the run is seeded from it
    inside a forked RNG, so results repeat and the caller's global RNG is untouched.
    """
    import foolbox

    attack = make_foolbox_attack(name, **kwargs)
    check_inputs(x, y)
    eps = float(eps)
    if not math.isfinite(eps) or eps < 0:
        raise AdvkitError(f"eps must be finite and >= 0, got {eps}")
    x0 = x.detach().float().contiguous()
    with attack_mode(model):
        with torch.no_grad():
            check_labels(model(x0[:1]), y)  # only the class count is needed
        fmodel = foolbox.PyTorchModel(model, bounds=(0, 1), device=x0.device)
        criterion = (foolbox.criteria.TargetedMisclassification(y) if targeted
                     else foolbox.criteria.Misclassification(y))
        devices = [x0.device] if x0.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, enabled=generator is not None):
            if generator is not None:
                torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator,
                                                    device=generator.device)))
            try:
                _, clipped, _ = attack(fmodel, x0, criterion, epsilons=eps)
            except (NotImplementedError, ValueError) as e:
                raise AdvkitError(f"foolbox:{name} cannot run here: {e}") from None
    return clipped.detach().to(x.dtype)
