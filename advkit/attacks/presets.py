"""Attack presets: named suites that run as one attack, usable wherever an attack name is.

``autoattack`` is AutoAttack's ``standard`` version (Croce & Hein 2020, ICML, "Reliable evaluation of
adversarial robustness with an ensemble of diverse parameter-free attacks"): APGD-CE, APGD-T, FAB-T and
Square, each run only on the samples the previous ones left standing. ``autoattack-fast`` keeps the two APGD
attacks, which find almost all of what the full suite finds at a fraction of the cost.

Called as an attack (``get_attack("autoattack")(model, x, y, eps=8/255)``) a preset runs its cascade itself
and returns the worst case; an eval config expands it into its members instead, so the report shows each
member and the harness's cascade skips the samples already fooled.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from advkit.attacks.base import ATTACKS, register_attack
from advkit.attacks.common import as_fp32, attack_mode, check_eps, check_inputs, check_labels, to_caller_dtype, usable
from advkit.errors import AdvkitError

# AutoAttack standard's parameters (L-inf and L2 alike): APGD-CE 100 steps, 1 restart; APGD-T 100 steps,
# 9 targets; FAB-T 9 targets, 100 steps; Square 5000 queries from p_init 0.8, its p schedule at the absolute
# iterations of a 10,000-query run (not stretched to 5000: the reference's resc_schedule=False).
PRESETS: dict[str, tuple[tuple[str, dict[str, Any]], ...]] = {
    "autoattack": (("apgd-ce", {"steps": 100, "restarts": 1}),
                   ("apgd-t", {"steps": 100, "n_target_classes": 9}),
                   ("fab-t", {"steps": 100, "n_target_classes": 9}),
                   ("square", {"n_queries": 5000, "p_init": 0.8, "rescale_schedule": False})),
    "autoattack-fast": (("apgd-ce", {"steps": 100, "restarts": 1}),
                        ("apgd-t", {"steps": 100, "n_target_classes": 9})),
}
_TITLES = {"autoattack": "AutoAttack", "autoattack-fast": "AutoAttack-fast"}


def is_preset(name: str) -> bool:
    """Whether ``name`` is a preset (a suite of attacks), not a single attack.

    Args:
        name: an attack name.

    Returns:
        ``True`` for ``autoattack`` and ``autoattack-fast``.
    """
    return name in PRESETS


def preset_members(name: str, norm: str = "linf") -> list[dict[str, Any]]:
    """The attack entries preset ``name`` stands for, in order, as eval-config entries for ``norm``.

    Args:
        name: the preset.
        norm: ``linf`` or ``l2``: the norm every member runs in.

    Returns:
        One ``{name: ..., param: ...}`` mapping per member.

    Raises:
        AdvkitError: ``name`` is not a preset (the message lists the presets).
    """
    if name not in PRESETS:
        raise AdvkitError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}")
    return [{"name": member, **params, "norm": norm} for member, params in PRESETS[name]]


def _fixed_label(title: str) -> Callable[[dict[str, Any]], str]:
    """A report labeler that names a preset the same whatever its parameters."""
    def label(params: dict[str, Any]) -> str:
        return title
    return label


def run_cascade(model: nn.Module, x: torch.Tensor, y: torch.Tensor, members: list[dict[str, Any]], *, eps: float,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Run ``members`` (entries as :func:`preset_members` gives them) in order, each only on the samples no
    earlier member fooled (and that the model gets right on ``x``); the worst case per sample.

    Args:
        model: ``f(x in [0,1]) -> logits``.
        x: images ``[B, C, H, W]`` in [0,1].
        y: true labels ``[B]``.
        members: the attacks, in order.
        eps: the budget, pixel units of the members' norm.
        generator: seeds the members that draw random numbers.

    Returns:
        The first fooling point each member found per sample, else ``x``; ``x``'s shape and dtype.
    """
    with attack_mode(model):
        x0, y = as_fp32(x), usable(y)  # ordinary tensors even under inference_mode
        x_adv = x0.clone()
        with torch.no_grad():
            logits = model(x0)
        check_labels(logits, y)
        standing = logits.argmax(1) == y
        for entry in members:
            idx = standing.nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            params = {k: v for k, v in entry.items() if k != "name"}
            found = ATTACKS.get(entry["name"]).fn(model, x0[idx], y[idx], eps=eps, generator=generator, **params)
            with torch.no_grad():
                fooled = model(found.float()).argmax(1) != y[idx]
            x_adv[idx[fooled]] = found[fooled].float()
            standing[idx[fooled]] = False
        return to_caller_dtype(x_adv, x)


def _register(name: str) -> None:
    def preset(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str = "linf",
               targeted: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        eps = check_eps(eps, norm)
        check_inputs(x, y)
        if targeted:
            raise AdvkitError(f"{name} is untargeted (its targeted members pick their own target classes); "
                              f"run apgd-t or fab-t with targeted=True for chosen targets")
        return run_cascade(model, x, y.long(), preset_members(name, norm), eps=eps, generator=generator)

    preset.__name__ = name.replace("-", "_")
    preset.__doc__ = (f"{_TITLES[name]}: {', '.join(m for m, _ in PRESETS[name])} in cascade (see "
                      f":func:`run_cascade`); ``eps`` in pixel units of ``norm`` (``linf`` or ``l2``).")
    register_attack(name, norms=("linf", "l2"), label=_fixed_label(_TITLES[name]))(preset)


for _name in PRESETS:
    _register(_name)
