"""``advkit train``: training commands (``classifier``, ``detector``, ``gan``)."""

from __future__ import annotations

import sys

import click

from advkit.cli._common import default_out, hold_out, model_options, options_from


@click.group()
def train() -> None:
    """Train models."""


@train.command()
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False),
              help="YAML config (a diff over the defaults).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, e.g. --set optim.lr=0.01.")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder (default advkit_runs/train-TIME).")
@click.option("--data-root", help="Where named datasets are (else $ADVKIT_DATA, else ./datasets).")
@click.option("--resume", is_flag=True, help="Continue from OUT/last.ckpt (written atomically every epoch).")
@click.option("--model", "model_name", help="The architecture (config model.name): a registered name, timm:NAME or "
                                            "torchvision:NAME; with --weights, fine-tune from those weights.")
@click.option("--skip-bad", is_flag=True,
              help="imagefolder:/csv: data: leave unreadable image files out (config data.skip_bad).")
@model_options
def classifier(config_path, sets, out, data_root, resume, model_name, skip_bad, **model_kw):
    """Train a classifier; writes OUT/model.safetensors (+ .json), config.yaml and metrics.jsonl.

    Under `torchrun --nproc_per_node=N` the same command trains with DDP; only rank 0 prints and writes.
    """
    import dataclasses

    from advkit.runtime.distributed import is_main_process

    # under torchrun only rank 0 speaks for the run
    echo = click.echo if is_main_process() else (lambda *a, **k: None)

    from advkit.config import load_config
    from advkit.train import TrainConfig, train_classifier

    cfg = load_config(TrainConfig, config_path, sets)
    if data_root:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=data_root))
    if skip_bad:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, skip_bad=True))
    cfg = _with_model_options(cfg, model_name, options_from(model_kw))
    if resume and not out:
        raise click.UsageError("--resume needs --out DIR (the run to continue)")
    out_dir = hold_out(out if out else default_out("train"))
    o = cfg.objective
    what = o.name if o.name == "clean" else f"{o.name}, eps {o.eps:g}"
    echo(f"training {cfg.model.name} on {cfg.data.dataset} ({what}, {cfg.epochs} epochs) -> {out_dir}")
    _, metrics = train_classifier(cfg, out_dir, progress=True, resume=resume, on_epoch=_print_epoch)
    rob = "" if metrics.get("robust_acc") is None else f", PGD-{cfg.eval.steps} robust {metrics['robust_acc']:.2%}"
    echo(f"final: clean {metrics['clean_acc']:.2%}{rob} (epoch {metrics['epoch']}); "
               f"model: {out_dir / 'model.safetensors'}")


def _with_model_options(cfg, model_name, o):
    """``cfg`` with --model and the model options: --weights is ``init``, the others go under ``model``."""
    import dataclasses

    from advkit.errors import AdvkitError

    if o.input_size is not None:
        raise AdvkitError("--input-size: training runs at the data's image size; resize the data instead")
    m = cfg.model
    m = dataclasses.replace(m, name=model_name or m.name, num_classes=o.num_classes or m.num_classes,
                            mean=o.mean or m.mean, std=o.std or m.std)
    try:
        return dataclasses.replace(cfg, model=m, init=o.weights or cfg.init)
    except ValueError as e:
        raise AdvkitError(str(e)) from None


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
@click.option("--skip-bad", is_flag=True,
              help="imagefolder:/csv: sources: leave unreadable image files out (config data.skip_bad).")
def detector(config_path, sets, out, data_root, resume, skip_bad):
    """Train a fake-image detector (0 real, 1 fake) and evaluate it: clean, targeted PGD evasion, laundering.

    Writes OUT/model.safetensors (what `advkit detect` loads), metrics.jsonl, detect_report.json and the
    harness's reports (report.json, report.md, report.html with ROC curves, junit.xml). Exit 1 when a gate
    of the config's `gates:` fails.
    """
    import dataclasses

    from advkit.config import load_config
    from advkit.detect.config import DetectorConfig
    from advkit.detect.report import summary_text
    from advkit.detect.train import data_name, train_detector
    from advkit.runtime.distributed import is_main_process

    cfg = load_config(DetectorConfig, config_path, sets)
    if data_root:
        cfg = dataclasses.replace(cfg, data_root=data_root)
    if skip_bad:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, skip_bad=True))
    if resume and not out:
        raise click.UsageError("--resume needs --out DIR (the run to continue)")
    out_dir = hold_out(out if out else default_out("detector"))
    o = cfg.train.objective
    what = o.name if o.name == "clean" else f"{o.name}, eps {o.eps:.4g}"
    members = (f", an ensemble of {cfg.ensemble} (seeds {cfg.train.seed}-{cfg.train.seed + cfg.ensemble - 1})"
               if cfg.ensemble > 1 else "")
    if is_main_process():  # under torchrun only rank 0 speaks for the run
        click.echo(f"training detector {cfg.train.model.name} on {data_name(cfg.data)} ({what}, "
                   f"{cfg.train.epochs} epochs{members}) -> {out_dir}")
    _, report = train_detector(cfg, out_dir, progress=True, resume=resume, on_epoch=_print_detector_epoch)
    if "evaluation" not in report:  # another rank under torchrun: rank 0 evaluates, reports and gates
        return
    click.echo(summary_text(report["evaluation"]))
    click.echo(f"model: {out_dir / 'model.safetensors'}; reports: {out_dir / 'report.html'} (also .md, .json, "
               f"junit.xml) and {out_dir / 'detect_report.json'}")
    gates = report["report"]["gates"]
    failed = [g for g in gates if not g["passed"]]
    for g in failed:
        click.echo(f"GATE FAILED {g['name']}: {g['message']}", err=True)
    if failed:
        sys.exit(1)
    if gates:
        click.echo(f"all {len(gates)} gates passed")


def _print_detector_epoch(m: dict) -> None:
    rob = "" if m.get("robust_acc") is None else f"  val PGD acc {m['robust_acc']:.2%}"
    member = f"member {m['member']}  " if "member" in m else ""
    click.echo(f"{member}epoch {m['epoch']:>3}  loss {m['train_loss']:.4f}  train acc {m['train_acc']:.2%}  "
               f"val acc {m['clean_acc']:.2%}{rob}  {m['epoch_time_s']:.1f}s")


from advkit.cli.gan import gan_cmd  # noqa: E402  (at the end: gan.py does not import this module)

train.add_command(gan_cmd, name="gan")
