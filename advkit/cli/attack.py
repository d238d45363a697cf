"""``advkit attack``: run FGSM, PGD or any registered attack on a model and report what it did."""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path

import click
import numpy as np
import torch

from advkit.cli._common import default_out, hold_out, model_options, options_from, parse_eps_list, resolve_model
from advkit.errors import AdvkitError


def _write_outputs(out: Path, sweep, data, summary: dict) -> list[Path]:
    from advkit.runtime.io import atomic_write_bytes, atomic_write_json
    from advkit.viz import adversarial_grid_png

    out.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    extra = {"targets": sweep.targets.numpy()} if sweep.targets is not None else {}
    np.savez_compressed(buf, x=sweep.x.numpy(), y=sweep.y.numpy(), eps=np.array([r.eps for r in sweep.results]),
                        x_adv=sweep.x_adv.numpy(), pred_clean=sweep.pred_clean.numpy(),
                        pred_adv=sweep.pred_adv.numpy(), **extra)
    atomic_write_bytes(out / "adversarial.npz", buf.getvalue())
    written = [out / "adversarial.npz"]
    for i, r in enumerate(sweep.results):
        # show what the attack did: samples it flipped first, then the rest, in data order
        flipped = (sweep.pred_clean == sweep.y) & (sweep.pred_adv[i] != sweep.y)
        idx = torch.cat([flipped.nonzero().flatten(), (~flipped).nonzero().flatten()])[:8]
        png = adversarial_grid_png(sweep.x[idx], sweep.x_adv[i][idx], sweep.y[idx], sweep.pred_clean[idx],
                                   sweep.pred_adv[i][idx],
                                   data.classes, title=f"{sweep.attack} {sweep.norm} eps={r.eps:g}: robust "
                                   f"acc {r.robust_acc:.1%} (label true/pred, red = wrong)")
        path = out / f"grid_eps{r.eps:g}.png"
        atomic_write_bytes(path, png)
        written.append(path)
    atomic_write_json(out / "summary.json", summary)  # last: its presence means the run is complete
    return [out / "summary.json"] + written


@click.command()
@click.option("--fgsm", "use_fgsm", is_flag=True, help="FGSM (one signed-gradient step).")
@click.option("--pgd", "use_pgd", is_flag=True, help="PGD (iterated, projected, random start).")
@click.option("--attack", "name", metavar="NAME", help="Any registered attack, e.g. foolbox:LinfDeepFoolAttack.")
@click.option("--eps", default="0.1", show_default=True, help="One eps or a comma list, pixel units (8/255 ok).")
@click.option("--steps", type=click.IntRange(1, 100_000), help="Iterations (PGD default 10).")
@click.option("--alpha", type=str, help="PGD step size (default 2.5*eps/steps).")
@click.option("--norm", type=click.Choice(["linf", "l2"]), help="PGD norm (default linf).")
@click.option("--restarts", type=click.IntRange(1, 10_000), help="PGD random restarts (default 1).")
@click.option("--targeted", is_flag=True,
              help="Targeted attack: push each image towards a target class (chosen by --target); success "
                   "then means reaching it.")
@click.option("--target", "target_mode", type=click.Choice(["random", "least-likely", "next"]),
              help="How --targeted picks each image's target, never its true class: random (default), "
                   "least-likely (the model's lowest-scored class on the clean image) or next ((label+1) mod K).")
@click.option("--model", help="A checkpoint (.safetensors), a registry name, timm:NAME or torchvision:NAME (with "
                               "--weights), py:module:factory, file.py:factory or a TorchScript file (docs/models.md); "
                               "default: the cached MNIST model.")
@model_options
@click.option("--data", "data_spec", default="mnist", show_default=True,
              help="Dataset: mnist, cifar10, npz:PATH, folder:PATH, imagefolder:PATH or csv:FILE (read at the "
                   "model's input size).")
@click.option("--skip-bad", is_flag=True, help="imagefolder:/csv: leave unreadable image files out (default: fail, "
                                               "listing them).")
