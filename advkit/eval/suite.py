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
from typing import Any, Callable, Iterable

import torch
from torch import nn

from advkit.attacks import per_sample_norm, pick_targets
from advkit.data.stream import release_freed_memory
from advkit.eval.config import AttackSpec
from advkit.report.stats import wilson_interval
from advkit.runtime.memory import HalvingBatches

CLEAN_WRONG, ROBUST = -2, -1


@dataclass
class BatchResult:
    """What one batch gave: per-sample outcomes and per-attack statistics, for every eps.

    Attributes:
        index: the batch's position in the data.
        correct: bool [B], classified correctly without an attack.
        fooled_by: int [E, B]: ``CLEAN_WRONG``, ``ROBUST``, or the index of the first attack that fooled it.
        stats: float64 [E, A, 5]: samples attacked, fooled, norm sum, norm max, seconds.
        gradient_free_only: int [E]: samples fooled by a gradient-free attack and by no white-box one.
        examples: batch 0 only: per eps (x, x_adv, y, pred_clean, pred_adv) of the samples shown.
    """

    index: int
    correct: torch.Tensor
    fooled_by: torch.Tensor
    stats: torch.Tensor
    gradient_free_only: torch.Tensor
    examples: list[tuple[torch.Tensor, ...]] = field(default_factory=list)


def batch_seed(seed: int, batch: int, eps_i: int, attack_i: int) -> int:
    """The seed of one attack call, so results do not depend on how batches are spread over ranks.

    Args:
        seed: the run's seed.
        batch: the batch index.
        eps_i: the eps index.
        attack_i: the attack's index in the suite.

    Returns:
        A seed in [0, 2**62).
    """
    return (seed * 1_000_003 + batch * 10_007 + eps_i * 101 + attack_i) % (2 ** 62)


def run_batch(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor, index: int, *, norm: str,
              eps_list: tuple[float, ...], suite: list[AttackSpec], mode: str, seed: int, num_classes: int,
              n_examples: int = 0, fit: HalvingBatches | None = None) -> BatchResult:
    """Every attack of ``suite`` at every eps on one batch.

    Args:
        model: the evaluated model, in eval mode.
        xb: the images in [0,1], on the model's device.
        yb: their labels, on the same device.
        index: the batch's position (seeds its attacks, see :func:`batch_seed`).
        norm: the threat model's norm.
        eps_list: its radii, in pixel units of ``norm``.
        suite: the attacks, in order.
        mode: ``cascade`` (each attack only on the samples still standing) or ``full``.
        seed: the run's seed.
        num_classes: the model's class count (random targets of targeted attacks).
        n_examples: fooled samples to keep per eps for the report's pictures (0: none).
        fit: runs each model and attack call, in halves when it runs out of memory (one per run; default a new
            one).

    Returns:
        The batch's outcomes and statistics, on the CPU.
    """
    fit = fit if fit is not None else HalvingBatches("the eval suite")
    attacks = [s.build() for s in suite]
    gf = torch.tensor([s.gradient_free for s in suite])
    e_n, a_n, b = len(eps_list), len(suite), xb.shape[0]
    with torch.no_grad():
        pred_clean = fit(lambda x: model(x).argmax(1), xb)
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
            goal = pick_targets("random", y, num_classes=num_classes, generator=gen) if spec.targeted else y
            t0 = time.perf_counter()
            def attack_and_predict(x: torch.Tensor, goal: torch.Tensor, atk=atk, eps: float = eps,
                                   spec: AttackSpec = spec, gen: torch.Generator = gen
                                   ) -> tuple[torch.Tensor, torch.Tensor]:
                x_adv = atk(model, x, goal, eps=eps, targeted=spec.targeted, generator=gen)
                with torch.no_grad():
                    return x_adv, model(x_adv).argmax(1)

            x_adv, pred = fit(attack_and_predict, x, goal, generators=(gen,))
            wrong = pred != y
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
        if adv_keep is not None:  # set exactly when n_examples asks for examples
            sel = (fb >= 0).nonzero().flatten()[:n_examples].to(xb.device)
            with torch.no_grad():
                pa = model(adv_keep[sel]).argmax(1)
            examples.append(tuple(t.cpu() for t in (xb[sel], adv_keep[sel], yb[sel], pred_clean[sel], pa)))
    return BatchResult(index, correct.cpu(), fooled_by, stats, gf_only, examples)


