"""PGD-10 speed: advkit against the floor and its peers, in one process, on the same model and batch.

The floor is 10 forward + backward passes w.r.t. the input alone (parameters frozen, no step, no projection):
what any PGD-10 must at least spend. Methods are warmed up once, then timed round-robin (the order rotates
every round) so background load hits all of them alike; the median per method is reported. Targets: advkit at
most 1.05x the floor and no slower than the fastest peer; peak memory of advkit PGD at most 1.2x that of one
forward + backward.

Peers run twice: as a user calls them on a model straight from training (parameters require grad, so
foolbox's and ART's ``loss.backward()`` also computes weight gradients), and with the parameters frozen (the
loop alone; advkit freezes them itself). The "fastest peer" is the fastest of either.

    python -m bench.attack_speed                 # MNIST LeNet batch 256, PreAct-ResNet-18 32x32 batch 64
    python -m bench.attack_speed --quick         # smoke run: tiny batches, 2 rounds, allocator memory only
    python -m bench.attack_speed --device cuda
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from advkit.attacks import pgd
from advkit.data import load_dataset
from advkit.errors import AdvkitError
from advkit.models import create_model
from bench._common import REPO, RESULTS, write_result

STEPS = 10
FLOOR_TARGET, MEMORY_TARGET = 1.05, 1.2
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
# batch, quick batch, rounds, quick rounds
CONFIGS = {
    "mnist_lenet": dict(model="lenet", in_chans=1, size=28, mean=(0.1307,), std=(0.3081,), eps=0.3,
                        batch=256, quick_batch=32, rounds=9, quick_rounds=2),
    "cifar_preact_resnet18": dict(model="preact_resnet18", in_chans=3, size=32, mean=CIFAR_MEAN, std=CIFAR_STD,
                                  eps=8 / 255, batch=64, quick_batch=4, rounds=5, quick_rounds=2),
}
LABELS = {"floor": "floor: 10 fwd+bwd w.r.t. x", "advkit": "advkit pgd", "torchattacks": "torchattacks PGD",
          "foolbox": "foolbox LinfPGD", "art": "ART ProjectedGradientDescent"}


# ---------------------------------------------------------------------------------------------- setup
def build(name: str, batch: int, device: torch.device) -> tuple[nn.Module, torch.Tensor, torch.Tensor, str]:
    """Model (random init, seed 0, eval mode) and one batch of real test images when present, else random."""
    c = CONFIGS[name]
    torch.manual_seed(0)
    model = create_model(c["model"], num_classes=10, in_chans=c["in_chans"], input_size=c["size"], mean=c["mean"],
                         std=c["std"]).eval().to(device)
    try:
        if c["model"] == "lenet":
            ds = load_dataset("mnist", "test")
        else:
            ds = load_dataset("cifar10", "test", root=REPO.parent / "shared" / "datasets")
        x, y = ds.subset(batch).tensors()
        data = f"{ds.name} test ({ds.source})"
    except (AdvkitError, OSError, ValueError):  # the data is optional: timing does not depend on pixel values
        g = torch.Generator().manual_seed(0)
        x = torch.rand(batch, c["in_chans"], c["size"], c["size"], generator=g)
        y = torch.randint(0, 10, (batch,), generator=g)
        data = "random tensors in [0,1]"
    if len(x) < batch:
        raise SystemExit(f"{name}: only {len(x)} images for a batch of {batch}")
    return model, x.to(device), y.to(device), data


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[None]:
    """Parameters' requires_grad off for the duration, restored after."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def fwd_bwd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> torch.Tensor:
    """The floor: ``steps`` forward + backward passes w.r.t. the input only, nothing else."""
    with frozen(model):
        xr = x.detach().clone().requires_grad_(True)
        for _ in range(steps):
            (g,) = torch.autograd.grad(F.cross_entropy(model(xr), y, reduction="sum"), xr)
    return g


