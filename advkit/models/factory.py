"""``create_model(name, **kw)``: one factory over the registry and timm."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from advkit.errors import AdvkitError
from advkit.models import nets
from advkit.models.wrappers import Normalized
from advkit.registry import Registry, register_family, split_name

Builder = Callable[..., nn.Module]
_MODELS: Registry[Builder] = Registry("model")
TIMM = register_family("timm", "model", "NAME")  # timm:NAME, any architecture timm knows
TORCHVISION = register_family("torchvision", "model", "NAME")  # torchvision:NAME, built with weights=None


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Decorator: register a model builder under ``name``.

    Args:
        name: the model's name for :func:`create_model`.

    Returns:
        A decorator taking ``builder(num_classes, in_chans, input_size, **kw) -> nn.Module`` (the raw net,
        which takes normalized input) and returning it unchanged.

    Raises:
        KeyError: ``name`` is already registered.
    """
    return _MODELS.register(name)


def list_models(include_timm: bool = False) -> list[str]:
    """The names :func:`create_model` takes.

    Args:
        include_timm: also list every ``timm:NAME`` (``timm:NAME`` works without being listed).

    Returns:
        The registered names, sorted, then the timm ones.
    """
    names = _MODELS.names()
    if include_timm:
        import timm
        names += [TIMM.join(n) for n in timm.list_models()]
    return names


@register_model("lenet")
def _lenet(num_classes: int, in_chans: int, input_size: int, width: int = 32) -> nn.Module:
    if input_size % 4:
        raise AdvkitError(f"lenet needs an input size divisible by 4, got {input_size}")
    return nets.LeNet(num_classes, in_chans, input_size, width)


@register_model("small_cnn")
def _small_cnn(num_classes: int, in_chans: int, input_size: int, width: int = 1) -> nn.Module:
    if input_size % 4:
        raise AdvkitError(f"small_cnn needs an input size divisible by 4, got {input_size}")
    if width < 1:
        raise AdvkitError(f"small_cnn width must be >= 1, got {width}")
    return nets.SmallCNN(num_classes, in_chans, input_size, width)


@register_model("preact_resnet18")
def _preact_resnet18(num_classes: int, in_chans: int, input_size: int, width: int = 64) -> nn.Module:
    return nets.PreActResNet((2, 2, 2, 2), num_classes, in_chans, width)


def _timm(name: str, num_classes: int, in_chans: int, input_size: int, pretrained_file: str | None = None,
          **kw) -> nn.Module:
    import timm

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        raise AdvkitError(f"unknown timm model {name!r}{hint} (see timm.list_models())")
    try:  # ViT-style models need the input size; CNNs reject the argument
        net = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans,
                                img_size=input_size, **kw)
    except TypeError:
        net = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kw)
    if pretrained_file:
        _load_local_weights(net, Path(pretrained_file))
    return net


def _torchvision(name: str, num_classes: int, in_chans: int, input_size: int, **kw) -> nn.Module:
    import torchvision.models

    names = torchvision.models.list_models()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        raise AdvkitError(f"unknown torchvision model {name!r}{hint} (see torchvision.models.list_models())")
    if in_chans != 3:
        raise AdvkitError(f"torchvision:{name} takes 3-channel images, not {in_chans}")
    if name.startswith("vit_") and "image_size" not in kw:
        kw["image_size"] = input_size  # torchvision's ViT fixes its size at build time
    try:  # never downloads: weights=None, a local file is loaded by the resolver
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kw)
    except (TypeError, ValueError) as e:
        raise AdvkitError(f"torchvision:{name}: {_line(e)}") from None


def _line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0][:200]


def _load_local_weights(net: nn.Module, path: Path) -> None:
    """Pretrained weights from a local file only (nothing is downloaded). Tensors whose shape does not
    fit (a classifier for another class count) are left at their initialisation."""
    if not path.is_file():
        raise AdvkitError(f"pretrained weights file not found: {path}")
    state: object  # a tensor dict from safetensors, anything from torch.load until checked
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        state = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)  # never runs pickled code
        except Exception as e:  # torch raises several types for foreign or corrupt files
            raise AdvkitError(f"{path}: not a readable weights file ({type(e).__name__})") from None
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        if not isinstance(state, dict):
            raise AdvkitError(f"{path}: holds no state dict")
    own = net.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not fitting:
        raise AdvkitError(f"{path}: no tensor in this file fits the model")
    net.load_state_dict(fitting, strict=False)


def create_model(name: str, *, num_classes: int = 10, in_chans: int = 1, input_size: int = 28,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 **kwargs) -> Normalized:
    """Build model ``name`` wrapped to take images in [0,1] and return logits, freshly initialised.

    Args:
        name: a registered name (:func:`list_models`), ``timm:NAME`` or ``torchvision:NAME``.
        num_classes: K, the number of logits.
        in_chans: C, the input channels.
        input_size: the input's side S (square images [N, C, S, S]).
        mean: per-channel mean in [0,1] pixel units, for the wrapper's normalization; ``None``: none.
        std: per-channel standard deviation in [0,1] pixel units.
        **kwargs: for the builder (e.g. ``width``, or ``pretrained_file`` for timm models); ``None``
            values are dropped, so the builder's defaults hold.

    Returns:
        The model, ``f(x [N, C, S, S] in [0,1]) -> logits [N, K]``, with its ``spec`` for checkpoints.

    Raises:
        AdvkitError: an unknown name, sizes that are not positive, a normalization of another channel
            count, or arguments the builder does not take.
    """
    if num_classes < 1 or in_chans < 1 or input_size < 1:
        raise AdvkitError("num_classes, in_chans and input_size must be positive")
    for stat in (mean, std):
        if stat is not None and len(stat) != in_chans:
            raise AdvkitError(f"normalization has {len(stat)} channel(s) but the model takes {in_chans}")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    family, rest = split_name(name, kind="model")  # unknown prefixes raise here, listing the known ones
    if family is TIMM:
        net = _timm(rest, num_classes, in_chans, input_size, **kwargs)
    elif family is TORCHVISION:
        net = _torchvision(rest, num_classes, in_chans, input_size, **kwargs)
    else:
        builder = _MODELS.get(name)
        try:
            net = builder(num_classes=num_classes, in_chans=in_chans, input_size=input_size, **kwargs)
        except TypeError as e:
            raise AdvkitError(f"model {name!r}: {e}") from None
    kwargs.pop("pretrained_file", None)  # the weights travel in checkpoints, not the path
    rebuild = getattr(net, "spec_kwargs", None)
    if rebuild is not None:  # a net built from a file says how to rebuild it without that file
        kwargs = dict(rebuild)
    spec = {"arch": name, "num_classes": num_classes, "in_chans": in_chans, "input_size": input_size,
            "kwargs": kwargs}
    return Normalized(net, mean, std, spec)
