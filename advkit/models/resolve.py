"""One resolver from a model spec (what a user types after ``--model`` or in a config) to a model.

A spec is an advkit checkpoint (a ``.safetensors``/``.ckpt``/``.pt`` file, a training run folder, any
existing path) or a model name (registered, or ``timm:NAME``), which is built with random weights for the
data's classes, channels, size and normalization. The cached default model is trained by
:mod:`advkit.train`, above this package: :func:`advkit.train.default.resolve` handles it and calls
:func:`resolve_model` for everything else.

>>> from advkit.models.resolve import resolve_model
>>> m = resolve_model("runs/a", num_classes=10, in_chans=1, input_size=28)
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from advkit.errors import AdvkitError
from advkit.models.checkpoint import checkpoint_file, load
from advkit.models.factory import create_model, list_models
from advkit.models.wrappers import Normalized
from advkit.registry import families, split_name

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt", ".pt")


@dataclass(frozen=True)
class Notes:
    """What resolving a model tells the caller through ``say``: format strings over ``{spec}`` and ``{path}``,
    ``None`` says nothing. The library's defaults suit a log; the CLI passes its own wording.

    ``default_training`` and ``default_loaded`` are said by :func:`advkit.train.default.resolve` (training
    the cached default model, and using it); the others by :func:`resolve_model`.
    """

    loaded: str | None = None
    random_init: str | None = "model {spec}: random initialisation (no checkpoint), numbers are only a smoke test"
    default_training: str | None = "training advkit's default MNIST model once (about a minute on a laptop CPU)"
    default_loaded: str | None = None

    def tell(self, say: Callable[[str], None], which: str, **fields: object) -> None:
        """``say`` the note named ``which``, filled with ``fields``; nothing when that note is None.

        Args:
            say: where the note goes (a logger's method, the CLI's echo).
            which: the note's field name (``loaded``, ``random_init``, ...).
            **fields: the values of the note's ``{spec}`` and ``{path}``.
        """
        note = getattr(self, which)
        if note is not None:
            say(note.format(**fields))


def names_a_checkpoint(spec: str) -> bool:
    """Whether ``spec`` is read as a checkpoint path rather than a model name.

    Args:
        spec: a model spec as a user wrote it.

    Returns:
        True for a checkpoint suffix, an existing path, or a ``/`` (a path that does not exist yet is
        "not found", not an unknown name).
    """
    return Path(spec).suffix in CHECKPOINT_SUFFIXES or Path(spec).exists() or "/" in spec


def resolve_model(spec: str, *, num_classes: int, in_chans: int, input_size: int,
                  mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                  device: str | torch.device = "cpu", say: Callable[[str], None] = log.warning,
                  notes: Notes = Notes(), also: Sequence[str] = ()) -> Normalized:
    """The model ``spec`` names, on ``device`` in eval mode.

    Args:
        spec: a checkpoint file or training run folder (see :func:`names_a_checkpoint`), or a model name
            (registered or ``timm:NAME``), built with random weights.
        num_classes, in_chans, input_size, mean, std: the data's, for a model built from a name.
        device: where the model goes.
        say: told what was resolved (``notes.loaded``) or that the weights are random (``notes.random_init``).
        notes: the wording of what ``say`` is told.
        also: names the caller resolves itself (e.g. ``default``), offered in the "did you mean" hint.

    Returns:
        The model, in eval mode on ``device``.

    Raises:
        AdvkitError: a checkpoint that is missing or not an advkit model, or a name that is neither a
            registered model nor ``timm:NAME``.
    """
    if names_a_checkpoint(spec):
        path = checkpoint_file(spec)
        if not path.is_file():
            raise AdvkitError(f"checkpoint not found: {path}")
        model = load(path, device=device)
        notes.tell(say, "loaded", spec=spec, path=path)
        return model
    names = list_models()
    family, _ = split_name(spec, kind="model")  # an unknown "xyz:" prefix raises here
    if family is None and spec not in names:
        close = difflib.get_close_matches(spec, names + list(also), n=1)
        valid = sorted(names + list(also)) + [f"{f}{f.help}" for f in families("model")]
        raise AdvkitError(f"unknown model {spec!r}: neither a checkpoint file nor a registered model"
                          + (f" (did you mean {close[0]!r}?)" if close else "") + f"; valid: {', '.join(valid)}")
    model = create_model(spec, num_classes=num_classes, in_chans=in_chans, input_size=input_size, mean=mean,
                         std=std).to(device).eval()
    notes.tell(say, "random_init", spec=spec, path=None)
    return model


def check_model_fits(model: nn.Module, x: torch.Tensor, num_classes: int, name: str, data_name: str) -> None:
    """Fail early, with one clear line, when ``model`` cannot take the data's images or gives another number
    of classes.

    Args:
        model: ``f(x in [0,1]) -> logits``.
        x: a few of the data's images, ``[N, C, H, W]`` in [0,1], on the model's device.
        num_classes: the data's number of classes.
        name: the model's name in the message.
        data_name: the data's name in the message.

    Raises:
        AdvkitError: the forward pass fails, or the logits are not ``[N, num_classes]``.
    """
    try:
        with torch.no_grad():
            out = model(x)
    except RuntimeError as e:
        raise AdvkitError(f"model {name!r} cannot take {data_name} images of shape {tuple(x.shape[1:])}: "
                          f"{str(e).splitlines()[0]}") from None
    if out.ndim != 2 or out.shape[1] != num_classes:
        raise AdvkitError(f"model {name!r} gives outputs of shape {tuple(out.shape)} but {data_name} has "
                          f"{num_classes} classes")
