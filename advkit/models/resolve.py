"""One resolver from a model spec (what a user types after ``--model`` or in a config) to a model.

The forms (see ``docs/models.md``):

- an advkit checkpoint (``.safetensors``) or a training run folder;
- a registered name or ``timm:NAME`` / ``torchvision:NAME`` alone: built with random weights for the data;
- ``timm:NAME`` or ``torchvision:NAME`` (or a registered name) with ``weights`` (``--weights FILE``): a
  state dict or safetensors file, with the preprocessing timm/torchvision publish for that name unless given;
- ``py:package.module:factory`` or ``path/to/file.py:factory``: the user's own code, called with no
  arguments, returning an ``nn.Module`` (optionally with ``weights``);
- a TorchScript archive (``.ts``, ``.torchscript``, or a ``.pt``/``.pth`` that holds ``code/``).

Whatever the form, the result is a :class:`~advkit.models.wrappers.Normalized`: ``f(x in [0,1]) -> logits``,
with ``origin`` saying what was loaded. The cached default model is trained by :mod:`advkit.train`, above
this package: :func:`advkit.train.default.resolve` handles it and calls :func:`resolve_model` for the rest.

>>> from advkit.models.resolve import ModelOptions, resolve_model
>>> m = resolve_model("timm:resnet18", num_classes=10, in_chans=3, input_size=32,
...                   options=ModelOptions(weights="resnet18_cifar.pt"))
"""

from __future__ import annotations

import difflib
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from advkit.errors import AdvkitError
from advkit.models import external
from advkit.models.checkpoint import checkpoint_file, load
from advkit.models.factory import TIMM, TORCHVISION, create_model, list_models
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
    external: str | None = "model {spec}: {what}"
    random_init: str | None = "model {spec}: random initialisation (no checkpoint), numbers are only a smoke test"
    default_training: str | None = "training advkit's default MNIST model once (about a minute on a laptop CPU)"
    default_loaded: str | None = None

    def tell(self, say: Callable[[str], None], which: str, **fields: object) -> None:
        """``say`` the note named ``which``, filled with ``fields``; nothing when that note is None.

        Args:
            say: where the note goes (a logger's method, the CLI's echo).
            which: the note's field name (``loaded``, ``random_init``, ...).
            **fields: the values of the note's ``{spec}``, ``{path}`` (``{what}`` for ``external``).
        """
        note = getattr(self, which)
        if note is not None:
            say(note.format(**fields))


