"""GAN checkpoints: a generator or a discriminator in safetensors, with its metadata as JSON in the file's
header (key ``advkit``, as classifier checkpoints) and beside it (``.json``).

The metadata names the ``kind`` (``generator`` or ``discriminator``) and the network's ``spec``; loading
rebuilds the network with :func:`advkit.gan.build_gan_net` and never unpickles anything. Each loader
refuses the other kinds (and classifier checkpoints) with one clear error, and advkit's classifier loader
refuses GAN checkpoints.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

import advkit
from advkit.errors import AdvkitError
from advkit.models.dcgan import DCGANDiscriminator, DCGANGenerator, build_gan_net
from advkit.models.checkpoint import FORMAT, META_KEY
from advkit.runtime.io import atomic_write_bytes, atomic_write_json

KINDS = ("generator", "discriminator")
_CLASS = {"generator": DCGANGenerator, "discriminator": DCGANDiscriminator}


def save_gan_net(net: nn.Module, path: str | os.PathLike, kind: str, **metadata: Any) -> Path:
    """Write ``net`` to ``path`` (``.safetensors``) and ``path.json``, both atomically.

    ``kind`` is ``generator`` or ``discriminator``; ``metadata`` (config, metrics, dataset, ...) must be
    JSON-serialisable. The spec and advkit's version come from the net itself. Returns the path written.
    """
    from safetensors.torch import save as st_save

    if kind not in KINDS:
        raise AdvkitError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if not isinstance(net, _CLASS[kind]):
        raise AdvkitError(f"save_gan_net(kind={kind!r}) expects a {_CLASS[kind].__name__}, got "
                          f"{type(net).__name__}")
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    meta = {"format": FORMAT, "advkit_version": advkit.__version__, "kind": kind, "spec": dict(net.spec),
            **metadata}
    try:
        meta_json = json.dumps(meta)
    except TypeError as e:
        raise AdvkitError(f"checkpoint metadata is not JSON-serialisable: {e}") from None
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    atomic_write_bytes(path, st_save(state, metadata={META_KEY: meta_json}))
    atomic_write_json(path.with_suffix(".json"), meta)
    return path


def read_gan_metadata(path: str | os.PathLike, kind: str) -> dict:
    """The metadata of the GAN checkpoint at ``path``, which must hold a ``kind`` net; errors otherwise."""
    from safetensors import safe_open

    path = Path(path)
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
        meta = json.loads(header[META_KEY])
    except json.JSONDecodeError:
        raise AdvkitError(f"{path}: advkit metadata is not valid JSON") from None
    if not isinstance(meta, dict):
        raise AdvkitError(f"{path}: advkit metadata is not a mapping")
    got = meta.get("kind")
    if got not in KINDS:
        what = "a classifier checkpoint" if "model" in meta else "not a GAN checkpoint"
        raise AdvkitError(f"{path} is {what}, not a {kind}")
    if got != kind:
        raise AdvkitError(f"{path} is a {got} checkpoint, not a {kind}")
    spec = meta.get("spec")
    if not (isinstance(spec, dict) and isinstance(spec.get("arch"), str)):
        raise AdvkitError(f"{path}: advkit metadata lacks the network's spec")
    return meta


def _load(path: str | os.PathLike, kind: str, device: str | torch.device) -> nn.Module:
    from safetensors.torch import load_file

    meta = read_gan_metadata(path, kind)
    net = build_gan_net(meta["spec"])
    if not isinstance(net, _CLASS[kind]):
        raise AdvkitError(f"{path}: its spec builds a {type(net).__name__}, not a {kind}")
    state = load_file(str(path))
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = [f"{label} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
                 if keys]
        raise AdvkitError(f"{path}: weights do not match the metadata's {kind} spec ({'; '.join(parts)})")
    net.load_state_dict(state)
    net.meta = meta  # type: ignore[attr-defined]
    return net.to(device).eval()


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu") -> DCGANGenerator:
    """The generator saved at ``path``, in eval mode on ``device``; ``.meta`` holds its metadata."""
    return _load(path, "generator", device)  # type: ignore[return-value]


def load_discriminator(path: str | os.PathLike, device: str | torch.device = "cpu") -> DCGANDiscriminator:
    """The discriminator saved at ``path`` (raw-logit output; wrap in ``TwoLogit`` for a 2-class model)."""
    return _load(path, "discriminator", device)  # type: ignore[return-value]
