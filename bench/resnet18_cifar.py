"""Proof on a real case: a torchvision ResNet-18 trained on CIFAR-10 the way users train it, saved the way users
save it (``torch.save(model.state_dict())``), then evaluated through every model form advkit takes, from the
CLI and from Python, with the same robust accuracy from each.

Forms: ``torchvision:resnet18`` + ``weights:`` (the state dict), a ``file.py:factory`` (user code that builds
the net and loads the file), a TorchScript archive (``torch.jit.trace``) and an advkit checkpoint
(``advkit.models.save``), all four in ONE ``advkit eval`` run (a subprocess, one config, one report);
``advkit attack`` with each of the four (subprocesses; its own seeding, so compared among themselves); and
the in-memory module through
:func:`advkit.testing.assert_robust`. Every model takes ``x in [0,1]``: the CLI forms are given the
training normalization (``mean``/``std``), the in-memory one is wrapped in
:class:`advkit.models.wrappers.Normalized`.

The asserted property: every form classifies every sample alike and is fooled on the same samples (per-sample
outcomes equal, hence the same clean and robust accuracy). Everything runs on one torch thread, in this
process and in the subprocesses: with two, a convolution may sum in another order, and a signed gradient step
turns a last-bit difference into a different adversarial example.

    python -m bench.resnet18_cifar                       # 3 min of training on 20k images, 500 test images
    python -m bench.resnet18_cifar --minutes 1 --n 100   # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from bench._common import RESULTS, write_result

FACTORY = '''"""The user's own code: build the net, load the weights they saved."""
from pathlib import Path

import torch
import torchvision


def build():
    net = torchvision.models.resnet18(num_classes=10)
    net.load_state_dict(torch.load(Path(__file__).with_name("resnet18_cifar.pt"), weights_only=True))
    return net