def methods(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float,
            device: torch.device) -> tuple[dict[str, Callable[[], object]], dict[str, str], dict[str, str]]:
    """name -> zero-argument callable running PGD-10 on (model, x, y); peers not installed are skipped."""
    run: dict[str, Callable[[], object]] = {
        "floor": lambda: fwd_bwd(model, x, y, STEPS),
        "advkit": lambda: pgd(model, x, y, eps=eps, alpha=alpha, steps=STEPS, norm="linf", random_start=True),
    }
    skipped, versions = {}, {}

    def both(name: str, fn: Callable[[], object]) -> None:
        run[name] = fn

        def frozen_fn() -> object:
            with frozen(model):
                return fn()
        run[f"{name}+frozen"] = frozen_fn

    try:
        import torchattacks
        ta = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=STEPS, random_start=True)
        both("torchattacks", lambda: ta(x, y))
        versions["torchattacks"] = torchattacks.__version__
    except ImportError as e:
        skipped["torchattacks"] = f"not importable ({e})"
    try:
        import foolbox as fb
        fmodel = fb.PyTorchModel(model, bounds=(0, 1), device=device)
        fatk = fb.attacks.LinfPGD(abs_stepsize=alpha, steps=STEPS, random_start=True)
        both("foolbox", lambda: fatk(fmodel, x, y, epsilons=eps)[1])
        versions["foolbox"] = fb.__version__
    except ImportError as e:
        skipped["foolbox"] = f"not importable ({e})"
    try:
        import art
        import numpy as np
        from art.attacks.evasion import ProjectedGradientDescent
        from art.estimators.classification import PyTorchClassifier
        clf = PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                                nb_classes=10, clip_values=(0.0, 1.0),
                                device_type="gpu" if device.type == "cuda" else "cpu")
        aatk = ProjectedGradientDescent(clf, norm=np.inf, eps=eps, eps_step=alpha, max_iter=STEPS,
                                        num_random_init=1, batch_size=len(x), verbose=False)
        xn, yn = x.cpu().numpy(), y.cpu().numpy()  # ART's interface is numpy; the conversion is not timed
        both("art", lambda: aatk.generate(x=xn, y=yn))
        versions["art"] = art.__version__
    except ImportError as e:
        skipped["art"] = f"not importable ({e})"
    return run, skipped, versions


def label(name: str) -> str:
    base, _, frz = name.partition("+")
    return LABELS[base] + (" (params frozen)" if frz else "")


