"""Per-sample worst case over an attack suite and an eps grid.

A sample is robust at eps only if no attack of the suite fooled it. In ``cascade`` mode each attack runs
only on the samples still standing, and a sample fooled at a smaller eps counts as fooled at every larger
eps (its perturbation lies inside the larger ball), so the expensive attacks see fewer and fewer samples;
``full`` mode runs every attack on every correctly classified sample (each attack's own accuracy, the naive
cost). Randomness is seeded per batch, so any sharding of the batches over ranks gives the same result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from advkit.attacks import per_sample_norm
from advkit.eval.config import AttackSpec

CLEAN_WRONG, ROBUST = -2, -1


@dataclass
class BatchResult:
    index: int
    correct: torch.Tensor                 # bool [B]
    fooled_by: torch.Tensor               # int [E, B]: CLEAN_WRONG, ROBUST, or the first attack that fooled it
    stats: torch.Tensor                   # float64 [E, A, 5]: attacked, fooled, norm sum, norm max, seconds
    gradient_free_only: torch.Tensor      # int [E]: fooled by a gradient-free attack and by no white-box one
    examples: list = field(default_factory=list)  # batch 0 only: per eps (x, x_adv, y, pred_clean, pred_adv)


def batch_seed(seed: int, batch: int, eps_i: int, attack_i: int) -> int:
    return (seed * 1_000_003 + batch * 10_007 + eps_i * 101 + attack_i) % (2 ** 62)


def _targets(y: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """A random class other than the true one, per sample."""
    shift = torch.randint(1, k, y.shape, generator=gen, device=y.device)
    return (y + shift) % k


def run_batch(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor, index: int, *, norm: str,
              eps_list: tuple[float, ...], suite: list[AttackSpec], mode: str, seed: int, num_classes: int,
              n_examples: int = 0) -> BatchResult:
    """Every attack of ``suite`` at every eps on one batch (``xb`` on the model's device)."""
    attacks = [s.build() for s in suite]
    gf = torch.tensor([s.gradient_free for s in suite])
    e_n, a_n, b = len(eps_list), len(suite), xb.shape[0]
    with torch.no_grad():
        pred_clean = model(xb).argmax(1)
    correct = pred_clean == yb
    standing = correct.clone()                     # cascade: robust so far (carried across eps)
    fooled_by = torch.full((e_n, b), ROBUST, dtype=torch.long)
    stats = torch.zeros(e_n, a_n, 5, dtype=torch.float64)
    gf_only = torch.zeros(e_n, dtype=torch.long)
    adv_keep = xb.clone() if n_examples else None  # batch 0: the fooling image of each sample
    examples = []
    for ei, eps in enumerate(eps_list):
        fb = torch.where(correct, ROBUST, CLEAN_WRONG).cpu()
        if mode == "cascade":  # fooled at a smaller eps: fooled here too, by the same attack
            if ei:
                carried = fooled_by[ei - 1] >= 0
                fb[carried] = fooled_by[ei - 1][carried]
        else:
            standing = correct.clone()
        hit = torch.zeros(a_n, b, dtype=torch.bool)
        for ai, (spec, atk) in enumerate(zip(suite, attacks)):
            idx = (standing if mode == "cascade" else correct).nonzero().flatten()
            if idx.numel() == 0:
                continue
            gen = torch.Generator(device=xb.device).manual_seed(batch_seed(seed, index, ei, ai))
            x, y = xb[idx], yb[idx]
            goal = _targets(y, num_classes, gen) if spec.targeted else y
            t0 = time.perf_counter()
            x_adv = atk(model, x, goal, eps=eps, targeted=spec.targeted, generator=gen)
            with torch.no_grad():
                wrong = model(x_adv).argmax(1) != y
            if xb.device.type == "cuda":
                torch.cuda.synchronize(xb.device)
            dt = time.perf_counter() - t0
            norms = per_sample_norm((x_adv - x).float(), norm)[wrong]
            stats[ei, ai] = torch.tensor([idx.numel(), int(wrong.sum()), float(norms.sum()),
                                          float(norms.max()) if norms.numel() else 0.0, dt], dtype=torch.float64)
            new = idx[wrong].cpu()
            hit[ai, new] = True
            first = fb[new] == ROBUST
            fb[new[first]] = ai
            if mode == "cascade":
                standing[idx[wrong]] = False
            if adv_keep is not None:
                adv_keep[idx[wrong]] = x_adv[wrong].to(adv_keep.dtype)
        fooled_by[ei] = fb
        white = hit[~gf].any(0) if (~gf).any() else torch.zeros(b, dtype=torch.bool)
        gf_only[ei] = int((hit[gf].any(0) & ~white).sum()) if gf.any() else 0
        if n_examples:
            sel = (fb >= 0).nonzero().flatten()[:n_examples].to(xb.device)
            with torch.no_grad():
                pa = model(adv_keep[sel]).argmax(1)
            examples.append(tuple(t.cpu() for t in (xb[sel], adv_keep[sel], yb[sel], pred_clean[sel], pa)))
    return BatchResult(index, correct.cpu(), fooled_by, stats, gf_only, examples)


def run_suite(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, norm: str,
              eps_list: tuple[float, ...], suite: list[AttackSpec], mode: str, seed: int, num_classes: int,
              batch_size: int, device: torch.device, rank: int = 0, world: int = 1, n_examples: int = 0,
              on_batch: Callable[[], None] | None = None) -> list[BatchResult]:
    """This rank's share of the batches (batch ``i`` goes to rank ``i % world``). ``images`` may be uint8
    (0-255, converted one batch at a time so memory does not grow with the sample count) or float in [0,1]."""
    out = []
    for i, start in enumerate(range(0, len(labels), batch_size)):
        if i % world != rank:
            continue
        xb = images[start:start + batch_size].to(device)
        xb = xb.float().div_(255) if xb.dtype == torch.uint8 else xb
        yb = labels[start:start + batch_size].to(device)
        out.append(run_batch(model, xb, yb, i, norm=norm, eps_list=eps_list, suite=suite, mode=mode, seed=seed,
                             num_classes=num_classes, n_examples=n_examples if i == 0 else 0))
        if on_batch:
            on_batch()
    return out


def summarize(batches: list[BatchResult], *, n: int, eps_list: tuple[float, ...], suite: list[AttackSpec],
              mode: str) -> dict:
    """The report's threat-model section from all ranks' batch results (in batch order)."""
    batches = sorted(batches, key=lambda r: r.index)
    correct = torch.cat([r.correct for r in batches])
    fooled_by = torch.cat([r.fooled_by for r in batches], dim=1)
    stats = torch.stack([r.stats for r in batches]).sum(0)
    norm_max = torch.stack([r.stats[..., 3] for r in batches]).amax(0)
    gf_only = torch.stack([r.gradient_free_only for r in batches]).sum(0)
    n_correct = int(correct.sum())
    # cascade: samples fooled at the previous eps are carried; each stage's fooled samples are new ones
    carried = [0] + [int((fooled_by[ei] >= 0).sum()) for ei in range(len(eps_list) - 1)]
    attacks = []
    for ai, spec in enumerate(suite):
        rows = []
        for ei, eps in enumerate(eps_list):
            attacked, fooled, nsum, _, dt = stats[ei, ai].tolist()
            if mode == "cascade":  # robust after this stage: not fooled by it, an earlier one, or a smaller eps
                robust = n_correct - carried[ei] - int(stats[ei, :ai + 1, 1].sum())
            else:
                robust = n_correct - int(fooled)
            rows.append({"eps": eps, "attacked": int(attacked), "fooled": int(fooled), "robust_acc": robust / n,
                         "success_rate": fooled / attacked if attacked else None,
                         "norm_mean": nsum / fooled if fooled else None,
                         "norm_max": float(norm_max[ei, ai]) if fooled else None, "time_s": round(dt, 4)})
        attacks.append({"attack": spec.name, "label": spec.label, "params": spec.params, "targeted": spec.targeted,
                        "gradient_free": spec.gradient_free, "results": rows})
    worst = []
    for ei, eps in enumerate(eps_list):
        t = float(stats[ei, :, 4].sum())
        saved = 0.0
        if mode == "cascade":
            for ai in range(len(suite)):
                per = _per_sample_time(stats, ai, ei)
                saved += per * max(n_correct - int(stats[ei, ai, 0]), 0)
        worst.append({"eps": eps, "robust_acc": int((fooled_by[ei] == ROBUST).sum()) / n,
                      "robust": int((fooled_by[ei] == ROBUST).sum()), "time_s": round(t, 4),
                      "time_saved_s": round(saved, 4), "gradient_free_only": int(gf_only[ei])})
    examples = next((r.examples for r in batches if r.examples), [])
    return {"mode": mode, "eps": list(eps_list), "attacks": attacks, "worst_case": worst,
            "clean_correct": n_correct, "per_sample": {"fooled_by": fooled_by.tolist()}, "_examples": examples}


def _per_sample_time(stats: torch.Tensor, ai: int, ei: int) -> float:
    """Seconds per sample of attack ``ai``, from the eps where it attacked the most samples (fixed per-call
    costs weigh least there, so the estimate of what skipping saved stays conservative)."""
    attacked, dt = stats[:, ai, 0], stats[:, ai, 4]
    best = int(attacked.argmax())
    return float(dt[best] / attacked[best]) if attacked[best] > 0 else 0.0