'''


def train(minutes: float, train_n: int, batch_size: int, seed: int, max_steps: int | None = None
          ) -> tuple[nn.Module, dict[str, Any]]:
    """A torchvision ResNet-18 trained for ``minutes`` (or ``max_steps``) on the first ``train_n`` CIFAR-10
    training images with flips, normalization in the data pipeline as users do; returns the bare net."""
    import torchvision

    from advkit.data import load_dataset

    torch.manual_seed(seed)
    data = load_dataset("cifar10", "train").subset(train_n)
    mean, std = torch.tensor(data.mean).view(1, 3, 1, 1), torch.tensor(data.std).view(1, 3, 1, 1)
    net = torchvision.models.resnet18(num_classes=10)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True)
    g = torch.Generator().manual_seed(seed)
    net.train()
    t0, steps, seen, losses = time.perf_counter(), 0, 0, []
    while time.perf_counter() - t0 < minutes * 60 and (max_steps is None or steps < max_steps):
        for x, y in data.batches(batch_size, shuffle=True, generator=g, drop_last=True):
            flip = torch.rand(x.shape[0], generator=g) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
            loss = nn.functional.cross_entropy(net((x - mean) / std), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps, seen = steps + 1, seen + x.shape[0]
            losses.append(loss.item())
            if time.perf_counter() - t0 >= minutes * 60 or (max_steps is not None and steps >= max_steps):
                break
    net.eval()
    return net, {"train_images": len(data), "steps": steps, "epochs": round(seen / len(data), 3),
                 "train_s": round(time.perf_counter() - t0, 1), "final_loss": round(sum(losses[-20:]) /
                                                                              max(len(losses[-20:]), 1), 4),
                 "mean": list(data.mean), "std": list(data.std)}


def cli(args: list[str], env: dict[str, str], cwd: Path) -> float:
    """Run ``python -m advkit ARGS``; its wall seconds. Raises with its stderr when it fails."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "advkit", *args], env=env, cwd=cwd, capture_output=True, text=True,
                       timeout=3600)
    if p.returncode != 0:
        raise RuntimeError(f"advkit {' '.join(args)} exited {p.returncode}: {p.stderr.strip()[-800:]}")
    return time.perf_counter() - t0


def outcomes(tm: dict[str, Any]) -> Any:
    return tm.get("per_sample", {}).get("fooled_by")


def run(work: Path, *, minutes: float, train_n: int, n: int, eps: float, steps: int, batch_size: int = 128,
        seed: int = 0, max_steps: int | None = None, attack_cli: bool = True,
        runner: Callable[[list[str], dict[str, str], Path], float] = cli) -> dict[str, Any]:
    """Train, save, export, evaluate through every form; returns the figures (raises when forms disagree).
    ``runner`` runs one ``advkit`` command line (default: a subprocess; the CI smoke test runs it in-process)."""
    import yaml

    from advkit.data import load_dataset
    from advkit.models import create_model, save
    from advkit.models.wrappers import Normalized
    from advkit.testing import assert_robust

    torch.set_num_threads(1)
    work.mkdir(parents=True, exist_ok=True)
    net, info = train(minutes, train_n, batch_size, seed, max_steps)
    weights = work / "resnet18_cifar.pt"
    torch.save(net.state_dict(), weights)                                   # the way users save
    (work / "factory.py").write_text(FACTORY)
    torch.jit.trace(net, torch.rand(2, 3, 32, 32)).save(str(work / "resnet18_cifar.ts"))
    norm = {"mean": info["mean"], "std": info["std"]}
    wrapped = create_model("torchvision:resnet18", num_classes=10, in_chans=3, input_size=32, **norm)
    wrapped.net.load_state_dict(net.state_dict())
    save(wrapped, work / "resnet18_cifar.safetensors", dataset="cifar10", classes=load_dataset("cifar10").classes)
    attack = {"name": "pgd", "steps": steps}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    forms = {"torchvision": {"model": "torchvision:resnet18", "weights": str(weights), "num_classes": 10,
                             "input_size": 32, **norm},
             "py-factory": {"model": f"{work / 'factory.py'}:build", "input_size": 32, **norm},
             "torchscript": {"model": str(work / "resnet18_cifar.ts"), "input_size": 32, **norm},
             "advkit-checkpoint": {"model": str(work / "resnet18_cifar.safetensors")}}
    cfg = {"models": [{"name": k, **v} for k, v in forms.items()],
           "data": {"dataset": "cifar10", "split": "test", "n": n},
           "threat_models": [{"norm": "linf", "eps": [eps], "attacks": [attack]}],
           "checks": {"enabled": False}, "seed": seed, "batch_size": batch_size, "device": "cpu"}
    (work / "eval.yaml").write_text(yaml.safe_dump(cfg))
    timing = {"eval_cli_s": round(runner(["eval", "-c", str(work / "eval.yaml"), "--out", str(work / "eval"),
                                       "--quiet"], env, work), 1)}
    report = json.loads((work / "eval" / "report.json").read_text())
    rows = {m["name"]: m for m in report["models"]}

    x, y = load_dataset("cifar10", "test").subset(n).tensors()
    t0 = time.perf_counter()
    mem = assert_robust(Normalized(net, info["mean"], info["std"]), (x, y), eps=eps, attack=attack,
                        min_robust_acc=0.0, n=n, batch_size=batch_size, seed=seed, checks=False)
    timing["assert_robust_s"] = round(time.perf_counter() - t0, 1)
    rows["in-memory (assert_robust)"] = mem.to_dict()["models"][0]

    figures: dict[str, Any] = {}
    for name, m in rows.items():
        tm = m["threat_models"][0]
        figures[name] = {"clean_acc": m["clean_acc"], "robust_acc": tm["worst_case"][0]["robust_acc"],
                         "robust_acc_ci": tm["worst_case"][0]["robust_acc_ci"], "source": m["source"],
                         "loaded": m.get("loaded")}
    ref = rows["torchvision"]["threat_models"][0]
    same_outcomes = {k: outcomes(m["threat_models"][0]) == outcomes(ref) for k, m in rows.items()}
    same_data = mem.data.fingerprint == report["data"]["fingerprint"]

    attack_rows: dict[str, Any] = {}
    if attack_cli:
        for name, spec in forms.items():
            out = work / f"attack-{name}"
            args = ["attack", "--pgd", "--steps", str(steps), "--eps", f"{eps!r}", "--data", "cifar10", "-n",
                    str(n), "--model", spec["model"], "--out", str(out), "--seed", str(seed), "--quiet",
                    "--batch-size", str(batch_size)]
            if "mean" in spec:
                args += ["--input-size", "32", "--mean", ",".join(map(str, norm["mean"])), "--std",
                         ",".join(map(str, norm["std"]))]
            if "weights" in spec:
                args += ["--weights", spec["weights"], "--num-classes", "10"]
            timing[f"attack_cli_{name}_s"] = round(runner(args, env, work), 1)
            attack_rows[name] = json.loads((out / "summary.json").read_text())
    result = {"model": "torchvision resnet18 (ImageNet stem), CIFAR-10 32 px", "train": info, "n": n, "eps": eps,
              "attack": f"PGD-{steps} (linf)", "forms": figures, "same_per_sample_outcomes": same_outcomes,
              "same_data_fingerprint": same_data, "attack_cli": _attack_figures(attack_rows), "timing_s": timing,
              "torch_threads": 1}
    accs = {(f["clean_acc"], f["robust_acc"]) for f in figures.values()}
    if len(accs) != 1 or not all(same_outcomes.values()) or not same_data:
        raise AssertionError(f"the forms disagree: {json.dumps({k: figures[k] for k in figures})}; "
                             f"same outcomes {same_outcomes}; same data {same_data}")
    robust = {json.dumps(v, sort_keys=True) for v in result["attack_cli"].values()}
    if len(robust) > 1:
        raise AssertionError(f"advkit attack gives different results per form: {result['attack_cli']}")
    return result


def _attack_figures(rows: dict[str, Any]) -> dict[str, Any]:
    """Clean and robust accuracy per form and eps from ``advkit attack``'s summary.json."""
    return {name: [{k: r[k] for k in ("eps", "clean_acc", "robust_acc", "success_rate")} for r in s["results"]]
            for name, s in rows.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=3.0, help="training time budget")
    ap.add_argument("--train-n", type=int, default=20000)
    ap.add_argument("--n", type=int, default=500, help="test images evaluated")
    ap.add_argument("--eps", type=float, default=1 / 255)
    ap.add_argument("--steps", type=int, default=10, help="PGD steps")
    ap.add_argument("--work", default=None, help="folder for the weights, exports and reports (default: a temp)")
    ap.add_argument("--out", default=str(RESULTS / "resnet18_cifar.json"))
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    if args.work:
        result = run(Path(args.work), minutes=args.minutes, train_n=args.train_n, n=args.n, eps=args.eps,
                     steps=args.steps)
    else:
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            result = run(Path(tmp), minutes=args.minutes, train_n=args.train_n, n=args.n, eps=args.eps,
                         steps=args.steps)
    result["notes"] = ("loaded machine: 2 cores shared with other jobs; timings indicative only"
                       if load_before > 1.5 else "")
    write_result(args.out, "resnet18_cifar", result,
                 machine_extra={"load_avg_1min_before": round(load_before, 2),
                                "load_avg_1min_after": round(os.getloadavg()[0], 2)})
    print(json.dumps({k: result[k] for k in ("forms", "same_per_sample_outcomes", "attack_cli", "timing_s")},
                     indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