# ---------------------------------------------------------------------------------------------- timing
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def as_tensor(out: object, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(out).to(like.device, like.dtype)


def time_methods(run: dict[str, Callable[[], object]], rounds: int, device: torch.device,
                 check: Callable[[object], dict] | None = None) -> tuple[dict[str, list[float]], dict[str, dict]]:
    """Warm-up (whose outputs ``check`` sanity-checks), then ``rounds`` interleaved timed rounds."""
    names = list(run)
    checks = {}
    for n in names:  # warm-up: kernels, oneDNN primitives, lazy imports
        out = run[n]()
        if check is not None and n != "floor":
            checks[n] = check(out)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:  # rotate, so no method always goes first
            sync(device)
            t0 = time.perf_counter()
            run[n]()
            sync(device)
            times[n].append(time.perf_counter() - t0)
    return times, checks


# ---------------------------------------------------------------------------------------------- memory
def _allocator_peak(fn: Callable[[], object]) -> int:
    """Peak bytes the CPU allocator held during ``fn`` above what was live when it started.

    From the allocation events of ``torch.profiler(profile_memory=True)``: each carries the running total of
    bytes allocated since profiling began (frees of older tensors are not counted), so max(total) minus the
    total before the first allocation is the CPU analogue of ``torch.cuda.max_memory_allocated``.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    alloc_type = torch._C._profiler._EventType.Allocation
    events, stack = [], list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        if node.typed[0] == alloc_type and node.typed[1].device.type == "cpu":
            events.append((node.start_time_ns, node.typed[1].alloc_size, node.typed[1].total_allocated))
        stack.extend(node.children)
    if not events:
        raise RuntimeError("the profiler recorded no CPU allocations")
    events.sort()
    base = events[0][2] - events[0][1]
    return max(total for _, _, total in events) - base


def _rss_kib() -> tuple[int, int]:
    """(current RSS, peak RSS since the last reset) in KiB, from /proc (Linux)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        k, _, v = line.partition(":")
        fields[k] = v
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def mem_child(spec: dict) -> dict:
    """Runs in a fresh process (the peak RSS of a process only ever grows); prints its result as JSON."""
    device = torch.device(spec["device"])
    model, x, y, _ = build(spec["config"], spec["batch"], device)
    eps = CONFIGS[spec["config"]]["eps"]
    ops = {"fwd_bwd": lambda: fwd_bwd(model, x, y, 1),
           "pgd": lambda: pgd(model, x, y, eps=eps, alpha=2.5 * eps / STEPS, steps=STEPS)}
    if device.type == "cuda":
        out = {}
        for name, fn in ops.items():
            fn()
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            fn()
            torch.cuda.synchronize(device)
            out[name] = torch.cuda.max_memory_allocated(device) - base
        return out
    if spec["mode"] == "allocator":
        for fn in ops.values():  # warm-up, so one-time caches count against neither
            fn()
        return {name: _allocator_peak(fn) for name, fn in ops.items()}
    # "rss": one op per process; the same tiny warm-up (one fwd+bwd on 2 images) before either
    fwd_bwd(model, x[:2], y[:2], 1)
    op = ops[spec["op"]]
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM, the peak RSS, to the current RSS
        before, _ = _rss_kib()
        op()
        _, peak = _rss_kib()
        how = "VmHWM after the op minus VmRSS before it (VmHWM reset via /proc/self/clear_refs)"
    except OSError:  # no /proc: ru_maxrss (KiB on Linux, bytes on macOS) against its value before the op
        scale = 1 if sys.platform == "darwin" else 1024
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale // 1024
        op()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale // 1024
        how = "ru_maxrss after the op minus ru_maxrss before it (a lower bound)"
    return {spec["op"]: (peak - before) * 1024, "how": how}


def spawn(spec: dict) -> dict:
    cmd = [sys.executable, "-m", "bench.attack_speed", "--threads", str(torch.get_num_threads()),
           "--mem-child", json.dumps(spec)]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)  # stderr holds the profiler's chatter
    if p.returncode != 0:
        raise RuntimeError(f"memory child {spec} failed:\n{p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def memory(config: str, batch: int, device: torch.device, quick: bool) -> dict:
    base = {"config": config, "batch": batch, "device": str(device)}
    if device.type == "cuda":
        got = spawn({**base, "mode": "cuda"})
        return {"method": "torch.cuda.max_memory_allocated minus memory_allocated before, each op run once "
                          "after a warm-up", "fwd_bwd_bytes": got["fwd_bwd"], "pgd_bytes": got["pgd"],
                "ratio": got["pgd"] / got["fwd_bwd"]}
    out: dict = {}
    try:
        got = spawn({**base, "mode": "allocator"})
        out.update(method="CPU allocator peak: bytes live above the start of each op (model, batch and "
                          "caches excluded), from torch.profiler(profile_memory=True) allocation events, "
                          "fresh process, after a warm-up of both ops",
                   fwd_bwd_bytes=got["fwd_bwd"], pgd_bytes=got["pgd"], ratio=got["pgd"] / got["fwd_bwd"])
    except (RuntimeError, ValueError) as e:
        out["allocator_error"] = str(e)[-500:]
    if not quick:  # the OS's view: includes malloc's cached free memory and fragmentation
        rss = {op: spawn({**base, "mode": "rss", "op": op}) for op in ("fwd_bwd", "pgd")}
        out["rss"] = {"method": "peak RSS increase in a fresh process per op: " + rss["pgd"]["how"],
                      "fwd_bwd_bytes": rss["fwd_bwd"]["fwd_bwd"], "pgd_bytes": rss["pgd"]["pgd"],
                      "ratio": rss["pgd"]["pgd"] / max(rss["fwd_bwd"]["fwd_bwd"], 1)}
    if "ratio" not in out and "rss" in out:
        out.update(method=out["rss"]["method"], fwd_bwd_bytes=out["rss"]["fwd_bwd_bytes"],
                   pgd_bytes=out["rss"]["pgd_bytes"], ratio=out["rss"]["ratio"])
    return out


# ---------------------------------------------------------------------------------------------- report
def bench_config(name: str, quick: bool, device: torch.device, rounds: int | None) -> dict:
    c = CONFIGS[name]
    batch = c["quick_batch"] if quick else c["batch"]
    rounds = rounds or (c["quick_rounds"] if quick else c["rounds"])
    eps = c["eps"]
    alpha = 2.5 * eps / STEPS
    model, x, y, data = build(name, batch, device)
    run, skipped, versions = methods(model, x, y, eps, alpha, device)

    def check(out: object) -> dict:  # every method really ran PGD: inside the ball and the box, loss raised
        xa = as_tensor(out, x)
        with torch.no_grad():
            loss = F.cross_entropy(model(xa), y).item()
        return {"linf": (xa - x).abs().max().item(), "in_box": bool(xa.min() >= 0 and xa.max() <= 1),
                "loss": loss}

    with torch.no_grad():
        clean_loss = F.cross_entropy(model(x), y).item()
    times, checks = time_methods(run, rounds, device, check)
    floor = statistics.median(times["floor"])
    rows = {}
    for n, ts in times.items():
        med = statistics.median(ts)
        rows[n] = {"label": label(n), "median_s": med, "ratio_to_floor": med / floor, "images_per_s": batch / med,
                   "min_s": min(ts), "spread": (max(ts) - min(ts)) / med,
                   # the same round's floor is timed next to it: a ratio that background load moves less
                   "paired_ratio_to_floor": statistics.median(t / f for t, f in zip(ts, times["floor"])),
                   "all_s": ts}
    peers = {n: r["median_s"] for n, r in rows.items() if n not in ("floor", "advkit")}
    fastest = min(peers, key=peers.get) if peers else None
    adv = rows["advkit"]["median_s"]
    targets = {"advkit_vs_floor": adv / floor, "floor_target": FLOOR_TARGET,
               "meets_floor_target": adv / floor <= FLOOR_TARGET, "fastest_peer": fastest,
               "advkit_vs_fastest_peer": adv / peers[fastest] if fastest else None,
               "meets_peer_target": adv <= peers[fastest] if fastest else None}
    mem = memory(name, batch, device, quick)
    if "ratio" in mem:
        mem.update(target=MEMORY_TARGET, meets_target=mem["ratio"] <= MEMORY_TARGET)
    return {"name": name, "model": c["model"], "input": [c["in_chans"], c["size"], c["size"]], "batch": batch,
            "eps": eps, "alpha": alpha, "steps": STEPS, "data": data, "rounds": rounds, "methods": rows,
            "skipped": skipped, "peer_versions": versions, "targets": targets, "memory": mem,
            "sanity": {"clean_loss": clean_loss, "outputs": checks}}


def mib(b: float) -> str:
    return f"{b / 2 ** 20:.1f} MiB"


def print_config(r: dict) -> None:
    print(f"\n{r['name']}: {r['model']} {'x'.join(map(str, r['input']))}, batch {r['batch']}, eps {r['eps']:.4g}, "
          f"alpha {r['alpha']:.4g}, PGD-{r['steps']}, median of {r['rounds']} rounds; data: {r['data']}")
    w = max(len(m["label"]) for m in r["methods"].values())
    print(f"  {'method':<{w}}  {'median s':>9}  {'x floor':>7}  {'images/s':>9}  {'min s':>8}  {'paired':>7}  "
          f"{'spread':>6}")
    for m in r["methods"].values():
        print(f"  {m['label']:<{w}}  {m['median_s']:>9.4f}  {m['ratio_to_floor']:>6.3f}x  {m['images_per_s']:>9.1f}  "
              f"{m['min_s']:>8.4f}  {m['paired_ratio_to_floor']:>6.3f}x  {m['spread']:>6.1%}")
    print("  (x floor: median / floor's median; paired: median over rounds of time / that round's floor; "
          "spread: (max - min) / median)")
    for n, why in r["skipped"].items():
        print(f"  {LABELS[n]}: skipped, {why}")
    bad = [n for n, c in r["sanity"]["outputs"].items() if c["linf"] > r["eps"] + 1e-5 or not c["in_box"]]
    print("  outputs: " + ", ".join(f"{n} loss {c['loss']:.2f}" for n, c in r["sanity"]["outputs"].items())
          + f" (clean {r['sanity']['clean_loss']:.2f}); " + (f"OUTSIDE the eps-ball or box: {bad}" if bad
                                                             else "all inside the eps-ball and the box"))
    t = r["targets"]
    print(f"  advkit / floor = {t['advkit_vs_floor']:.3f} (target <= {FLOOR_TARGET}: "
          f"{'met' if t['meets_floor_target'] else 'MISSED'})", end="")
    if t["fastest_peer"]:
        print(f"; advkit / fastest peer ({label(t['fastest_peer'])}) = {t['advkit_vs_fastest_peer']:.3f} "
              f"({'met' if t['meets_peer_target'] else 'MISSED'})")
    else:
        print()
    m = r["memory"]
    if "ratio" in m:
        print(f"  memory: PGD peak {mib(m['pgd_bytes'])} / one fwd+bwd {mib(m['fwd_bwd_bytes'])} = {m['ratio']:.3f}x "
              f"(target <= {MEMORY_TARGET}: {'met' if m['meets_target'] else 'MISSED'}) [{m['method']}]")
    if "rss" in m:
        s = m["rss"]
        print(f"  memory (peak RSS): PGD {mib(s['pgd_bytes'])} / one fwd+bwd {mib(s['fwd_bwd_bytes'])} = "
              f"{s['ratio']:.3f}x [{s['method']}]")
    if "allocator_error" in m:
        print(f"  memory (allocator): not measured: {m['allocator_error']}")


def cpu_busy(seconds: float = 1.0) -> float | None:
    """Fraction of all CPUs busy over ``seconds`` (from /proc/stat; None where there is none)."""
    def sample() -> tuple[int, int]:
        v = [int(t) for t in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(v), v[3] + v[4]  # total, idle + iowait
    try:
        (t0, i0), _, (t1, i1) = sample(), time.sleep(seconds), sample()
    except (OSError, ValueError, IndexError):
        return None
    return 1 - (i1 - i0) / max(t1 - t0, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny batches, 2 rounds, allocator memory only")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    ap.add_argument("--rounds", type=int, default=None, help="timed rounds per method (default per config)")
    ap.add_argument("--out", default=str(RESULTS / "attack_speed.json"))
    ap.add_argument("--threads", type=int, default=None,
                    help="torch.set_num_threads (default: torch's own choice, left as it is)")
    ap.add_argument("--mem-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.mem_child:
        print(json.dumps(mem_child(json.loads(args.mem_child))))
        return
    device = torch.device(args.device)
    busy_before = cpu_busy()
    if busy_before is not None and busy_before > 0.25:
        print(f"warning: the CPU is {busy_before:.0%} busy before starting: other processes compete with the "
              f"benchmark (oversubscribed OpenMP threads can slow every method many-fold)", flush=True)
    t0 = time.perf_counter()
    configs = []
    for name in args.configs:
        configs.append(bench_config(name, args.quick, device, args.rounds))
        print_config(configs[-1])
    # how busy the machine was matters to every figure here, so it is recorded with the machine
    load = dict(uname=platform.uname()._asdict(), python=platform.python_version(),
                cpu_busy_before=busy_before, cpu_busy_after=cpu_busy(),
                loadavg_after=os.getloadavg() if hasattr(os, "getloadavg") else None)
    result = {"benchmark": "attack_speed", "quick": args.quick, "wall_s": round(time.perf_counter() - t0, 1),
              "attack": {"name": "PGD", "steps": STEPS, "norm": "linf", "alpha": "2.5 * eps / steps",
                         "random_start": True},
              "targets": {"advkit_vs_floor": FLOOR_TARGET, "advkit_vs_fastest_peer": 1.0,
                          "pgd_memory_vs_fwd_bwd": MEMORY_TARGET},
              "configs": configs}
    if not all(math.isfinite(m["median_s"]) for r in configs for m in r["methods"].values()):
        raise SystemExit("non-finite timing")
    out = Path(args.out)
    write_result(out, "attack_speed", result, device=device, machine_extra=load, table=True)
    print(f"\nwrote {out} and {out.with_suffix('.md')} in {result['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