def run_batches(model: nn.Module, batches: Iterable[tuple], *, norm: str, eps_list: tuple[float, ...],
                suite: list[AttackSpec], mode: str, seed: int, num_classes: int, device: torch.device,
                n_examples: int = 0, on_batch: Callable[[], None] | None = None,
                done: Callable[[int], BatchResult | None] | None = None,
                on_result: Callable[[BatchResult], None] | None = None) -> list[BatchResult]:
    """The batch loop: :func:`run_batch` on each batch given, in memory or streamed alike.

    Args:
        model: the evaluated model, in eval mode on ``device``.
        batches: ``(index, images, labels, ...)`` tuples (:class:`advkit.data.Batch` is one): the batch's
            position (seeds its attacks), its images (uint8 0-255, converted here on ``device``, or float in
            [0,1]) and labels. Sharding is the source's business (:func:`advkit.data.iter_batches`).
        norm: the threat model's norm.
        eps_list: its radii, in pixel units of ``norm``.
        suite: the attacks, in order.
        mode: ``cascade`` or ``full`` (see :func:`run_batch`).
        seed: the run's seed.
        num_classes: the model's class count.
        device: where the model runs.
        n_examples: fooled samples to keep per eps from batch 0.
        on_batch: called after each batch (progress).
        done: batch index -> its result from an interrupted earlier run (``eval --resume``), or None to run it.
        on_result: called with each batch's result as soon as it is computed (to store it for a resume).

    Returns:
        The batch results, in the order given.
    """
    out = []
    fit = HalvingBatches("the eval suite")  # out of memory on a batch: it again in halves (said once)
    for i, images, labels, *_ in batches:
        if labels.numel() == 0:  # a streamed batch whose every file was unreadable
            continue
        earlier = done(i) if done is not None else None
        if earlier is not None:
            out.append(earlier)
            if on_batch:
                on_batch()
            continue
        xb = images.to(device)
        xb = xb.float().div_(255) if xb.dtype == torch.uint8 else xb
        yb = labels.to(device)
        out.append(run_batch(model, xb, yb, i, norm=norm, eps_list=eps_list, suite=suite, mode=mode, seed=seed,
                             num_classes=num_classes, n_examples=n_examples if i == 0 else 0, fit=fit))
        del xb, yb, images, labels
        release_freed_memory()  # flat in the sample count: the batch's freed buffers go back (see there)
        if on_result:
            on_result(out[-1])
        if on_batch:
            on_batch()
    return out


def run_suite(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, norm: str,
              eps_list: tuple[float, ...], suite: list[AttackSpec], mode: str, seed: int, num_classes: int,
              batch_size: int, device: torch.device, rank: int = 0, world: int = 1, n_examples: int = 0,
              on_batch: Callable[[], None] | None = None) -> list[BatchResult]:
    """This rank's share of in-memory tensors: batch ``i`` goes to rank ``i % world`` (:func:`run_batches`).

    Args:
        model: the evaluated model, in eval mode on ``device``.
        images: all images: uint8 (0-255, converted one batch at a time so memory does not grow with the
            sample count) or float in [0,1].
        labels: their labels.
        norm: the threat model's norm.
        eps_list: its radii, in pixel units of ``norm``.
        suite: the attacks, in order.
        mode: ``cascade`` or ``full`` (see :func:`run_batch`).
        seed: the run's seed.
        num_classes: the model's class count.
        batch_size: samples per batch.
        device: where the model runs.
        rank: this process's rank.
        world: the number of processes.
        n_examples: fooled samples to keep per eps from batch 0.
        on_batch: called after each batch (progress).

    Returns:
        This rank's batch results, in batch order.
    """
    batches = ((i, images[s:s + batch_size], labels[s:s + batch_size])
               for i, s in enumerate(range(0, len(labels), batch_size)) if i % world == rank)
    return run_batches(model, batches, norm=norm, eps_list=eps_list, suite=suite, mode=mode, seed=seed,
                       num_classes=num_classes, device=device, n_examples=n_examples, on_batch=on_batch)


def summarize(batches: list[BatchResult], *, n: int, eps_list: tuple[float, ...], suite: list[AttackSpec],
              mode: str) -> dict[str, Any]:
    """The report's threat-model section from all ranks' batch results.

    Args:
        batches: every rank's results, in any order (sorted by batch index here).
        n: the number of evaluated samples.
        eps_list: the threat model's radii.
        suite: its attacks, in order.
        mode: ``cascade`` or ``full``.

    Returns:
        ``mode``, ``eps``, ``attacks`` (per attack, per eps rows) and ``worst_case``; every robust accuracy
        carries its 95% Wilson interval (``robust_acc_ci``). Also ``per_sample.fooled_by`` as one list of
        codes per eps (the harness stores it compactly), and ``clean_correct`` and ``_examples``, which the
        harness takes out.
    """
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
                         "robust_acc_ci": wilson_interval(robust, n),
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
        robust = int((fooled_by[ei] == ROBUST).sum())
        worst.append({"eps": eps, "robust_acc": robust / n, "robust_acc_ci": wilson_interval(robust, n),
                      "robust": robust, "time_s": round(t, 4),
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
