"""``advkit train``: training commands (``classifier``, ``detector``, ``gan``)."""

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


@train.command()
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False),
              help="YAML config (a diff over the defaults).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, e.g. --set train.epochs=5.")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder (default advkit_runs/detector-TIME).")
@click.option("--data-root", help="Where named datasets are (else $ADVKIT_DATA, else ./datasets).")
@click.option("--resume", is_flag=True, help="Continue from OUT/last.ckpt (written atomically every epoch).")
def detector(config_path, sets, out, data_root, resume):
    """Train a fake-image detector (0 real, 1 fake) and evaluate it: clean, targeted PGD evasion, laundering.

    Writes OUT/model.safetensors (what `advkit detect` loads), detect_report.json, metrics.jsonl.
    """
    import dataclasses

    from advkit.config import load_config
    from advkit.detect.config import DetectorConfig
    from advkit.detect.train import data_name, train_detector

    cfg = load_config(DetectorConfig, config_path, sets)
    if data_root:
        cfg = dataclasses.replace(cfg, data_root=data_root)
    if resume and not out:
        raise click.UsageError("--resume needs --out DIR (the run to continue)")
    out_dir = Path(out) if out else default_out("detector")
    o = cfg.train.objective
    what = o.name if o.name == "clean" else f"{o.name}, eps {o.eps:.4g}"
    click.echo(f"training detector {cfg.train.model.name} on {data_name(cfg.data)} ({what}, {cfg.train.epochs} "
               f"epochs) -> {out_dir}")
    _, report = train_detector(cfg, out_dir, progress=True, resume=resume, on_epoch=_print_detector_epoch)
    click.echo(_detector_table(report["evaluation"], cfg.evaluation.pgd_steps))
    click.echo(f"report: {out_dir / 'detect_report.json'}; model: {out_dir / 'model.safetensors'}")


def _print_detector_epoch(m: dict) -> None:
    rob = "" if m.get("robust_acc") is None else f"  val PGD acc {m['robust_acc']:.2%}"
    click.echo(f"epoch {m['epoch']:>3}  loss {m['train_loss']:.4f}  train acc {m['train_acc']:.2%}  "
               f"val acc {m['clean_acc']:.2%}{rob}  {m['epoch_time_s']:.1f}s")


def _detector_table(ev: dict, steps: int) -> str:
    """The evaluation as a few aligned lines for people (the JSON report has everything)."""
    c = ev["clean"]
    cal = "" if c.get("acc_calibrated") is None else \
        f"  acc@{ev['calibrated_threshold']:.3g} (val-calibrated) {c['acc_calibrated']:.2%}"
    lines = [f"clean (test, n={ev['n_test']}): AUC {c['auc']:.4f}  AP {c['ap']:.4f}  EER {c['eer']:.2%}  "
             f"acc@{ev['threshold']:g} {c['acc']:.2%}{cal}"]
    for g, r in ev.get("per_generator", {}).items():
        lines.append(f"  {g}: AUC {r['auc']:.4f}  AP {r['ap']:.4f}" if r["auc"] is not None else f"  {g}: no fakes")
    sub = ev["subset"]
    if ev["robust"]:
        lines.append(f"evasion: targeted PGD-{steps} pushes fakes to 'real' (n={sub['n']}, clean AUC {sub['auc']:.4f})")
        lines.append(f"  {'eps':>8}  {'AUC':>6}  {'AP':>6}  {'fakes called real':>17}  {'AUC, reals attacked':>19}")
        for r in ev["robust"]:
            rev = f"{r['auc_reals_attacked']:.4f}" if "auc_reals_attacked" in r else "-"
            lines.append(f"  {r['label']:>8}  {r['auc']:.4f}  {r['ap']:.4f}  {r['fakes_called_real']:>17.2%}  "
                         f"{rev:>19}")
    if ev["laundering"]:
        lines.append(f"laundering (both classes, n={sub['n']}): " + "  ".join(
            f"{k} {v['auc']:.3f}" for k, v in ev["laundering"].items()))
    return "\n".join(lines)


from advkit.cli.gan import gan_cmd  # noqa: E402  (at the end: gan.py does not import this module)

train.add_command(gan_cmd, name="gan")
