"""Checkpoints, one format for every network advkit saves: weights in safetensors, metadata as JSON both in
the file's header (key ``advkit``) and beside it (``.json``).

The metadata's ``kind`` names what the file holds: ``classifier`` or ``detector`` (an advkit model, rebuilt
from ``model`` and ``normalization`` by :func:`load`), ``generator`` or ``discriminator`` (a DCGAN net,
rebuilt from ``spec`` by :func:`load_generator` / :func:`load_discriminator`). Files written before ``kind``
existed hold classifiers. Loading rebuilds the network from the metadata and never unpickles anything; each
loader refuses the other family with one clear error.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

import advkit
from advkit.errors import AdvkitError
from advkit.models.dcgan import DCGANDiscriminator, DCGANGenerator, build_gan_net
from advkit.models.wrappers import Normalized
from advkit.runtime.io import atomic_write_bytes, atomic_write_json

META_KEY = "advkit"
FORMAT = 1
MODEL_KINDS = ("classifier", "detector")  # advkit models (f(x in [0,1]) -> logits), loaded by load()
GAN_KINDS = ("generator", "discriminator")  # DCGAN nets, loaded by load_generator / load_discriminator
KINDS = MODEL_KINDS + GAN_KINDS
_GAN_CLASS: dict[str, type[DCGANGenerator] | type[DCGANDiscriminator]] = {"generator": DCGANGenerator,
                                                                          "discriminator": DCGANDiscriminator}

# Sizes a checkpoint's metadata may state: beyond them the network would not fit in memory (a metadata edit
# or a corrupt file, not a model), so the file is refused before anything is built.
SPEC_LIMITS = {"num_classes": 1_000_000, "in_chans": 64, "input_size": 8192}

RUN_CHECKPOINT = "model.safetensors"  # the final model a training run folder holds


# ------------------------------------------------------------------------------------- shared parts

def _safetensors_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path if path.suffix == ".safetensors" else path.with_suffix(".safetensors")


def _write(path: Path, net: nn.Module, meta: dict) -> Path:
    """``net``'s weights and ``meta`` to ``path`` and ``path.json``, each atomically (weights first)."""
    from safetensors.torch import save as st_save

    try:
        meta_json = json.dumps(meta)
    except TypeError as e:
        raise AdvkitError(f"checkpoint metadata is not JSON-serialisable: {e}") from None
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    atomic_write_bytes(path, st_save(state, metadata={META_KEY: meta_json}))
    atomic_write_json(path.with_suffix(".json"), meta)
    return path


def _read_header(path: Path) -> Any:
    """The parsed advkit metadata in ``path``'s safetensors header (any JSON value: callers check its shape)."""
    from safetensors import safe_open

    if not path.is_file():
        raise AdvkitError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except Exception:  # safetensors raises its own error types for anything that is not its format
        raise AdvkitError(f"{path} is not an advkit checkpoint (not a safetensors file)") from None
    if META_KEY not in header:
        raise AdvkitError(f"{path} is a safetensors file without advkit metadata; not an advkit checkpoint")
    try:
        return json.loads(header[META_KEY])
    except json.JSONDecodeError:
        raise AdvkitError(f"{path}: advkit metadata is not valid JSON") from None


def _load_weights(net: nn.Module, path: Path, what: str) -> None:
    """Load ``path``'s tensors into ``net``, which the metadata built; names and shapes must match exactly."""
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except Exception as e:  # a header that reads but tensors that do not (truncated data, bad offsets)
        raise AdvkitError(f"{path}: cannot read its tensors ({' '.join(str(e).split())[:200]})") from None
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = [f"{label} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
                 if keys]
        raise AdvkitError(f"{path}: weights do not match the metadata's {what} ({'; '.join(parts)})")
    bad = sorted(k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))
    if bad:
        raise AdvkitError(f"{path}: weights hold NaN or infinite values ({', '.join(bad[:3])}"
                          f"{' ...' if len(bad) > 3 else ''}); the model would score garbage")
    net.load_state_dict(state)


# ------------------------------------------------------------------------ classifiers and detectors