@click.option("--split", type=click.Choice(["test", "train"]), default="test", show_default=True)
@click.option("--data-root", help="Where named datasets are (else $ADVKIT_DATA, else ./datasets).")
@click.option("--download", is_flag=True, help="Let torchvision download a named dataset.")
@click.option("-n", "n", type=int, default=1000, show_default=True,
              help="How many images (from the start of the split).")
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N.")
@click.option("--seed", type=click.IntRange(-(2**63), 2**63 - 1), default=0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), help="Output folder (default advkit_runs/attack-TIME).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON (for programs).")
@click.option("--quiet", is_flag=True, help="No progress bar (there is none when stderr is not a terminal).")
def attack(use_fgsm, use_pgd, name, eps, steps, alpha, norm, restarts, targeted, target_mode, model, data_spec, split,
           data_root, download, n, batch_size, device, seed, out, as_json, quiet, skip_bad=False, **model_kw):
    """Attack a model: `advkit attack --fgsm` breaks the default MNIST classifier."""
    from tqdm import tqdm

    from advkit.attacks import get_attack
    from advkit.config import parse_number
    from advkit.data import StreamDataset, open_dataset
    from advkit.eval import attack_sweep
    from advkit.runtime.device import resolve_device, seed_everything

    if use_fgsm + use_pgd + bool(name) != 1:
        raise click.UsageError("choose exactly one of --fgsm, --pgd or --attack NAME")
    if n < 1 or batch_size < 1:
        raise AdvkitError("-n and --batch-size must be >= 1")
    if target_mode and not targeted:
        raise click.UsageError("--target chooses the targets of a targeted attack: add --targeted")

    def echo(message: str) -> None:  # with --json, stdout carries only the JSON summary
        click.echo(message, err=as_json)

    attack_name = "fgsm" if use_fgsm else "pgd" if use_pgd else name
    params = {"steps": steps, "alpha": parse_number(alpha, "--alpha") if alpha else None, "norm": norm,
              "restarts": restarts}
    atk = get_attack(attack_name, **params)
    eps_list = parse_eps_list(eps)
    model_opts = options_from(model_kw)
    out_dir = hold_out(out if out else default_out("attack"))
    dev = resolve_device(device)
    seed_everything(seed)
    data = open_dataset(data_spec, split, root=data_root, download=download, skip_bad=skip_bad,
                        num_workers=2).subset(n)
    net = resolve_model(model, data, data_root, dev, echo, options=model_opts)
    if isinstance(data, StreamDataset):  # the first n files, decoded at the model's input size
        data = data.for_model(net).materialize()
    spec = getattr(net, "spec", {})
    expected = (spec["in_chans"], spec["input_size"], spec["input_size"]) if "in_chans" in spec else None
    if expected and tuple(expected) != data.image_shape and not getattr(net, "adapts", False):
        raise AdvkitError(f"the model takes images of shape {tuple(expected)} but {data_spec} has "
                          f"{data.image_shape}")
    t0 = time.perf_counter()
    # progress for people watching a terminal only: never in logs, pipes or captured output
    with tqdm(total=len(data) * len(eps_list), unit="img", desc=atk.name, file=sys.stderr, leave=False,
              disable=quiet or not sys.stderr.isatty()) as bar:
        sweep = attack_sweep(net, data, atk, eps_list, batch_size=batch_size, device=dev, seed=seed,
                             targeted=targeted, target=target_mode or "random", on_batch=bar.update)
    summary = {"attack": atk.name, "params": atk.kwargs, "norm": atk.norm, "model": model or "default",
               "data": data_spec, "split": split, "n": len(data), "device": str(dev), "seed": seed,
               "targeted": targeted, "target": sweep.target, "results": sweep.summary()["results"],
               "total_time_s": round(time.perf_counter() - t0, 3)}
    if getattr(net, "origin", None):
        summary["model_loaded"] = net.origin  # form, spec, weights file and sha256, normalization, input size
    files = _write_outputs(out_dir, sweep, data, summary)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    goal = f", targeted ({sweep.target} targets; success = target reached)" if targeted else ""
    click.echo(f"\n{atk.name} ({atk.norm}) on {len(data)} images of {data_spec}/{split}, device {dev}{goal}")
    head = (f"{'eps':>8} {'clean acc':>10} {'robust acc':>11} {'success':>8} {'mean norm':>10} {'max norm':>9} "
            f"{'img/s':>8}")
    click.echo(head)
    click.echo("-" * len(head))
    for r in sweep.results:
        click.echo(f"{r.eps:>8.4g} {r.clean_acc:>10.2%} {r.robust_acc:>11.2%} {r.success_rate:>8.1%} "
                   f"{r.mean_norm:>10.4f} {r.max_norm:>9.4f} {r.images_per_s:>8.0f}")
    click.echo(f"\nwrote {out_dir}/: " + ", ".join(p.name for p in files))
