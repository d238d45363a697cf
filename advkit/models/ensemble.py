"""Ensembles: several models of the same task as one ``f(x in [0,1]) -> logits`` (the mean of the members'
logits), so attacks, training code, checkpoints and ``advkit detect`` treat them like any other model.

The attacks differentiate through every member at once, so robustness is measured against the ensemble,
not against one member at a time.

>>> from advkit.models import load
>>> from advkit.models.ensemble import ensemble
>>> m = ensemble([load("runs/a"), load("runs/b")])    # save(m, ...) and load(...) as usual
"""

from __future__ import annotations

from typing import Sequence, cast

import torch
from torch import nn

from advkit.errors import AdvkitError
from advkit.models.factory import create_model, register_model
from advkit.models.wrappers import Normalized

SHAPE_KEYS = ("num_classes", "in_chans", "input_size")


class Ensemble(nn.Module):
    """The mean of the members' logits. Each member is a :class:`Normalized` model with its own
    normalization; the ensemble's own wrapper normalizes nothing."""

    def __init__(self, members: Sequence[Normalized]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.members[0](x)
        for m in self.members[1:]:
            out = out + m(x)
        return out / len(self.members)


def member_spec(model: Normalized) -> dict:
    """What rebuilds ``model`` as an ensemble member.

    Args:
        model: an advkit model.

    Returns:
        Its architecture spec and its normalization, as the ensemble's spec records them.
    """
    return {**model.spec, "normalization": model.normalization}


@register_model("ensemble")
def _ensemble(num_classes: int, in_chans: int, input_size: int, members: Sequence[dict] = ()) -> nn.Module:
    if not members:
        raise AdvkitError("an ensemble needs at least one member")
    built = []
    for i, spec in enumerate(members):
        if not (isinstance(spec, dict) and isinstance(spec.get("arch"), str)):
            raise AdvkitError(f"ensemble member {i}: not a model spec (arch, num_classes, in_chans, input_size, "
                              f"kwargs)")
        shape = {k: spec.get(k) for k in SHAPE_KEYS}
        if shape != {"num_classes": num_classes, "in_chans": in_chans, "input_size": input_size}:
            raise AdvkitError(f"ensemble member {i} ({spec['arch']}) takes {shape}; the ensemble "
                              f"{num_classes} classes, {in_chans} channel(s), input size {input_size}")
        norm = spec.get("normalization") or {}
        built.append(create_model(spec["arch"], num_classes=num_classes, in_chans=in_chans, input_size=input_size,
                                  mean=norm.get("mean"), std=norm.get("std"), **(spec.get("kwargs") or {})))
    return Ensemble(built)


def ensemble(models: Sequence[Normalized]) -> Normalized:
    """One model averaging the logits of ``models``; it saves and loads like any advkit model.

    Args:
        models: advkit models (from :func:`advkit.models.create_model` or loaded) with the same number of
            classes, channels and input size; their weights are copied.

    Returns:
        The ensemble, on the first model's device, in eval mode.

    Raises:
        AdvkitError: no models, a member that is not an advkit model, or members of different shapes.
    """
    models = list(models)
    if not models:
        raise AdvkitError("an ensemble needs at least one model")
    if not all(isinstance(m, Normalized) for m in models):
        raise AdvkitError("ensemble members must be advkit models (advkit.models.create_model or load)")
    first = models[0].spec
    for i, m in enumerate(models[1:], 1):
        if any(m.spec.get(k) != first.get(k) for k in SHAPE_KEYS):
            raise AdvkitError(f"ensemble member {i} ({m.spec.get('arch')}) differs from member 0 in classes, "
                              f"channels or input size")
    ens = create_model("ensemble", **{k: first[k] for k in SHAPE_KEYS}, members=[member_spec(m) for m in models])
    for target, m in zip(cast(Ensemble, ens.net).members, models):
        target.load_state_dict(m.state_dict())
    device = next(models[0].parameters()).device
    return ens.to(device).eval()
