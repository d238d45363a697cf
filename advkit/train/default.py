"""The default model: a LeNet trained once on the embedded MNIST and cached under the user's cache folder; and
:func:`resolve`, the one path from a model spec (the default model, a checkpoint, a model name) to a model."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import torch

from advkit.config import to_yaml
from advkit.data import ArrayDataset
from advkit.errors import AdvkitError
from advkit.models import Normalized, load
from advkit.models.resolve import ModelOptions, Notes, resolve_model
from advkit.runtime.device import cache_dir
from advkit.train.config import TrainConfig
from advkit.train.trainer import train_classifier

log = logging.getLogger(__name__)

DEFAULT_CONFIG = TrainConfig()  # lenet, MNIST, Adam 1e-3, 2 epochs, seed 0


def default_model_path(cfg: TrainConfig = DEFAULT_CONFIG) -> Path:
    """Where the default model trained with ``cfg`` is cached.

    Args:
        cfg: the default model's training config.

    Returns:
        A file in :func:`advkit.runtime.device.cache_dir` whose name holds a hash of the config.
    """
    # where the data lives does not change the model; everything else does
    data = dataclasses.replace(cfg.data, root=None, download=False)
    text = to_yaml(dataclasses.replace(cfg, data=data))
    # model keys added after the default model shipped stay out of the key at their defaults: caches survive
    text = text.replace("  mean: null\n  std: null\n  num_classes: null\n", "", 1)
    key = hashlib.sha256(text.encode()).hexdigest()[:12]
    return cache_dir() / f"default-{cfg.data.dataset}-{cfg.model.name}-{key}.safetensors"


def get_default_model(data_root: str | None = None, *, progress: bool = False,
                      cfg: TrainConfig = DEFAULT_CONFIG) -> tuple[Normalized, Path, bool]:
    """The cached default model, trained first when absent.

    Args:
        data_root: where MNIST is, should the model need training.
        progress: show a progress bar while training.
        cfg: the default model's training config.

    Returns:
        ``(model, path, trained_now)``.

    Raises:
        AdvkitError: training fails (e.g. MNIST is not found).
    """
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


def resolve(spec: str | None, data: ArrayDataset, device: str | torch.device = "cpu",
            say: Callable[[str], None] = log.warning, *, data_root: str | None = None, progress: bool = False,
            notes: Notes = Notes(), options: ModelOptions = ModelOptions()) -> Normalized:
    """The model ``spec`` names, in eval mode on ``device``: the one path from a model spec to a model.

    Args:
        spec: ``None`` or ``"default"`` for the cached default model (trained first when absent); anything
            else goes to :func:`advkit.models.resolve.resolve_model` (a checkpoint, or a model name built
            with random weights for ``data``).
        data: the data the model will see: a model built from a name takes its classes, image shape and
            normalization.
        device: where the model goes.
        say: told what happens, in the wording of ``notes``.
        data_root: where MNIST is, should the default model need training.
        progress: show a progress bar while training the default model.
        notes: the wording of what ``say`` is told.
        options: the user's ``--weights``, ``--num-classes``, ``--mean``, ``--std``, ``--input-size``
            (not for the default model).

    Returns:
        The model.

    Raises:
        AdvkitError: as :func:`advkit.models.resolve.resolve_model`, or when the default model's training fails.
    """
    if spec is None or spec == "default":
        if options.given:
            raise AdvkitError(f"{', '.join(options.given)} need a --model (e.g. timm:NAME or py:module:factory); "
                              f"the default model takes none")
        if not default_model_path().is_file():
            notes.tell(say, "default_training", spec=spec, path=default_model_path())
        model, path, _ = get_default_model(data_root, progress=progress)
        notes.tell(say, "default_loaded", spec=spec, path=path)
        return model.to(device).eval()
    c, h, _ = data.image_shape
    return resolve_model(spec, num_classes=data.num_classes, in_chans=c, input_size=h, mean=data.mean,
                         std=data.std, device=device, say=say, notes=notes, also=("default",), options=options)
