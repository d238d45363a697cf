"""Helpers shared by the command modules: resolving a --model, parsing eps lists, output folders."""

from __future__ import annotations

import time
from pathlib import Path

import click

from advkit.config import parse_number
from advkit.errors import AdvkitError


def parse_eps_list(text: str) -> list[float]:
    """An ``--eps`` list.

    Args:
        text: comma-separated radii in [0,1] pixel units: ``0.1,0.2`` or ``2/255,8/255``.

    Returns:
        The radii.

    Raises:
        AdvkitError: no value, or one that is not a number.
    """
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise AdvkitError("--eps needs at least one value")
    return [parse_number(t, "--eps") for t in items]


def default_out(kind: str) -> Path:
    """The output folder when ``--out`` is not given.

    Args:
        kind: the command (``train``, ``eval``), the folder name's head.

    Returns:
        ``advkit_runs/<kind>-<local time>``.
    """
    return Path("advkit_runs") / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"


def resolve_model(spec: str | None, data, data_root: str | None, device, echo=click.echo):
    """The model a ``--model`` names, told to the user in the CLI's wording.

    Args:
        spec: a checkpoint path, a registry name (random initialisation: it says so), or None for the cached
            default model.
        data: the data the model will see (its classes, image shape and normalization).
        data_root: where MNIST is, should the default model need training.
        device: where the model goes.
        echo: where the messages go.

    Returns:
        The model in eval mode.

    Raises:
        AdvkitError: as :func:`advkit.train.default.resolve`.
    """
    from advkit.models.resolve import Notes
    from advkit.train.default import resolve

    # the CLI's wording: it names the model it uses on every path, and says how to get meaningful numbers
    notes = Notes(loaded="model: {path}",
                  random_init="model: {spec} (random initialisation: train it first for meaningful numbers)",
                  default_training="No --model given: training the default MNIST classifier once (about a minute "
                                   "on a laptop CPU); it is cached at {path}",
                  default_loaded="model: default MNIST LeNet ({path})")
    return resolve(spec, data, device, echo, data_root=data_root, progress=True, notes=notes)
