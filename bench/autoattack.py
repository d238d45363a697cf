"""advkit's ``autoattack`` preset against the reference AutoAttack ``standard`` run: robust accuracy and time.

Both run in this process on the same model, images and eps, the reference from
``../shared/reference/auto-attack`` (Croce & Hein's code; put on ``sys.path`` here only, never by advkit).
The figures: each side's robust accuracy (they should agree within about a point), its wall time, and
advkit's time over the reference's (target: at most 0.8x, from batching and from not re-running samples an
earlier member already fooled). ``--members`` also runs each member alone on both sides (APGD-CE, APGD-T,
FAB-T, Square; the standard run's settings, on the images the model gets right) and records both robust
accuracies per member.

    python -m bench.autoattack                        # default MNIST model, 1000 test images, eps 0.3
    python -m bench.autoattack --model run/model.safetensors --n 500
    python -m bench.autoattack --dataset cifar10 --model RUN/model.safetensors --n 300 --members
    python -m bench.autoattack --quick                # smoke size: 16 images, reduced steps on both sides
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

from advkit.attacks import PRESETS, run_cascade
from advkit.config import parse_number
from advkit.data import load_dataset
from advkit.runtime.device import resolve_device
from bench._common import REPO, RESULTS, write_result

REFERENCE = REPO.parent / "shared" / "reference" / "auto-attack"
TARGET = 0.8
# --quick: the same reduced budgets on both sides (the figures then say nothing about the full suite)
QUICK = {"steps": 5, "n_queries": 50}
DATASETS = {"mnist": 0.3, "cifar10": 8 / 255}  # the test set and its usual L-inf eps


def _members(norm: str, quick: bool) -> list[dict]:
    out = []
    for name, params in PRESETS["autoattack"]:
        p = dict(params)
        if quick:
            p.update({k: v for k, v in QUICK.items() if k in p})
        out.append({"name": name, **p, "norm": norm})
    return out


def _reference(model, norm: str, eps: float, quick: bool, seed: int, device, only: str | None = None):
    """The reference's standard run; with ``only``, that one member alone with the standard run's settings."""
    if not REFERENCE.is_dir():
        raise SystemExit(f"the reference AutoAttack is not at {REFERENCE}")
    if str(REFERENCE) not in sys.path:
        sys.path.insert(0, str(REFERENCE))
    from autoattack import AutoAttack

    adversary = AutoAttack(model, norm={"linf": "Linf", "l2": "L2"}[norm], eps=eps, version="standard",
                           device=str(device), seed=seed, verbose=False)
    if only is not None:  # set_version("standard") has set every member's parameters; keep them, run one
        adversary.attacks_to_run = [only]
    if quick:
        for attack in (adversary.apgd, adversary.apgd_targeted, adversary.fab):
            attack.n_iter = QUICK["steps"]
        adversary.square.n_queries = QUICK["n_queries"]
    return adversary


def _robust(model, x_adv: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    with torch.no_grad():
        pred = torch.cat([model(xb).argmax(1) for xb in x_adv.split(batch)])
    return (pred == y).float().mean().item()


class _Frozen:
    """Weights without ``requires_grad`` inside the block, as advkit's attacks run, so both sides compute only
    the input gradient and the timing compares the attack loops alone."""

    def __init__(self, model: torch.nn.Module):
        self.params = [q for q in model.parameters() if q.requires_grad]

    def __enter__(self) -> None:
        for q in self.params:
            q.requires_grad_(False)

    def __exit__(self, *exc) -> None:
        for q in self.params:
            q.requires_grad_(True)


def _both(model, x, y, members: list[dict], only: str | None, *, norm: str, eps: float, batch: int,
          quick: bool, seed: int, device) -> tuple[torch.Tensor, float, torch.Tensor, float]:
    """advkit's cascade of ``members`` and the reference's run (one member with ``only``): (adv, seconds) each."""
    gen = torch.Generator(device=device).manual_seed(seed)
    t0 = time.perf_counter()
    ours = torch.cat([run_cascade(model, xb, yb, members, eps=eps, generator=gen)
                      for xb, yb in zip(x.split(batch), y.split(batch))])
    t_ours = time.perf_counter() - t0
    adversary = _reference(model, norm, eps, quick, seed, device, only)
    with _Frozen(model):
        t0 = time.perf_counter()
        theirs = adversary.run_standard_evaluation(x, y, bs=batch)
        t_ref = time.perf_counter() - t0
    return ours, t_ours, theirs, t_ref


def run(model_spec: str | None, n: int, eps: float, norm: str, batch: int, quick: bool, seed: int,
        device: torch.device, dataset: str = "mnist", members: bool = False) -> dict:
    """Both runs on the first ``n`` test images of ``dataset``; with ``members``, each member alone too.

    Returns:
        The result record (robust accuracies in [0,1], times in seconds).
    """
    from advkit.train.default import resolve

    data = load_dataset(dataset, "test").subset(n)
    model = resolve(model_spec, data, device).eval()
    x, y = (t.to(device) for t in data.tensors())
    clean = _robust(model, x, y, batch)

    suite = _members(norm, quick)
    kw: dict[str, Any] = {"norm": norm, "eps": eps, "batch": batch, "quick": quick, "seed": seed, "device": device}
    ours, t_ours, theirs, t_ref = _both(model, x, y, suite, None, **kw)
    ratio = t_ours / t_ref if t_ref > 0 else float("inf")
    res: dict[str, Any] = {
        "model": model_spec or "default", "dataset": dataset, "data": f"{dataset} test", "n": n, "norm": norm,
        "eps": eps, "quick": quick, "batch_size": batch, "seed": seed, "members": suite, "clean_acc": clean,
        "advkit": {"robust_acc": _robust(model, ours, y, batch), "time_s": round(t_ours, 3)},
        "reference": {"robust_acc": _robust(model, theirs, y, batch), "time_s": round(t_ref, 3),
                      "source": "fra31/auto-attack a39220048b3c, version=standard"},
        "time_ratio": round(ratio, 3), "target_ratio": TARGET, "meets_target": ratio <= TARGET}
    if members:
        res["per_member"] = {}
        for m in suite:
            ours, t_ours, theirs, t_ref = _both(model, x, y, [m], m["name"], **kw)
            a, b = _robust(model, ours, y, batch), _robust(model, theirs, y, batch)
            res["per_member"][m["name"]] = {
                "advkit": {"robust_acc": a, "time_s": round(t_ours, 3)},
                "reference": {"robust_acc": b, "time_s": round(t_ref, 3)},
                "diff_points": round((a - b) * 100, 3)}
    return res


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench.autoattack", description=__doc__.splitlines()[0])
    p.add_argument("--model", help="an advkit checkpoint (default: the cached default MNIST model)")
    p.add_argument("--dataset", choices=tuple(DATASETS), default="mnist", help="the test set (default mnist)")
    p.add_argument("--n", type=int, help="test images (default 1000; --quick 16)")
    p.add_argument("--eps", type=lambda s: parse_number(s, "--eps"),
                   help="the budget, e.g. 0.3 or 8/255 (default: 0.3 on MNIST, 8/255 on CIFAR-10)")
    p.add_argument("--norm", choices=("linf", "l2"), default="linf")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--members", action="store_true",
                   help="also run each member alone on both sides and record both robust accuracies")
    p.add_argument("--quick", action="store_true", help="smoke size: 16 images, reduced steps on both sides")
    p.add_argument("--note", help="recorded with the machine, e.g. how loaded it was")
    p.add_argument("--out", help="result file (default bench/results/autoattack[_DATASET][_quick].json)")
    a = p.parse_args(argv)
    n = a.n or (16 if a.quick else 1000)
    eps = DATASETS[a.dataset] if a.eps is None else a.eps
    device = resolve_device(a.device)
    res = run(a.model, n, eps, a.norm, a.batch_size, a.quick, a.seed, device, a.dataset, a.members)
    stem = "autoattack" + ("" if a.dataset == "mnist" else f"_{a.dataset}") + ("_quick" if a.quick else "")
    out = Path(a.out) if a.out else RESULTS / f"{stem}.json"
    write_result(out, "autoattack", res, device=device, machine_extra={"note": a.note} if a.note else None,
                 table=True)
    print(f"{a.dataset}, {n} images, {a.norm} eps {eps:g}, clean {res['clean_acc']:.2%}")
    for side in ("advkit", "reference"):
        print(f"{side:>10}: robust {res[side]['robust_acc']:.2%} in {res[side]['time_s']:.1f}s")
    print(f"time advkit / reference: {res['time_ratio']:.3f} (target <= {TARGET}); wrote {out}")
    for name, r in res.get("per_member", {}).items():
        print(f"{name:>10} alone: advkit {r['advkit']['robust_acc']:.2%}, reference "
              f"{r['reference']['robust_acc']:.2%} ({r['diff_points']:+.2f} points)")
    return res


if __name__ == "__main__":
    main()
