"""The default model: a LeNet trained once on the embedded MNIST and cached under the user's cache folder."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import tempfile
from pathlib import Path

from advkit.config import to_yaml
from advkit.models import Normalized, load
from advkit.train.config import TrainConfig
from advkit.train.trainer import train_classifier
from advkit.runtime.device import cache_dir

DEFAULT_CONFIG = TrainConfig()  # lenet, MNIST, Adam 1e-3, 2 epochs, seed 0: ~98.9% test accuracy


def default_model_path(cfg: TrainConfig = DEFAULT_CONFIG) -> Path:
    # where the data lives does not change the model; everything else does
    data = dataclasses.replace(cfg.data, root=None, download=False)
    key = hashlib.sha256(to_yaml(dataclasses.replace(cfg, data=data)).encode()).hexdigest()[:12]
    return cache_dir() / f"default-{cfg.data.dataset}-{cfg.model.name}-{key}.safetensors"


def get_default_model(data_root: str | None = None, *, progress: bool = False,
                      cfg: TrainConfig = DEFAULT_CONFIG) -> tuple[Normalized, Path, bool]:
    """``(model, path, trained_now)``: load the cached default model, training it first if absent."""
    path = default_model_path(cfg)
    if path.is_file():
        return load(path), path, False
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=data_root or cfg.data.root))
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        train_classifier(cfg, tmp, progress=progress)
        for suffix in (".json", ".safetensors"):  # weights last: their presence means "complete"
            shutil.move(str(Path(tmp) / f"model{suffix}"), str(path.with_suffix(suffix)))
    return load(path), path, True
