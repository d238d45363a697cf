"""Helpers shared by the command modules: resolving a --model, parsing eps lists, output folders."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

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
        AdvkitError: no value, or one that is not a finite number >= 0.
    """
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise AdvkitError("--eps needs at least one value")
    values = [parse_number(t, "--eps") for t in items]
    for t, v in zip(items, values):
        if not (0 <= v < float("inf")):  # NaN fails too
            raise AdvkitError(f"--eps: {t!r} is not a finite radius >= 0")
    return values


def default_out(kind: str) -> Path:
    """The output folder when ``--out`` is not given.

    Args:
        kind: the command (``train``, ``eval``), the folder name's head.

    Returns:
        ``advkit_runs/<kind>-<local time>``.
    """
    return Path("advkit_runs") / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"


def hold_out(out: str | Path, *, file: bool = False) -> Path:
    """Lock the command's output (``--out``) against a second run until the command ends.

    Args:
        out: the output folder (or file, with ``file``).
        file: ``out`` is one file (the lock sits beside it).

    Returns:
        ``out`` as a path.

    Raises:
        AdvkitError: another run holds it (as :func:`advkit.runtime.lock.out_lock`), or it cannot be written
            (a file on the way, a folder without write permission).
    """
    from advkit.runtime.io import ensure_writable_dir
    from advkit.runtime.lock import out_lock

    ensure_writable_dir(Path(out).parent if file else out)  # before any work: name the folder, not a temp file
    click.get_current_context().with_resource(out_lock(out, file=file))
    return Path(out)


def _floats(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        return tuple(parse_number(t.strip(), f"--{param.name}") for t in value.split(",") if t.strip())
    except AdvkitError:
        raise click.BadParameter(f"comma-separated numbers expected, got {value!r}") from None


def model_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: the options that say what a ``--model`` from outside advkit needs (``--weights``,
    ``--num-classes``, ``--mean``, ``--std``, ``--input-size``); the command gets them as one ``model_opts``
    (:class:`advkit.models.ModelOptions`, built lazily by :func:`options_from`).

    Args:
        f: the click command function.

    Returns:
        ``f`` with the five options added.
    """
    opts = [
        click.option("--weights", type=click.Path(dir_okay=False),
                     help="Weights for --model timm:NAME, torchvision:NAME or py:...: safetensors or a torch "
                          "state dict (read with weights_only=True; state_dict/model/module. wrappings undone)."),
        click.option("--num-classes", type=int, help="The model's class count (default: the data's); a head of "
                                                     "another size in --weights then starts fresh."),
        click.option("--mean", callback=_floats, help="Per-channel mean the model expects, [0,1] units, e.g. "
                                                      "0.485,0.456,0.406 (default: timm/torchvision's for NAME)."),
        click.option("--std", callback=_floats, help="Per-channel std the model expects (with --mean)."),
        click.option("--input-size", type=int, help="The model's input side in pixels; images of another size "
                                                    "are resized to it (default: timm/torchvision's for NAME)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def options_from(kw: dict[str, Any]):
    """Pop the :func:`model_options` values out of a command's keyword arguments.

    Args:
        kw: the command's keyword arguments (changed in place).

    Returns:
        The :class:`advkit.models.ModelOptions`.

    Raises:
        AdvkitError: a bad value (see ModelOptions).
    """
    from advkit.models import ModelOptions

    return ModelOptions(weights=kw.pop("weights"), num_classes=kw.pop("num_classes"), mean=kw.pop("mean"),
                        std=kw.pop("std"), input_size=kw.pop("input_size"))


def resolve_model(spec: str | None, data, data_root: str | None, device, echo=click.echo, options=None):
    """The model a ``--model`` names, told to the user in the CLI's wording.

    Args:
        spec: a checkpoint path, a registry name (random initialisation: it says so), or None for the cached
            default model.
        data: the data the model will see (its classes, image shape and normalization).
        data_root: where MNIST is, should the default model need training.
        device: where the model goes.
        echo: where the messages go.
        options: the :func:`model_options` values (:class:`advkit.models.ModelOptions`), or None.

    Returns:
        The model in eval mode.

    Raises:
        AdvkitError: as :func:`advkit.train.default.resolve`.
    """
    from advkit.models.resolve import ModelOptions, Notes
    from advkit.train.default import resolve

    # the CLI's wording: it names the model it uses on every path, and says how to get meaningful numbers
    notes = Notes(loaded="model: {path}",
                  random_init="model: {spec} (random initialisation: train it first for meaningful numbers)",
                  default_training="No --model given: training the default MNIST classifier once (about a minute "
                                   "on a laptop CPU); it is cached at {path}",
                  default_loaded="model: default MNIST LeNet ({path})")
    return resolve(spec, data, device, echo, data_root=data_root, progress=True, notes=notes,
                   options=options or ModelOptions())
