"""One prepared check of advkit's GPU paths, end to end, with figures (issue 21); ``bench/gpu_check.sh`` runs it.

On a CUDA machine (< 10 minutes on one modern GPU):

1. fast adversarial training (FGSM-RS) of PreAct-ResNet-18 on CIFAR-10 for one epoch with ``compile: true``
   (configs/train/cifar10_fgsm_rs.yaml), with bf16 AMP and channels_last;
2. an attack sweep on that model under bf16 autocast and channels_last: FGSM and PGD-10 at 2, 4 and 8/255,
   each adversarial batch checked against its bound (``||x_adv - x||_inf <= eps + 1e-6``), accuracy and
   images per second per attack;
3. one epoch of the shipped MNIST GAN recipe (configs/gan/dcgan_mnist_fast.yaml), steps per second;
4. ``advkit eval -c configs/eval/mnist_ci.yaml`` on CUDA (its gates decide the step);
5. with two or more GPUs, a two-process nccl ``torchrun`` of the GAN trainer; otherwise skipped, the reason
   recorded.

Every step is timed and recorded, a failing step does not stop the others, and the exit status is 1 when any
step failed. The result file (``bench/results/gpu_check.json`` on CUDA, through ``bench._common.write_result``)
names the GPU. Without CUDA (or with ``--tiny``) the same steps run at a tiny size on the CPU, so the script is
exercised in CI (tests/test_bench_gpu_check_smoke.py) and cannot rot before a GPU is at hand.

Data: MNIST is embedded in the repository (datasets/mnist.npz). CIFAR-10 comes from ``--data-root``, else
``./.gpu-data`` when it exists (git-ignored, so a device machine that gets the working tree gets it only when
carried), else $ADVKIT_DATA. On a machine that receives the working tree:

    mkdir -p .gpu-data/cifar10
    cp $ADVKIT_DATA/cifar10/cifar10_test.npz $ADVKIT_DATA/cifar10/cifar10_train_1.npz .gpu-data/cifar10/  # 56 MB
    bash bench/gpu_check.sh                       # carry .gpu-data along

(with all of $ADVKIT_DATA/cifar10 copied, the epoch covers every training image present).
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable

import torch

from bench._common import REPO, RESULTS, write_result

EPS_GRID = (2 / 255, 4 / 255, 8 / 255)
BOUND_SLACK = 1e-6


def data_root(arg: str | None) -> str | None:
    """The data folder: ``arg``, else ./.gpu-data when present, else None ($ADVKIT_DATA, ./datasets)."""
    if arg:
        return arg
    local = REPO / ".gpu-data"
    return str(local) if local.is_dir() else None


def fast_at_epoch(device: str, tiny: bool, root: str | None, out: Path) -> tuple[dict, torch.nn.Module]:
    """Step 1: one epoch of FGSM-RS training of PreAct-ResNet-18 on CIFAR-10, compiled, bf16, channels_last."""
    from advkit.config import load_config
    from advkit.train import TrainConfig, train_classifier

    sets = ["epochs=1", f"device={device}", "compile=true", "channels_last=true", "tensorboard=false"]
    if device.startswith("cuda"):
        sets.append("amp=bf16")
    if tiny:
        sets += ["data.train_limit=64", "data.test_limit=32", "batch_size=32", "eval.n=32", "eval.steps=2",
                 "eval_batch_size=32", "model.kwargs={width: 8}"]
    if root:
        sets.append(f"data.root={root}")
    cfg = load_config(TrainConfig, REPO / "configs" / "train" / "cifar10_fgsm_rs.yaml", sets)
    backend = "inductor"
    compile_ = torch.compile
    if tiny and not device.startswith("cuda"):
        # inductor's C++ build of a ResNet takes minutes on a small CPU: the tiny run traces the same graph
        # through dynamo (backend eager), the compile path without the code generation
        backend = "eager"
        torch.compile = functools.partial(compile_, backend="eager")  # type: ignore[assignment]
    t0 = time.perf_counter()
    try:
        model, metrics = train_classifier(cfg, out)
    finally:
        torch.compile = compile_  # type: ignore[assignment]
    wall = time.perf_counter() - t0
    fig = {"config": "configs/train/cifar10_fgsm_rs.yaml", "sets": sets, "compile_backend": backend,
           "wall_s": round(wall, 2), "epoch_metrics": metrics}
    return fig, model


def attack_sweep(model: torch.nn.Module, device: str, tiny: bool, root: str | None) -> dict:
    """Step 2: FGSM and PGD-10 over the eps grid under bf16 autocast and channels_last, bounds checked."""
    from advkit.attacks import fgsm, pgd
    from advkit.data import load_dataset

    dev = torch.device(device)
    n = 32 if tiny else 1000
    test = load_dataset("cifar10", "test", root=root).subset(n)
    x, y = (t.to(dev) for t in test.tensors())
    model = model.to(dev).eval().to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
    dtype = torch.bfloat16
    rows = []
    gen = torch.Generator(device=dev).manual_seed(0)
    with torch.autocast(dev.type, dtype=dtype):
        with torch.no_grad():
            clean = (model(x).argmax(1) == y).float().mean().item()
        for eps in EPS_GRID:
            for name, fn in (("fgsm", lambda xb, yb, e: fgsm(model, xb, yb, eps=e)),
                             ("pgd10", lambda xb, yb, e: pgd(model, xb, yb, eps=e, steps=10, generator=gen))):
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                x_adv = fn(x, y, eps)
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                dt = time.perf_counter() - t0
                linf = (x_adv.float() - x.float()).abs().amax().item()
                with torch.no_grad():
                    acc = (model(x_adv).argmax(1) == y).float().mean().item()
                rows.append({"attack": name, "eps": eps, "robust_acc": acc, "max_linf": linf,
                             "bound_ok": linf <= eps + BOUND_SLACK,
                             "in_box": bool(x_adv.min() >= 0 and x_adv.max() <= 1),
                             "images_per_s": round(len(x) / dt, 1), "seconds": round(dt, 3)})
    ok = all(r["bound_ok"] and r["in_box"] for r in rows)
    return {"n": n, "amp": "bf16", "channels_last": True, "clean_acc": clean, "rows": rows, "bounds_ok": ok}


def gan_epoch(device: str, tiny: bool, out: Path) -> dict:
    """Step 3: one epoch of the shipped MNIST GAN recipe, timed."""
    from advkit.config import load_config
    from advkit.gan import GanConfig, train_gan

    sets = ["epochs=1", f"device={device}"]
    if tiny:
        sets += ["data.train_limit=128", "batch_size=32", "threads=1", "model.g_width=8", "model.d_width=8",
                 "grid_n=16"]
    cfg = load_config(GanConfig, REPO / "configs" / "gan" / "dcgan_mnist_fast.yaml", sets)
    t0 = time.perf_counter()
    _, m = train_gan(cfg, out)
    wall = time.perf_counter() - t0
    return {"config": "configs/gan/dcgan_mnist_fast.yaml", "sets": sets, "wall_s": round(wall, 2),
            "steps_per_s": round(m["d_steps"] / m["time_s"], 2) if m["time_s"] else None, "epoch_metrics": m}


def _run(cmd: list[str], timeout: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    return {"command": " ".join(cmd), "returncode": p.returncode, "wall_s": round(time.perf_counter() - t0, 2),
            "tail": (p.stdout[-1500:] + p.stderr[-1500:]).strip()}


def eval_ci(device: str, tiny: bool, out: Path) -> dict:
    """Step 4: ``advkit eval`` of configs/eval/mnist_ci.yaml on the device (exit 0: every gate held)."""
    cmd = [sys.executable, "-m", "advkit", "eval", "-c", "configs/eval/mnist_ci.yaml", "--out", str(out), "--quiet",
           "--set", f"device={device}"]
    if tiny:  # a handful of images and a LeNet trained on 256 (the default model would train for minutes on a
        # fresh cache): the figures mean nothing, the gates are not asked to hold
        from advkit.config import load_config
        from advkit.train import TrainConfig, train_classifier

        cfg = load_config(TrainConfig, None, ["epochs=1", "data.train_limit=256", "data.test_limit=64", "eval.n=32",
                                              "device=cpu", "tensorboard=false", f"data.root={REPO / 'datasets'}"])
        train_classifier(cfg, out.parent / "eval_model")
        cmd += ["--set", f"models=[{{name: tiny-lenet, model: {out.parent / 'eval_model' / 'model.safetensors'}}}]",
                "--set", "data.n=16", "--set", "checks.n=10", "--set", "gates.min_clean_acc=0",
                "--set", "gates.min_robust_acc={}", "--set", "gates.checks=[]"]
    res = _run(cmd, timeout=600)
    res["ok"] = res["returncode"] == 0
    return res


def nccl_two_process(device: str, tiny: bool, out: Path) -> dict:
    """Step 5: the GAN trainer under ``torchrun --nproc_per_node=2`` on nccl; skipped below two GPUs."""
    n_gpu = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n_gpu < 2:
        return {"skipped": f"{n_gpu} CUDA device(s): the two-process nccl run needs two"}
    torchrun = shutil.which("torchrun")
    launcher = [torchrun] if torchrun else [sys.executable, "-m", "torch.distributed.run"]
    cmd = [*launcher, "--standalone", "--nproc_per_node=2", "-m", "advkit", "train", "gan",
           "-c", "configs/gan/dcgan_mnist_fast.yaml", "--out", str(out), "--set", "epochs=1", "--set", "device=cuda"]
    if tiny:
        cmd += ["--set", "data.train_limit=256"]
    res = _run(cmd, timeout=600)
    res["ok"] = res["returncode"] == 0 and (out / "generator.safetensors").is_file()
    return res


def step(name: str, fn: Callable[[], dict], record: dict) -> None:
    """Run one step, recording its figures or its error (the other steps still run)."""
    t0 = time.perf_counter()
    print(f"gpu_check: {name} ...", flush=True)
    try:
        fig = fn()
        ok = fig.get("ok", fig.get("bounds_ok", True)) if "skipped" not in fig else True
        record[name] = {"ok": bool(ok), **fig}
    except Exception as e:  # a check reports every failure and goes on
        record[name] = {"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]}
    record[name]["step_s"] = round(time.perf_counter() - t0, 2)
    r = record[name]
    state = f"skipped ({r['skipped']})" if "skipped" in r else ("ok" if r["ok"] else "FAILED")
    why = "" if r["ok"] else ": " + r.get("error", r.get("tail", ""))[-500:]
    print(f"gpu_check: {name}: {state} in {r['step_s']:.1f} s{why}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="tiny sizes (the default without CUDA)")
    ap.add_argument("--device", default=None, help="default cuda when available, else cpu")
    ap.add_argument("--data-root", default=None, help="where cifar10/ is (default ./.gpu-data, else $ADVKIT_DATA)")
    ap.add_argument("--out", default=None, help="result JSON (default bench/results/gpu_check.json; "
                                                "gpu_check_tiny.json for tiny runs)")
    args = ap.parse_args(argv)
    cuda = torch.cuda.is_available()
    device = args.device or ("cuda" if cuda else "cpu")
    tiny = args.tiny or not device.startswith("cuda")
    root = data_root(args.data_root)
    record: dict = {}
    t0 = time.perf_counter()
    holder: dict = {}
    with tempfile.TemporaryDirectory(prefix="advkit-gpu-check-") as tmp:
        work = Path(tmp)

        def at() -> dict:
            fig, holder["model"] = fast_at_epoch(device, tiny, root, work / "fast_at")
            return fig

        def sweep() -> dict:
            if "model" not in holder:
                raise RuntimeError("no model: the fast-AT step failed")
            return attack_sweep(holder["model"], device, tiny, root)

        step("fast_at_epoch", at, record)
        step("attack_sweep_bf16_channels_last", sweep, record)
        step("gan_epoch", lambda: gan_epoch(device, tiny, work / "gan"), record)
        step("advkit_eval_mnist_ci", lambda: eval_ci(device, tiny, work / "eval"), record)
        step("nccl_two_process", lambda: nccl_two_process(device, tiny, work / "gan2"), record)
    ok = all(r["ok"] for r in record.values())
    result = {"tiny": tiny, "device": device, "data_root": root, "total_s": round(time.perf_counter() - t0, 1),
              "all_ok": ok, "gpu_count": torch.cuda.device_count() if cuda else 0, "steps": record}
    out = Path(args.out) if args.out else RESULTS / ("gpu_check_tiny.json" if tiny else "gpu_check.json")
    write_result(out, "gpu_check", result, device=device)
    print(f"gpu_check: {'all steps ok' if ok else 'FAILED: ' + ', '.join(k for k, r in record.items() if not r['ok'])}"
          f" in {result['total_s']:.0f} s; wrote {out}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