@dataclass(frozen=True)
class ModelOptions:
    """What the user says about a model beyond its spec (``--weights``, ``--num-classes``, ``--mean``, ``--std``,
    ``--input-size``; the same keys in an eval config's model entry). ``None``: not given.

    Args:
        weights: a weights file for ``timm:``/``torchvision:``/registered names and ``py:`` factories.
        num_classes: the classifier head's size (default: the data's); a head of another size in ``weights``
            then starts fresh instead of being an error.
        mean: per-channel mean the model expects, [0,1] pixel units (one value: every channel).
        std: per-channel standard deviation, likewise.
        input_size: the side of the square images the model takes; other sizes are resized to it.
    """

    weights: str | None = None
    num_classes: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    input_size: int | None = None

    def __post_init__(self) -> None:
        for name in ("num_classes", "input_size"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise AdvkitError(f"{name.replace('_', '-')} must be a positive integer, got {v!r}")
        for name in ("mean", "std"):
            v = getattr(self, name)
            if v is None:
                continue
            if not v or not all(isinstance(t, (int, float)) and math.isfinite(t) for t in v):
                raise AdvkitError(f"--{name} must be finite numbers (one, or one per channel), got {v!r}")
            object.__setattr__(self, name, tuple(float(t) for t in v))
        if self.std is not None and min(self.std) <= 0:
            raise AdvkitError(f"--std must be > 0, got {list(self.std)}")
        if (self.mean is None) != (self.std is None):
            raise AdvkitError("give --mean and --std together")
        if self.weights is not None and not str(self.weights):
            raise AdvkitError("--weights needs a file")

    @property
    def given(self) -> list[str]:
        """The options that were given, by their CLI names."""
        return [f"--{k.replace('_', '-')}" for k in ("weights", "num_classes", "mean", "std", "input_size")
                if getattr(self, k) is not None]


def model_form(spec: str) -> str:
    """The form of a model spec: ``py`` (a factory), ``torchscript``, ``checkpoint`` (a path: an advkit
    checkpoint or run folder; also what a missing path reads as), ``timm``, ``torchvision`` or ``name``.

    Args:
        spec: a model spec as a user wrote it.

    Returns:
        The form's name.

    Raises:
        AdvkitError: an unknown ``xyz:`` family.
    """
    if external.py_spec(spec) is not None:
        return "py"
    if names_a_checkpoint(spec):
        path = checkpoint_file(spec)
        if path.is_file() and path.suffix != ".safetensors" and external.is_torchscript(path):
            return "torchscript"
        return "checkpoint"
    family, _ = split_name(spec, kind="model")
    return family.name if family in (TIMM, TORCHVISION) else "name"


def names_a_checkpoint(spec: str) -> bool:
    """Whether ``spec`` is read as a file or folder path rather than a model name.

    Args:
        spec: a model spec as a user wrote it.

    Returns:
        True for a model file suffix, an existing path, or a ``/`` (a path that does not exist yet is
        "not found", not an unknown name).
    """
    return (Path(spec).suffix in CHECKPOINT_SUFFIXES + external.TORCHSCRIPT_SUFFIXES or Path(spec).exists()
            or "/" in spec)


def resolve_model(spec: str, *, num_classes: int, in_chans: int, input_size: int,
                  mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                  device: str | torch.device = "cpu", say: Callable[[str], None] = log.warning,
                  notes: Notes = Notes(), also: Sequence[str] = (), options: ModelOptions = ModelOptions()
                  ) -> Normalized:
    """The model ``spec`` names, on ``device`` in eval mode, ``f(x in [0,1]) -> logits``.

    Args:
        spec: a checkpoint file or training run folder, a model name (registered, ``timm:NAME``,
            ``torchvision:NAME``), a factory (``py:pkg.mod:fn``, ``file.py:fn``) or a TorchScript archive
            (see the module's docstring).
        num_classes, in_chans, input_size, mean, std: the data's, for a model built from a name with random
            weights; a model from outside advkit takes its own (``options``, then what timm/torchvision
            publish) and resizes inputs of another size.
        device: where the model goes.
        say: told what was resolved (``notes``), or that the weights are random.
        notes: the wording of what ``say`` is told.
        also: names the caller resolves itself (e.g. ``default``), offered in the "did you mean" hint.
        options: the user's ``--weights``, ``--num-classes``, ``--mean``, ``--std``, ``--input-size``.

    Returns:
        The model, in eval mode on ``device``; ``model.origin`` records the form, the spec, the weights file
        and its sha256, the normalization and the input size.

    Raises:
        AdvkitError: a missing file, a checkpoint that is not an advkit model, weights that do not fit, a
            factory that fails or returns no module, an unknown name, or options the form cannot take.
    """
    form = model_form(spec)
    o = options
    if form == "checkpoint":
        if o.given:
            raise AdvkitError(f"model {spec}: an advkit checkpoint records its own architecture, classes and "
                              f"normalization; {', '.join(o.given)} go with timm:NAME, torchvision:NAME or py:")
        path = checkpoint_file(spec)
        if not path.is_file():
            raise AdvkitError(f"checkpoint not found: {path}")
        if path.suffix in (".pt", ".pth", ".bin"):
            raise AdvkitError(f"{path} holds weights, not a model: name its architecture, e.g. --model "
                              f"timm:NAME --weights {path} (config: model: timm:NAME, weights: {path})")
        try:
            model = load(path, device=device)
        except AdvkitError as e:
            hint = ("; for plain weights name the architecture: --model timm:NAME --weights FILE"
                    if "without advkit metadata" in str(e) or "not a safetensors file" in str(e) else "")
            raise AdvkitError(f"{e}{hint}") from None
        model.origin = _origin("checkpoint", spec, model, path)
        notes.tell(say, "loaded", spec=spec, path=path)
        return model
    if form == "torchscript":
        if o.weights is not None:
            raise AdvkitError(f"model {spec}: a TorchScript archive carries its weights; drop --weights")
        return _outside(external.load_torchscript(checkpoint_file(spec)), "torchscript", spec, o, {}, num_classes,
                        in_chans, input_size, device, say, notes, sha_of=checkpoint_file(spec))
    if form == "py":
        net = external.call_factory(spec)
        if o.weights is not None:
            external.load_weights(net, o.weights, new_head=False, say=say)
        published = getattr(net, "pretrained_cfg", None)
        pre = _from_timm_cfg(published) if isinstance(published, dict) else {}
        return _outside(net, "py", spec, o, pre, num_classes, in_chans, input_size, device, say, notes,
                        sha_of=Path(o.weights) if o.weights else None)
    if form == "name" and spec not in list_models():
        names = list_models()
        close = difflib.get_close_matches(spec, names + list(also), n=1)
        valid = sorted(names + list(also)) + [f"{f}{f.help}" for f in families("model")]
        raise AdvkitError(f"unknown model {spec!r}: neither a checkpoint file nor a registered model"
                          + (f" (did you mean {close[0]!r}?)" if close else "") + f"; valid: {', '.join(valid)}")
    if o.weights is not None and form in ("timm", "torchvision"):
        _, name = split_name(spec, kind="model")
        pre = external.preprocessing(form, name)
        chans = int(pre.get("in_chans", 3))
        size = o.input_size or pre.get("input_size") or input_size
        m = _stats(o.mean, chans) or _stats(pre.get("mean"), chans)
        s = _stats(o.std, chans) or _stats(pre.get("std"), chans)
        model = create_model(spec, num_classes=o.num_classes or num_classes, in_chans=chans, input_size=size,
                             mean=m, std=s)
        external.load_weights(model.net, o.weights, new_head=o.num_classes is not None, say=say)
        return _finish(model, form, spec, o, pre, device, say, notes, Path(o.weights))
    # a registered name or timm:/torchvision: alone: fitted to the data, random weights unless a file is given
    chans = 3 if form == "torchvision" else in_chans
    m = _stats(o.mean, chans) or _stats(mean, chans)
    s = _stats(o.std, chans) or _stats(std, chans)
    model = create_model(spec, num_classes=o.num_classes or num_classes, in_chans=chans,
                         input_size=o.input_size or input_size, mean=m, std=s)
    if o.weights is not None:
        external.load_weights(model.net, o.weights, new_head=o.num_classes is not None, say=say)
        return _finish(model, form, spec, o, {}, device, say, notes, Path(o.weights))
    model.adapts = form == "torchvision" or o.input_size is not None
    model = model.to(device).eval()
    model.origin = _origin(form, spec, model, None)
    notes.tell(say, "random_init", spec=spec, path=None)
    return model


def _stats(v: Sequence[float] | None, chans: int) -> list[float] | None:
    """A mean or std for ``chans`` channels: one value repeated, a per-channel list kept, None kept."""
    if v is None:
        return None
    v = [float(t) for t in v]
    return v * chans if len(v) == 1 else v


def _from_timm_cfg(cfg: dict[str, Any]) -> dict[str, Any]:
    """The preprocessing in a timm ``pretrained_cfg`` dict (what a timm model built by a factory carries)."""
    out: dict[str, Any] = {}
    if cfg.get("mean") is not None and cfg.get("std") is not None:
        out["mean"], out["std"] = list(cfg["mean"]), list(cfg["std"])
    size = cfg.get("input_size")
    if isinstance(size, (tuple, list)) and len(size) == 3:
        out["in_chans"], out["input_size"] = int(size[0]), int(size[-1])
    if cfg.get("interpolation"):
        out["interpolation"] = "bicubic" if "cubic" in str(cfg["interpolation"]) else "bilinear"
    if cfg.get("crop_pct") is not None:
        out["crop_pct"] = float(cfg["crop_pct"])
    return out


def _outside(net: nn.Module, form: str, spec: str, o: ModelOptions, pre: dict[str, Any], num_classes: int,
             in_chans: int, input_size: int, device: str | torch.device, say: Callable[[str], None],
             notes: Notes, sha_of: Path | None) -> Normalized:
    """Wrap a module built by the user's code (a factory, a TorchScript archive): its own preprocessing
    (``pre``) unless ``o`` says otherwise; none, and the data's size, when neither says."""
    chans = int(pre.get("in_chans", in_chans))
    size = o.input_size or pre.get("input_size") or input_size
    m = _stats(o.mean, chans) or _stats(pre.get("mean"), chans)
    s = _stats(o.std, chans) or _stats(pre.get("std"), chans)
    if m is not None and len(m) != chans:
        chans = len(m)
    model = Normalized(net, m, s, {"arch": spec, "num_classes": o.num_classes or num_classes, "in_chans": chans,
                                   "input_size": size, "kwargs": {}})
    return _finish(model, form, spec, o, pre, device, say, notes, sha_of)


def _finish(model: Normalized, form: str, spec: str, o: ModelOptions, pre: dict[str, Any],
            device: str | torch.device, say: Callable[[str], None], notes: Notes, weights: Path | None) -> Normalized:
    model.adapts = True
    model.interpolation = pre.get("interpolation", "bilinear")
    model.crop_pct = pre.get("crop_pct")
    model = model.to(device).eval()
    model.origin = _origin(form, spec, model, weights)
    norm = model.normalization
    what = (f"{'weights ' + str(weights) + ' (sha256 ' + model.origin['sha256'][:12] + '), ' if weights else ''}"
            f"{'mean ' + _fmt(norm['mean']) + ' std ' + _fmt(norm['std']) if norm else 'no normalization'}, "
            f"input {model.input_size} px ({model.interpolation} resize from other sizes)")
    notes.tell(say, "external", spec=spec, what=what)
    return model


def _fmt(v: list[float]) -> str:
    return "[" + ", ".join(f"{t:.4g}" for t in v) + "]"


def _origin(form: str, spec: str, model: Normalized, weights: Path | None) -> dict[str, Any]:
    norm = model.normalization
    return {"form": form, "spec": spec, "weights": str(weights) if weights else None,
            "sha256": external.file_sha256(weights) if weights else None,
            "mean": [round(t, 6) for t in norm["mean"]] if norm else None,
            "std": [round(t, 6) for t in norm["std"]] if norm else None,
            "input_size": model.input_size, "interpolation": model.interpolation if model.adapts else None}


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
