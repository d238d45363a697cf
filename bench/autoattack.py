"""advkit's ``autoattack`` preset against the reference AutoAttack ``standard`` run: robust accuracy and time.

Both run in this process on the same model, images and eps, the reference from
``../shared/reference/auto-attack`` (Croce & Hein's code; put on ``sys.path`` here only, never by advkit).
The figures: each side's robust accuracy (they should agree within about a point), its wall time, and
advkit's time over the reference's (target: at most 0.8x, from batching and from not re-running samples an
earlier member already fooled).

    python -m bench.autoattack                        # default MNIST model, 1000 test images, eps 0.3
    python -m bench.autoattack --model run/model.safetensors --n 500
    python -m bench.autoattack --quick                # smoke size: 16 images, reduced steps on both sides
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from advkit.attacks import PRESETS, run_cascade
from advkit.data import load_dataset
from advkit.runtime.device import resolve_device
from bench._common import REPO, RESULTS, write_result

REFERENCE = REPO.parent / "shared" / "reference" / "auto-attack"
TARGET = 0.8
# --quick: the same reduced budgets on both sides (the figures then say nothing about the full suite)
QUICK = {"steps": 5, "n_queries": 50}


def _members(norm: str, quick: bool) -> list[dict]:
    out = []
    for name, params in PRESETS["autoattack"]:
        p = dict(params)
        if quick:
            p.update({k: v for k, v in QUICK.items() if k in p})
        out.append({"name": name, **p, "norm": norm})
    return out


def _reference(model, norm: str, eps: float, quick: bool, seed: int, device):
    if not REFERENCE.is_dir():
        raise SystemExit(f"the reference AutoAttack is not at {REFERENCE}")
    sys.path.insert(0, str(REFERENCE))
    from autoattack import AutoAttack

    adversary = AutoAttack(model, norm={"linf": "Linf", "l2": "L2"}[norm], eps=eps, version="standard",
                           device=str(device), seed=seed, verbose=False)
    if quick:
        for attack in (adversary.apgd, adversary.apgd_targeted, adversary.fab):
            attack.n_iter = QUICK["steps"]
        adversary.square.n_queries = QUICK["n_queries"]
    return adversary


def _robust(model, x_adv: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    with torch.no_grad():
        pred = torch.cat([model(xb).argmax(1) for xb in x_adv.split(batch)])
    return (pred == y).float().mean().item()


def run(model_spec: str | None, n: int, eps: float, norm: str, batch: int, quick: bool, seed: int,
        device: torch.device) -> dict:
    """Both runs on the first ``n`` MNIST test images; the result record."""
    from advkit.train.default import resolve

    data = load_dataset("mnist", "test").subset(n)
    model = resolve(model_spec, data, device).eval()
    x, y = (t.to(device) for t in data.tensors())
    clean = _robust(model, x, y, batch)

    members = _members(norm, quick)
    gen = torch.Generator(device=device).manual_seed(seed)
    t0 = time.perf_counter()
    ours = torch.cat([run_cascade(model, xb, yb, members, eps=eps, generator=gen)
                      for xb, yb in zip(x.split(batch), y.split(batch))])
    t_ours = time.perf_counter() - t0

    adversary = _reference(model, norm, eps, quick, seed, device)
    trainable = [q for q in model.parameters() if q.requires_grad]
    for q in trainable:  # as advkit does for itself: no weight gradients, so only the attack loops are compared
        q.requires_grad_(False)
    t0 = time.perf_counter()
    theirs = adversary.run_standard_evaluation(x, y, bs=batch)
    t_ref = time.perf_counter() - t0
    for q in trainable:
        q.requires_grad_(True)

    ratio = t_ours / t_ref if t_ref > 0 else float("inf")
    return {"model": model_spec or "default", "data": "mnist test", "n": n, "norm": norm, "eps": eps,
            "quick": quick, "batch_size": batch, "seed": seed, "members": members, "clean_acc": clean,
            "advkit": {"robust_acc": _robust(model, ours, y, batch), "time_s": round(t_ours, 3)},
            "reference": {"robust_acc": _robust(model, theirs, y, batch), "time_s": round(t_ref, 3),
                          "source": "fra31/auto-attack a39220048b3c, version=standard"},
            "time_ratio": round(ratio, 3), "target_ratio": TARGET, "meets_target": ratio <= TARGET}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench.autoattack", description=__doc__.splitlines()[0])
    p.add_argument("--model", help="an advkit checkpoint (default: the cached default MNIST model)")
    p.add_argument("--n", type=int, help="test images (default 1000; --quick 16)")
    p.add_argument("--eps", type=float, default=0.3)
    p.add_argument("--norm", choices=("linf", "l2"), default="linf")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="smoke size: 16 images, reduced steps on both sides")
    p.add_argument("--out", help="result file (default bench/results/autoattack[_quick].json)")
    a = p.parse_args(argv)
    n = a.n or (16 if a.quick else 1000)
    device = resolve_device(a.device)
    res = run(a.model, n, a.eps, a.norm, a.batch_size, a.quick, a.seed, device)
    out = Path(a.out) if a.out else RESULTS / f"autoattack{'_quick' if a.quick else ''}.json"
    write_result(out, "autoattack", res, device=device)
    print(f"{n} images, {a.norm} eps {a.eps:g}, clean {res['clean_acc']:.2%}")
    for side in ("advkit", "reference"):
        print(f"{side:>10}: robust {res[side]['robust_acc']:.2%} in {res[side]['time_s']:.1f}s")
    print(f"time advkit / reference: {res['time_ratio']:.3f} (target <= {TARGET}); wrote {out}")
    return res


if __name__ == "__main__":
    main()
