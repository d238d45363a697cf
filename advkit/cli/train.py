"""``advkit train``: training commands (``classifier`` now; detectors and GANs join this group)."""

from __future__ import annotations

from pathlib import Path

import click

from advkit.cli._common import default_out


@click.group()
def train() -> None:
    """Train models."""


@train.command()
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), help="YAML config (a diff over the defaults).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config key, e.g. --set optim.lr=0.01.")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder (default advkit_runs/train-TIME).")
@click.option("--data-root", help="Where named datasets are (else $ADVKIT_DATA, else ./datasets).")
def classifier(config_path, sets, out, data_root):
    """Train a classifier; writes OUT/model.safetensors (+ .json), config.yaml and metrics.jsonl."""
    import dataclasses

    from advkit.config import load_config
    from advkit.train import TrainConfig, train_classifier

    cfg = load_config(TrainConfig, config_path, sets)
    if data_root:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=data_root))
    out_dir = Path(out) if out else default_out("train")
    click.echo(f"training {cfg.model.name} on {cfg.data.dataset} ({cfg.objective}, {cfg.epochs} epochs) -> {out_dir}")
    _, metrics = train_classifier(cfg, out_dir, progress=True)
    click.echo(f"final test accuracy {metrics['test_acc']:.2%} after {metrics['epoch']} epochs; "
               f"model: {out_dir / 'model.safetensors'}")
