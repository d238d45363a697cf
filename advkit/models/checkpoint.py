"""Checkpoints: weights in safetensors, metadata as JSON both inside the file's header and beside it.

Loading rebuilds the architecture from the metadata and never unpickles anything.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

import advkit
from advkit.errors import AdvkitError
from advkit.models.wrappers import Normalized
from advkit.runtime.io import atomic_write_bytes, atomic_write_json

META_KEY = "advkit"
FORMAT = 1


def save(model: Normalized, path: str | os.PathLike, **metadata: Any) -> Path:
    """Write ``model`` to ``path`` (``.safetensors``) and ``path.json``; both atomically.

    ``metadata`` (dataset, classes, input_shape, config, metrics, ...) must be JSON-serialisable. The
    architecture, normalization and advkit version are added from the model itself.
    """
    from safetensors.torch import save as st_save

    if not isinstance(model, Normalized):
        raise AdvkitError("advkit.models.save expects a model from advkit.models.create_model")
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    meta = {"format": FORMAT, "advkit_version": advkit.__version__, "model": model.spec,
            "normalization": model.normalization, **metadata}
    try:
        meta_json = json.dumps(meta)
    except TypeError as e:
        raise AdvkitError(f"checkpoint metadata is not JSON-serialisable: {e}") from None
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, st_save(state, metadata={META_KEY: meta_json}))
    atomic_write_json(path.with_suffix(".json"), meta)
    return path


RUN_CHECKPOINT = "model.safetensors"  # the final model a training run folder holds


def checkpoint_file(path: str | os.PathLike) -> Path:
    """``path`` as a checkpoint file: a training run folder (``advkit train ... --out DIR``) becomes
    ``DIR/model.safetensors``; anything else is returned as given (whether it exists is the caller's check)."""
    path = Path(path)
    return path / RUN_CHECKPOINT if path.is_dir() else path


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata stored in an advkit checkpoint's header (a file or a run folder, see
    :func:`checkpoint_file`); errors if it is not one."""
    from safetensors import safe_open

    path = checkpoint_file(path)
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
    if isinstance(meta, dict) and meta.get("kind") in ("generator", "discriminator"):
        raise AdvkitError(f"{path} is a GAN {meta['kind']} checkpoint; a classifier is expected here "
                          f"(load it with advkit.gan.load_{meta['kind']})")
    spec = meta.get("model") if isinstance(meta, dict) else None
    if not (isinstance(spec, dict) and isinstance(spec.get("arch"), str)
            and all(isinstance(spec.get(k), int) for k in ("num_classes", "in_chans", "input_size"))
            and isinstance(spec.get("kwargs", {}), dict)):
        raise AdvkitError(f"{path}: advkit metadata lacks a complete model architecture (arch, num_classes, "
                          f"in_chans, input_size)")
    return meta


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> Normalized:
    """Rebuild the model from the checkpoint's metadata (a file or a run folder, see :func:`checkpoint_file`),
    load its weights, return it in eval mode."""
    from safetensors.torch import load_file

    from advkit.models.factory import create_model

    path = checkpoint_file(path)
    meta = read_metadata(path)
    spec, norm = meta["model"], meta.get("normalization") or {}
    model = create_model(spec["arch"], num_classes=spec["num_classes"], in_chans=spec["in_chans"],
                         input_size=spec["input_size"], mean=norm.get("mean"), std=norm.get("std"),
                         **spec.get("kwargs", {}))
    state = load_file(str(path))
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = [f"{label} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
                 if keys]
        raise AdvkitError(f"{path}: weights do not match the metadata's architecture "
                          f"{spec['arch']!r} ({'; '.join(parts)})")
    model.load_state_dict(state)
    model.meta = meta  # type: ignore[attr-defined]
    return model.to(device).eval()
