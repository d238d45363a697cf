"""Helpers shared by the command modules: resolving a --model, parsing eps lists, output folders."""

from __future__ import annotations

import time
from pathlib import Path

import click

from advkit.config import parse_number
from advkit.errors import AdvkitError


def parse_eps_list(text: str) -> list[float]:
    """``0.1,0.2`` or ``2/255,8/255``."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise AdvkitError("--eps needs at least one value")
    return [parse_number(t, "--eps") for t in items]


def default_out(kind: str) -> Path:
    return Path("advkit_runs") / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"


def resolve_model(spec: str | None, data, data_root: str | None, device, echo=click.echo):
    """A checkpoint path, a registry name (random init: says so), or None for the cached default model."""
    from advkit.models import checkpoint_file, create_model, load

    if spec is None:
        from advkit.train.default import default_model_path, get_default_model

        if not default_model_path().is_file():
            echo("No --model given: training the default MNIST classifier once (about a minute on a laptop "
                 f"CPU); it is cached at {default_model_path()}")
        model, path, _ = get_default_model(data_root, progress=True)
        echo(f"model: default MNIST LeNet ({path})")
        return model.to(device)
    path = Path(spec)
    if path.suffix == ".safetensors" or path.exists():
        path = checkpoint_file(path)
        model = load(path, device=device)
        echo(f"model: {path}")
        return model
    c, h, _ = data.image_shape
    model = create_model(spec, num_classes=data.num_classes, in_chans=c, input_size=h,
                         mean=data.mean, std=data.std).to(device).eval()
    echo(f"model: {spec} (random initialisation: train it first for meaningful numbers)")
    return model