def save(model: Normalized, path: str | os.PathLike, *, kind: str = "classifier", **metadata: Any) -> Path:
    """Write ``model`` to ``path`` (``.safetensors``) and ``path.json``; both atomically.

    Args:
        model: an advkit model (from :func:`advkit.models.create_model` or :func:`load`).
        path: the file to write; another suffix is replaced by ``.safetensors``.
        kind: ``classifier`` or ``detector`` (a 2-class real/fake classifier), recorded in the metadata.
        **metadata: dataset, classes, input_shape, config, metrics, ...; must be JSON-serialisable. The
            architecture, normalization and advkit version are added from the model itself.

    Returns:
        The path written.

    Raises:
        AdvkitError: not an advkit model, an unknown kind, or metadata that JSON cannot hold.
    """
    if not isinstance(model, Normalized):
        raise AdvkitError("advkit.models.save expects a model from advkit.models.create_model")
    if kind not in MODEL_KINDS:
        raise AdvkitError(f"save: kind must be one of {', '.join(MODEL_KINDS)}, got {kind!r}")
    meta = {"format": FORMAT, "advkit_version": advkit.__version__, "kind": kind, "model": model.spec,
            "normalization": model.normalization, **metadata}
    return _write(_safetensors_path(path), model, meta)


def checkpoint_file(path: str | os.PathLike) -> Path:
    """``path`` as a checkpoint file.

    Args:
        path: a checkpoint file or a training run folder (``advkit train ... --out DIR``).

    Returns:
        ``DIR/model.safetensors`` for a folder; anything else as given (whether it exists is the caller's
        check).
    """
    path = Path(path)
    return path / RUN_CHECKPOINT if path.is_dir() else path


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata stored in an advkit model checkpoint's header.

    Args:
        path: a checkpoint file or a run folder (see :func:`checkpoint_file`).

    Returns:
        The metadata: ``model`` (the architecture), ``normalization``, ``kind`` and what the writer added.

    Raises:
        AdvkitError: not an advkit model checkpoint (GAN checkpoints included), or one whose architecture
            is incomplete.
    """
    path = checkpoint_file(path)
    meta = _read_header(path)
    if isinstance(meta, dict) and meta.get("kind") in GAN_KINDS:
        raise AdvkitError(f"{path} is a GAN {meta['kind']} checkpoint; a classifier is expected here "
                          f"(load it with advkit.gan.load_{meta['kind']})")
    spec = meta.get("model") if isinstance(meta, dict) else None
    if not (isinstance(spec, dict) and isinstance(spec.get("arch"), str)
            and all(isinstance(spec.get(k), int) for k in ("num_classes", "in_chans", "input_size"))
            and isinstance(spec.get("kwargs", {}), dict)):
        raise AdvkitError(f"{path}: advkit metadata lacks a complete model architecture (arch, num_classes, "
                          f"in_chans, input_size)")
    for k, top in SPEC_LIMITS.items():
        if not 1 <= spec[k] <= top:
            raise AdvkitError(f"{path}: metadata states model {k} {spec[k]}; expected 1 to {top:,}")
    _check_normalization(path, meta.get("normalization"), spec["in_chans"])
    return meta


def _check_normalization(path: Path, norm: Any, channels: int) -> None:
    """The metadata's normalization: absent, or per-channel ``mean`` and ``std`` lists of finite numbers, the
    std > 0 (a zero std divides every image by zero)."""
    if norm is None:
        return
    if not isinstance(norm, dict):
        raise AdvkitError(f"{path}: metadata normalization must be a mapping with mean and std, got {norm!r}")
    for key in ("mean", "std"):
        v = norm.get(key)
        if v is None:
            continue
        ok = (isinstance(v, list) and len(v) in (1, channels)
              and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v))
        if not ok or (key == "std" and min(v) <= 0):
            want = "positive" if key == "std" else "finite"
            raise AdvkitError(f"{path}: metadata normalization {key} must be {channels} {want} number(s), got "
                              f"{v!r}")


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> Normalized:
    """Rebuild a model from its checkpoint's metadata and load its weights; no pickled code runs.

    Args:
        path: a checkpoint file or a run folder (see :func:`checkpoint_file`).
        device: where the model goes.

    Returns:
        The model in eval mode; ``.meta`` holds the metadata.

    Raises:
        AdvkitError: not an advkit model checkpoint, or weights that do not fit the architecture.
    """
    from advkit.models.factory import create_model

    path = checkpoint_file(path)
    meta = read_metadata(path)
    spec, norm = meta["model"], meta.get("normalization") or {}
    model = create_model(spec["arch"], num_classes=spec["num_classes"], in_chans=spec["in_chans"],
                         input_size=spec["input_size"], mean=norm.get("mean"), std=norm.get("std"),
                         **spec.get("kwargs", {}))
    _load_weights(model, path, f"architecture {spec['arch']!r}")
    model.meta = meta
    return model.to(device).eval()


# ------------------------------------------------------------------------------- GAN nets

def save_gan_net(net: nn.Module, path: str | os.PathLike, kind: str, **metadata: Any) -> Path:
    """Write a DCGAN ``net`` to ``path`` (``.safetensors``) and ``path.json``, both atomically.

    Args:
        net: a :class:`DCGANGenerator` (``kind="generator"``) or :class:`DCGANDiscriminator`
            (``kind="discriminator"``).
        path: the file to write; another suffix is replaced by ``.safetensors``.
        kind: ``generator`` or ``discriminator``.
        **metadata: config, metrics, dataset, ...; must be JSON-serialisable. The net's spec and advkit's
            version are added from the net itself.

    Returns:
        The path written.

    Raises:
        AdvkitError: an unknown kind, a net of another class, or metadata that JSON cannot hold.
    """
    if kind not in GAN_KINDS:
        raise AdvkitError(f"kind must be one of {', '.join(GAN_KINDS)}, got {kind!r}")
    if not isinstance(net, _GAN_CLASS[kind]):
        raise AdvkitError(f"save_gan_net(kind={kind!r}) expects a {_GAN_CLASS[kind].__name__}, got "
                          f"{type(net).__name__}")
    meta = {"format": FORMAT, "advkit_version": advkit.__version__, "kind": kind, "spec": dict(net.spec),
            **metadata}
    return _write(_safetensors_path(path), net, meta)


def read_gan_metadata(path: str | os.PathLike, kind: str) -> dict:
    """The metadata of a GAN checkpoint.

    Args:
        path: the ``.safetensors`` file.
        kind: ``generator`` or ``discriminator``: what the file must hold.

    Returns:
        The metadata, with the net's ``spec``.

    Raises:
        AdvkitError: not a GAN checkpoint, one of the other kind, or one without the net's spec.
    """
    path = Path(path)
    meta = _read_header(path)
    if not isinstance(meta, dict):
        raise AdvkitError(f"{path}: advkit metadata is not a mapping")
    got = meta.get("kind")
    if got not in GAN_KINDS:
        # an advkit model: a classifier, unless it says it is a detector (files without kind are classifiers)
        what = (f"a {got if got in MODEL_KINDS else 'classifier'} checkpoint" if "model" in meta
                else "not a GAN checkpoint")
        raise AdvkitError(f"{path} is {what}, not a {kind}")
    if got != kind:
        raise AdvkitError(f"{path} is a {got} checkpoint, not a {kind}")
    spec = meta.get("spec")
    if not (isinstance(spec, dict) and isinstance(spec.get("arch"), str)):
        raise AdvkitError(f"{path}: advkit metadata lacks the network's spec")
    return meta


def _load_gan_net(path: str | os.PathLike, kind: str, device: str | torch.device) -> nn.Module:
    meta = read_gan_metadata(path, kind)
    net = build_gan_net(meta["spec"])
    if not isinstance(net, _GAN_CLASS[kind]):
        raise AdvkitError(f"{path}: its spec builds a {type(net).__name__}, not a {kind}")
    _load_weights(net, Path(path), f"{kind} spec")
    net.meta = meta  # type: ignore[assignment]  # torch's stub allows only tensors and modules here
    return net.to(device).eval()


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu") -> DCGANGenerator:
    """The generator saved at ``path`` (by :func:`save_gan_net`); no pickled code runs.

    Args:
        path: the ``.safetensors`` file.
        device: where the generator goes.

    Returns:
        The generator in eval mode; ``.meta`` holds its metadata.

    Raises:
        AdvkitError: not a generator checkpoint, or weights that do not fit its spec.
    """
    return cast(DCGANGenerator, _load_gan_net(path, "generator", device))  # the class is checked on loading


def load_discriminator(path: str | os.PathLike, device: str | torch.device = "cpu") -> DCGANDiscriminator:
    """The discriminator saved at ``path`` (by :func:`save_gan_net`); no pickled code runs.

    Args:
        path: the ``.safetensors`` file.
        device: where the discriminator goes.

    Returns:
        The discriminator in eval mode, one raw logit per image (wrap it in ``TwoLogit`` for a 2-class
        model); ``.meta`` holds its metadata.

    Raises:
        AdvkitError: not a discriminator checkpoint, or weights that do not fit its spec.
    """
    return cast(DCGANDiscriminator, _load_gan_net(path, "discriminator", device))  # checked on loading

