"""``advkit eval``: the robustness harness; exit 0 when every gate holds, 1 when one fails, 2 on bad input."""

from __future__ import annotations

import dataclasses
import shutil
import sys

import click

from advkit.cli._common import default_out, hold_out

PROGRESS = ".eval_progress"  # per-batch results of a running eval, for --resume


@click.command("eval")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False),
              help="YAML eval config (configs/eval/...); defaults: the default MNIST model, L-inf 0.1/0.2/0.3.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config key, e.g. --set data.n=200.")
@click.option("--baseline", type=click.Path(dir_okay=False),
              help="A previous report.json: gates.max_drop applies to it.")
@click.option("--out", type=click.Path(file_okay=False), help="Report folder (default advkit_runs/eval-TIME).")
@click.option("--data-root", help="Where named datasets are (else $ADVKIT_DATA, else ./datasets).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--skip-bad", is_flag=True, help="Streamed data (imagefolder:, csv:): leave unreadable image files out "
                                               "(listed in the report) instead of failing; config data.skip_bad.")
@click.option("--resume", is_flag=True, help="Continue an interrupted eval into the same --out: batches it finished "
                                             "(kept in OUT/.eval_progress) are not attacked again.")
def eval_cmd(config_path, sets, baseline, out, data_root, quiet, skip_bad=False, resume=False):
    """Evaluate models against an attack suite: per-sample worst case over attacks, sanity checks, gates.

    With `detection.data` in the config the models are fake-image detectors: clean AUC/AP/EER, the
    targeted evasion attack per eps and the laundering grid on the real/fake test split, with the
    detector gates (min_auc, min_robust_auc, min_laundered_auc).

    Writes report.json, report.md, report.html and junit.xml to OUT. Under
    `torchrun --nproc_per_node=N` the samples are sharded over the ranks; rank 0 writes the same report.
    """
    from advkit.config import load_config
    from advkit.detect.config import EvalDetectionConfig
    from advkit.detect.report import run_detection_eval
    from advkit.eval.harness import run_eval
    from advkit.report import load_report, write_reports
    from advkit.runtime.device import resolve_device
    from advkit.runtime.distributed import init_distributed, is_main_process, shutdown

    main = is_main_process()
    echo = click.echo if main else (lambda *a, **k: None)
    cfg = load_config(EvalDetectionConfig, config_path, sets)
    if data_root:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=data_root))
    if skip_bad:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, skip_bad=True))
    base = load_report(baseline) if baseline else None
    out_dir = hold_out(out if out else default_out("eval"))
    device = resolve_device(cfg.device)
    dist = init_distributed(device.type)
    if dist.enabled and device.type == "cuda":
        import torch
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)

    def say(message: str) -> None:
        echo(message, err=True)

    try:
        if cfg.detection.enabled:  # the models are fake-image detectors
            report = run_detection_eval(cfg, device=device, dist=dist, baseline=base, say=say)
        else:
            report = run_eval(cfg, device=device, dist=dist, baseline=base, progress=not quiet, say=say,
                              progress_dir=out_dir / PROGRESS, resume=resume)
    finally:
        shutdown(dist)
    if report is None:
        return
    paths = write_reports(report, out_dir)
    shutil.rmtree(out_dir / PROGRESS, ignore_errors=True)  # the report is complete: the partial results go
    _print_summary(report, echo)
    echo(f"reports: {', '.join(str(p) for p in paths)}")
    failed = [g for g in report["gates"] if not g["passed"]]
    if failed:
        for g in failed:
            echo(f"GATE FAILED {g['name']}: {g['message']}", err=True)
        sys.exit(1)
    echo(f"all {len(report['gates'])} gates passed" if report["gates"] else "no gates configured")


def _print_summary(report: dict, echo) -> None:
    for m in report["models"]:
        if m.get("detection"):
            from advkit.detect.report import summary_text
            echo(f"{m['name']} (detector):")
            echo("\n".join("  " + line for line in summary_text(m["detection"]).splitlines()))
        else:
            echo(f"{m['name']}: clean {m['clean_acc']:.1%} on {m['n']} samples")
        for tm in m["threat_models"]:
            labels = [a["label"] for a in tm["attacks"]]
            head = "cumulative " if tm["mode"] == "cascade" else ""
            echo(f"  {tm['norm']:>5} eps | " + " | ".join(f"{head}{lbl}" for lbl in labels) + " | worst case")
            for i, w in enumerate(tm["worst_case"]):
                cells = [f"{a['results'][i]['robust_acc']:.1%}" for a in tm["attacks"]]
                echo(f"  {w['eps']:>9.4g} | " + " | ".join(cells) + f" | {w['robust_acc']:.1%}")
        bad = [c for c in m["checks"] if c["status"] in ("warn", "fail")]
        counts = {s: sum(c["status"] == s for c in m["checks"]) for s in ("pass", "warn", "fail", "skip")}
        echo("  checks: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v))
        for c in bad:
            echo(f"    {c['status'].upper()} {c['name']}: {c['message']}")
    t = report["timing"]
    echo(f"time {t['total_s']:.1f}s (attacks {t['attack_s']:.1f}s; the cascade saved about {t['time_saved_s']:.1f}s)")
