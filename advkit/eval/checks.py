"""Sanity checks that catch evaluations which look robust and are not (gradient masking, randomness,
probabilities instead of logits, a model left in training mode, attacks that did not converge).

Each check returns ``{"name", "status" (pass|warn|fail|skip), "message", "evidence"}``. The probe attacks run
each on its own on the first ``checks.n`` samples: a single-step attack, PGD, and PGD with twice the steps
and two restarts, at every eps of each threat model, plus PGD at a large eps.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from advkit.attacks import pgd
from advkit.eval.config import CHECKS, ChecksConfig, ThreatModel


def _check(name: str, status: str, message: str, **evidence) -> dict:
    return {"name": name, "status": status, "message": message, "evidence": evidence}


def _batched(model: nn.Module, x: torch.Tensor, bs: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(xb).float() for xb in x.split(bs)])


def _acc(model, x, y, bs, attack=None) -> float:
    right = 0
    for xb, yb in zip(x.split(bs), y.split(bs)):
        xa = attack(xb, yb) if attack else xb
        with torch.no_grad():
            right += int((model(xa).argmax(1) == yb).sum())
    return right / len(y)


def model_checks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: ChecksConfig,
                 bs: int) -> list[dict[str, Any]]:
    """Checks of the model itself: eval mode, determinism, logits, input gradients.

    Args:
        model: the evaluated model, in eval mode.
        x: probe images in [0,1], on the model's device.
        y: their labels.
        cfg: the checks' thresholds.
        bs: the batch size.

    Returns:
        One check dict (``name``, ``status``, ``message``, ``evidence``) per check, in that order.
    """
    out = []
    training = [n or "(root)" for n, m in model.named_modules() if m.training]
    solo = _batched(model, x[:8], 1)
    full = _batched(model, x, bs)[:8]
    scale = 1.0 + float(full.abs().max())
    batch_diff = float((solo - full).abs().max()) / scale
    if training or batch_diff > 1e-4:
        out.append(_check("eval_mode", "fail", (f"modules in training mode: {', '.join(training[:5])}" if training
                          else "a sample's output depends on the rest of its batch (batch norm in training mode?)"),
                          training_modules=training[:20], batch_dependence=batch_diff))
    else:
        out.append(_check("eval_mode", "pass", "eval mode; outputs do not depend on the batch",
                          batch_dependence=batch_diff))
    again = _batched(model, x, bs)
    first = _batched(model, x, bs)
    diff = float((again - first).abs().max()) / (1.0 + float(first.abs().max()))
    out.append(_check("deterministic", "pass" if diff <= 1e-5 else "fail",
                      "two forward passes agree" if diff <= 1e-5 else
                      f"two forward passes differ by {diff:.2g}: a randomized model needs an adaptive "
                      f"evaluation (expectation over transformation); these numbers overstate robustness",
                      max_relative_difference=diff))
    looks_prob = bool((first >= -1e-6).all()) and float((first.sum(1) - 1).abs().max()) < 1e-3
    looks_logprob = bool((first <= 1e-6).all()) and float(torch.logsumexp(first, 1).abs().max()) < 1e-3
    if looks_prob:
        out.append(_check("logits", "fail", "outputs are probabilities (non-negative, rows sum to 1): attacks need "
                          "logits; softmax saturates and hides gradients", row_sum_max_error=float(
                              (first.sum(1) - 1).abs().max())))
    elif looks_logprob:
        out.append(_check("logits", "warn", "outputs look like log-probabilities: cross-entropy attacks are "
                          "unaffected, margin losses see shifted values"))
    else:
        out.append(_check("logits", "pass", "outputs are unnormalized logits",
                          min=float(first.min()), max=float(first.max())))
    grads, nan = [], False
    for xb, yb in zip(x.split(bs), y.split(bs)):
        xr = xb.clone().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(F.cross_entropy(model(xr).float(), yb, reduction="sum"), xr)
        nan |= not bool(torch.isfinite(g).all())
        grads.append(g.flatten(1).abs().amax(1))
    gmax = torch.cat(grads)
    right = first.argmax(1) == y
    zero = float(((gmax == 0) & right).sum()) / max(int(right.sum()), 1)
    ev = {"zero_gradient_share": zero, "median_max_abs_gradient": float(gmax.median()), "non_finite": nan}
    if nan:
        out.append(_check("gradients", "fail", "input gradients contain NaN or inf", **ev))
    elif zero > cfg.zero_grad_fail:
        out.append(_check("gradients", "fail", f"{zero:.1%} of correctly classified samples have an all-zero input "
                          f"gradient (shattered or saturated gradients): gradient attacks cannot move them", **ev))
    elif zero > 0:
        out.append(_check("gradients", "warn", f"{zero:.1%} of correctly classified samples have an all-zero input "
                          f"gradient", **ev))
    else:
        out.append(_check("gradients", "pass", "input gradients are finite and non-zero", **ev))
    return out


def attack_checks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, tm: ThreatModel, summary: dict[str, Any],
                  cfg: ChecksConfig, bs: int, num_classes: int, seed: int) -> dict[str, dict[str, Any]]:
    """The eps-grid checks of one threat model, from probe attacks and the suite's summary.

    Args:
        model: the evaluated model, in eval mode.
        x: probe images in [0,1], on the model's device.
        y: their labels.
        tm: the threat model (norm and eps grid).
        summary: the threat model's section as :func:`advkit.eval.suite.summarize` built it.
        cfg: the checks' thresholds and probe strength.
        bs: the batch size.
        num_classes: the model's class count.
        seed: seeds the probe attacks.

    Returns:
        The check dicts by check name.
    """
    n = len(y)
    tol = max(cfg.tol, 2.0 / n)
    s = cfg.pgd_steps
    gen = torch.Generator(device=x.device)

    def probe(eps, steps, restarts=1, single=False):
        gen.manual_seed(seed + int(eps * 1e6) + steps + restarts)
        if single:  # FGSM for L-inf, its L2 analogue (FGM) otherwise
            return lambda xb, yb: pgd(model, xb, yb, eps=eps, alpha=eps, steps=1, norm=tm.norm, random_start=False)
        return lambda xb, yb: pgd(model, xb, yb, eps=eps, steps=steps, restarts=restarts, norm=tm.norm,
                                  generator=gen)

    clean = _acc(model, x, y, bs)
    single = [_acc(model, x, y, bs, probe(e, 1, single=True)) for e in tm.eps]
    multi = [_acc(model, x, y, bs, probe(e, s)) for e in tm.eps]
    strong = [_acc(model, x, y, bs, probe(e, 2 * s, 2)) for e in tm.eps]
    worst = [w["robust_acc"] for w in summary["worst_case"]]
    key = [f"{tm.norm}@{e:g}" for e in tm.eps]
    curves = {"single_step": dict(zip(key, single)), f"pgd{s}": dict(zip(key, multi)),
              f"pgd{2 * s}x2": dict(zip(key, strong)), "worst_case": dict(zip(key, worst))}
    res: dict[str, dict] = {}

    bumps = [(name, key[i + 1], c[i], c[i + 1]) for name, c in (("single_step", single), (f"pgd{s}", multi),
                                                                 ("worst_case", worst))
             for i in range(len(c) - 1) if c[i + 1] > c[i] + tol]
    res["monotone_eps"] = (_check("monotone_eps", "fail", f"{bumps[0][0]} accuracy rises with eps at {bumps[0][1]} "
                                  f"({bumps[0][2]:.1%} -> {bumps[0][3]:.1%}): the attack is failing, not the model "
                                  f"succeeding", violations=bumps, curves=curves) if bumps else
                           _check("monotone_eps", "pass", "robust accuracy does not increase with eps",
                                  curves=curves))

    weaker = [(key[i], multi[i], single[i]) for i in range(len(key)) if multi[i] > single[i] + tol]
    res["pgd_vs_fgsm"] = (_check("pgd_vs_fgsm", "fail", f"PGD is weaker than the single-step attack at {weaker[0][0]} "
                                 f"({weaker[0][1]:.1%} vs {weaker[0][2]:.1%}): PGD is misconfigured or gradients "
                                 f"are masked", violations=weaker) if weaker else
                          _check("pgd_vs_fgsm", "pass", "PGD is at least as strong as the single-step attack"))

    ratios: dict[str, float] = {}
    for i, k in enumerate(key):
        fooled_multi, fooled_single = clean - multi[i], clean - single[i]
        if fooled_multi >= cfg.min_pgd_success:
            ratios[k] = max(fooled_single, 0.0) / fooled_multi
    if not ratios:
        res["single_step_gap"] = _check("single_step_gap", "skip", f"PGD fooled fewer than "
                                        f"{cfg.min_pgd_success:.0%} of samples at every eps: nothing to compare")
    else:
        k_min = min(ratios, key=ratios.__getitem__)
        r = ratios[k_min]
        status = "fail" if r < cfg.single_step_fail else "warn" if r < cfg.single_step_warn else "pass"
        msg = (f"the single-step attack finds only {r:.0%} of PGD's adversarial examples at {k_min}: the loss is "
               f"masked around the data (typical of FGSM-only training), so single-step robustness is not real"
               if status != "pass" else f"the single-step attack finds {r:.0%} or more of PGD's adversarial examples")
        res["single_step_gap"] = _check("single_step_gap", status, msg, share_of_pgd_successes=ratios)

    drift = {k: multi[i] - strong[i] for i, k in enumerate(key)}
    worst_drift = max(drift.values())
    status = "pass" if worst_drift <= tol else "warn" if worst_drift <= 2.5 * tol else "fail"
    res["convergence"] = _check("convergence", status,
                                f"PGD-{2 * s} with 2 restarts lowers accuracy by at most {worst_drift:.1%} against "
                                f"PGD-{s}" + ("" if status == "pass" else ": the attacks have not converged; the "
                                              "reported robustness is an overestimate"), drop=drift)

    big = cfg.large_eps if cfg.large_eps is not None else (
        0.5 if tm.norm == "linf" else 0.5 * math.sqrt(x[0].numel()))
    acc_big = _acc(model, x, y, bs, probe(big, s))
    chance = max(1.0 / num_classes, float(torch.bincount(y, minlength=num_classes).max()) / n)
    ok = acc_big <= chance + tol
    res["large_eps"] = _check("large_eps", "pass" if ok else "fail",
                              f"PGD-{s} at eps {big:g} ({tm.norm}) leaves {acc_big:.1%} accuracy (chance "
                              f"{chance:.1%})" + ("" if ok else ": an unbounded attack must reach chance; gradients "
                                                  "are masked or the attack is broken"), accuracy=acc_big,
                              chance=chance, eps=big)

    gf = [a for a in summary["attacks"] if a["gradient_free"]]
    if not gf:
        res["gradient_free"] = _check("gradient_free", "skip", "no gradient-free attack in the suite")
    else:
        total = summary.get("n") or 1
        found = {f"{tm.norm}@{w['eps']:g}": w["gradient_free_only"] for w in summary["worst_case"]}
        share = max(found.values()) / total
        status = "fail" if share > cfg.tol else "warn" if share > 0 else "pass"
        res["gradient_free"] = _check(
            "gradient_free", status,
            "the gradient-free attack fooled no sample that the white-box attacks missed" if status == "pass" else
            f"the gradient-free attack fooled {max(found.values())} samples ({share:.1%}) that every white-box "
            f"attack missed: gradients are masked", samples_missed_by_white_box=found,
            attacks=[a["label"] for a in gf])
    return res


def merge(per_tm: list[dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One entry per check over all threat models.

    Args:
        per_tm: :func:`attack_checks` of each threat model, in order.

    Returns:
        Per check that ran (in ``CHECKS`` order), the entry with the worst status; its evidence is the single
        threat model's, or with several, each one's keyed by its position (``"0"``, ``"1"``, ...).
    """
    rank = {"fail": 3, "warn": 2, "pass": 1, "skip": 0}
    out = []
    for name in CHECKS:
        items = [d[name] for d in per_tm if name in d]
        if not items:
            continue
        worst = max(items, key=lambda c: rank[c["status"]])
        ev = items[0]["evidence"] if len(items) == 1 else {str(i): c["evidence"] for i, c in enumerate(items)}
        out.append({**worst, "evidence": ev})
    return out
