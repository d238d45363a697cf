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
@click.option("--resume", is_flag=True, help="Continue from OUT/last.ckpt (written atomically every epoch).")
def classifier(config_path, sets, out, data_root, resume):
    """Train a classifier; writes OUT/model.safetensors (+ .json), config.yaml and metrics.jsonl.

    Under `torchrun --nproc_per_node=N` the same command trains with DDP; only rank 0 prints and writes.
    """
    import dataclasses
    import os

    # under torchrun only rank 0 speaks for the run
    echo = click.echo if os.environ.get("RANK", "0") == "0" else (lambda *a, **k: None)

    from advkit.config import load_config
    from advkit.train import TrainConfig, train_classifier

    cfg = load_config(TrainConfig, config_path, sets)
    if data_root:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=data_root))
    if resume and not out:
        raise click.UsageError("--resume needs --out DIR (the run to continue)")
    out_dir = Path(out) if out else default_out("train")
    o = cfg.objective
    what = o.name if o.name == "clean" else f"{o.name}, eps {o.eps:g}"
    echo(f"training {cfg.model.name} on {cfg.data.dataset} ({what}, {cfg.epochs} epochs) -> {out_dir}")
    _, metrics = train_classifier(cfg, out_dir, progress=True, resume=resume, on_epoch=_print_epoch)
    rob = "" if metrics.get("robust_acc") is None else f", PGD-{cfg.eval.steps} robust {metrics['robust_acc']:.2%}"
    echo(f"final: clean {metrics['clean_acc']:.2%}{rob} (epoch {metrics['epoch']}); "
               f"model: {out_dir / 'model.safetensors'}")


def _print_epoch(m: dict) -> None:
    rob = "" if m.get("robust_acc") is None else f"  robust {m['robust_acc']:.2%}"
    guard = "" if m.get("guard_robust_acc") is None else f"  guard {m['guard_robust_acc']:.2%}"
    click.echo(f"epoch {m['epoch']:>3}  loss {m['train_loss']:.4f}  clean {m['clean_acc']:.2%}{rob}{guard}  "
               f"lr {m['lr']:.2e}  {m['epoch_time_s']:.1f}s")
    if m.get("catastrophic_overfitting"):
        c = m["catastrophic_overfitting"]
        click.echo(f"catastrophic overfitting: held-out PGD accuracy fell to {c['guard_robust_acc']:.2%} "
                   f"(best {c['best_guard_robust_acc']:.2%} at epoch {c['best_epoch']}); {c['action']}")


from advkit.cli.gan import gan_cmd  # noqa: E402  (at the end: gan.py does not import this module)

train.add_command(gan_cmd, name="gan")
