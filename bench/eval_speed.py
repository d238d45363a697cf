"""Time to a worst-case robust accuracy: advkit's cascade against the naive way (every attack on every
sample) and torchattacks' MultiAttack, same model, samples, suite and eps grid, in one process.
Target: the cascade at least 2x faster than the naive way, for the same number. Also peak RSS of the harness
at 1,000 and 10,000 samples (separate processes; batches are streamed, so memory should not grow).

    python -m bench.eval_speed                       # default MNIST LeNet, 1,000 images, eps 0.1/0.2/0.3
    python -m bench.eval_speed --ckpt runs/fast/model.safetensors
    python -m bench.eval_speed --quick
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from advkit.attacks import fgsm, pgd
from advkit.data import load_dataset
from advkit.eval.config import resolve_attack
from advkit.eval.suite import run_suite, summarize
from bench._common import REPO, RESULTS, write_result


def suite_specs(steps: int, restarts: int):
    return [resolve_attack(a, "linf", "bench") for a in
            ({"name": "fgsm"}, {"name": "pgd", "steps": steps}, {"name": "pgd", "steps": steps, "restarts": restarts})]


def cascade(model, data, eps_list, specs, bs):
    t0 = time.perf_counter()
    batches = run_suite(model, data.images, data.labels, norm="linf", eps_list=eps_list, suite=specs,
                        mode="cascade", seed=0, num_classes=data.num_classes, batch_size=bs,
                        device=torch.device("cpu"))
    s = summarize(batches, n=len(data), eps_list=eps_list, suite=specs, mode="cascade")
    return time.perf_counter() - t0, [w["robust_acc"] for w in s["worst_case"]], s


def naive(model, data, eps_list, steps, restarts, bs):
    """Every attack on every sample at every eps, robust = not fooled by any."""
    t0 = time.perf_counter()
    accs = []
    gen = torch.Generator().manual_seed(0)
    for eps in eps_list:
        robust = 0
        for x, y in data.batches(bs):
            ok = torch.ones_like(y, dtype=torch.bool)
            for xa in (fgsm(model, x, y, eps=eps), pgd(model, x, y, eps=eps, steps=steps, generator=gen),
                       pgd(model, x, y, eps=eps, steps=steps, restarts=restarts, generator=gen)):
                with torch.no_grad():
                    ok &= model(xa).argmax(1) == y
            robust += int(ok.sum())
        accs.append(robust / len(data))
    return time.perf_counter() - t0, accs


def multiattack(model, data, eps_list, steps, restarts, bs):
    """torchattacks' MultiAttack: FGSM, PGD and ``restarts`` more PGD runs; each runs on what is left."""
    import torchattacks

    t0 = time.perf_counter()
    accs = []
    for eps in eps_list:
        alpha = 2.5 * eps / steps
        pgds = [torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
                for _ in range(1 + restarts)]
        atk = torchattacks.MultiAttack([torchattacks.FGSM(model, eps=eps), *pgds])
        robust = 0
        for x, y in data.batches(bs):
            xa = atk(x, y)
            with torch.no_grad():
                robust += int((model(xa).argmax(1) == y).sum())
        accs.append(robust / len(data))
    return time.perf_counter() - t0, accs


def memory_child(n: int) -> None:
    model = _model(None)
    data = load_dataset("mnist", "test").subset(n)
    specs = suite_specs(10, 1)[:2]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cascade(model, data, (0.1,), specs, 500)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"n": n, "peak_rss_mib": peak / 1024, "rss_before_eval_mib": before / 1024}))


def _model(path: str | None):
    if path:
        from advkit.models import load
        return load(path).eval()
    from advkit.train.default import get_default_model
    return get_default_model()[0].eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", action="append", default=[], help="also benchmark this checkpoint")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--eps", default="0.1,0.2,0.3")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-peer", action="store_true", help="skip torchattacks")
    ap.add_argument("--no-default", action="store_true", help="only the --ckpt models")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-RSS runs")
    ap.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(RESULTS / "eval_speed.json"))
    args = ap.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
        return
    n, steps, restarts, bs = (args.n, 50, 5, 500) if not args.quick else (60, 3, 2, 30)
    eps_list = tuple(float(e) for e in args.eps.split(","))
    if args.quick:
        eps_list = eps_list[:2]
    data = load_dataset("mnist", "test").subset(n)
    rows = []
    peer = not args.no_peer and importlib.util.find_spec("torchattacks") is not None
    if not args.no_peer and not peer:
        print("torchattacks is not installed (pip install -e '.[bench]'): the MultiAttack peer is skipped")
    for path in ([] if args.no_default else [None]) + args.ckpt:
        model = _model(path)
        name = "default LeNet" if path is None else Path(path).parent.name or path
        specs = suite_specs(steps, restarts)
        t_c, acc_c, summ = cascade(model, data, eps_list, specs, bs)
        t_n, acc_n = naive(model, data, eps_list, steps, restarts, bs)
        row = {"model": name, "n": n, "eps": list(eps_list), "suite": [s.label for s in specs],
               "cascade": {"s": t_c, "worst_case": acc_c,
                           "attacked": {a["label"]: [r["attacked"] for r in a["results"]] for a in summ["attacks"]}},
               "naive": {"s": t_n, "worst_case": acc_n}, "speedup_vs_naive": t_n / t_c}
        if peer:
            t_m, acc_m = multiattack(model, data, eps_list, steps, restarts, bs)
            row["torchattacks_multiattack"] = {"s": t_m, "worst_case": acc_m}
            row["speedup_vs_multiattack"] = t_m / t_c
        rows.append(row)
        print(f"{name}: cascade {t_c:.1f}s {acc_c}, naive {t_n:.1f}s {acc_n} -> {t_n / t_c:.2f}x"
              + (f"; MultiAttack {row['torchattacks_multiattack']['s']:.1f}s "
                 f"{row['torchattacks_multiattack']['worst_case']} -> {row['speedup_vs_multiattack']:.2f}x"
                 if peer else ""), flush=True)
    mem = []
    for m in () if args.no_memory else (200, 1000) if args.quick else (1000, 10000):
        p = subprocess.run([sys.executable, "-m", "bench.eval_speed", "--memory-child", str(m)], cwd=REPO,
                           capture_output=True, text=True, check=True)
        mem.append(json.loads(p.stdout.strip().splitlines()[-1]))
    ratio = mem[1]["peak_rss_mib"] / mem[0]["peak_rss_mib"] if mem else None
    if mem:
        print(f"peak RSS: {mem[0]['n']} samples {mem[0]['peak_rss_mib']:.0f} MiB, {mem[1]['n']} samples "
              f"{mem[1]['peak_rss_mib']:.0f} MiB ({ratio:.2f}x)")
    result = {"rows": rows, "memory": mem, "memory_ratio": ratio, "target_speedup": 2.0, "quick": args.quick}
    write_result(args.out, "eval_speed", result, device="cpu", table=not args.quick)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
