"""Gates: the thresholds a report must meet. Each gate is one JUnit test case and one row in every report.

:func:`evaluate_gates` reads only the model entries (and the data description, when given), so an evaluation
judges its gates before it builds the report (:func:`advkit.report.build_report` takes them evaluated).

``min_robust_acc`` guards the model (it must stay robust); ``max_robust_acc`` guards the attacks: on a model
with a known answer (advkit's CI uses a FGSM-trained MNIST model, robust to FGSM and not to PGD) an attack
that stopped working leaves a robust accuracy far above what it should, and the canary fails.
"""

from __future__ import annotations

import math
from typing import Any

from advkit.errors import AdvkitError
from advkit.eval.config import CHECKS, LAUNDERING_NAMES, GatesConfig
from advkit.report.paired import clean_correct, fooled_by, paired_test, pairing_problem, robust_after
from advkit.report.schema import Gate
from advkit.report.stats import fmt_interval


def _gate(name: str, kind: str, model: str, threshold: float | None, value: float | None, passed: bool,
          message: str, p_value: float | None = None) -> dict[str, Any]:
    return Gate(name=name, kind=kind, model=model, threshold=threshold, value=value, passed=passed,
                message=message, p_value=p_value).to_dict()


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def evaluate_gates(report: dict[str, Any], gates: GatesConfig,
                   baseline: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Judge ``gates`` on ``report["models"]`` (a report, or any dict with its model entries).

    Args:
        report: holds ``models``, the report's model entries (classifier or detector), and may hold
            ``data`` (the data description), which a significance test checks against the baseline's.
        gates: the thresholds; ``max_drop`` compares with ``baseline`` (0.01 when a baseline is given and
            no ``max_drop`` is set).
        baseline: an earlier report, or None.

    Returns:
        One gate dict per judged criterion (see :class:`advkit.report.schema.Gate`), in a stable order.

    Raises:
        AdvkitError: ``gates.max_drop`` is still in its ``{value:, significant:}`` form (a :class:`GatesConfig`
            resolves it to a fraction when it is built).
    """
    out: list[dict[str, Any]] = []
    base_models = {m["name"]: m for m in (baseline or {}).get("models", [])}
    if isinstance(gates.max_drop, dict):
        raise AdvkitError(f"gates.max_drop must be a fraction, got {gates.max_drop!r}")
    max_drop = gates.max_drop if gates.max_drop is not None else (0.01 if baseline else None)
    # why the runs cannot be paired sample by sample (other data, eps grids or suites), checked once
    unpairable = pairing_problem(baseline, report) if baseline is not None and gates.max_drop_significant else None
    for m in report["models"]:
        name = m["name"]
        if gates.min_clean_acc is not None:
            v, t = m["clean_acc"], gates.min_clean_acc
            out.append(_gate(f"min_clean_acc[{name}]", "min_clean_acc", name, t, v, v >= t,
                             f"clean accuracy {v:.1%} {'>=' if v >= t else '<'} {t:.1%}"))
        out += _accuracy_gates(m, gates.min_robust_acc, "min_robust_acc")
        out += _accuracy_gates(m, gates.max_robust_acc, "max_robust_acc")
        if max_drop is not None and baseline is not None:
            b = base_models.get(name)
            if b is None:
                out.append(_gate(f"max_drop[{name}]", "max_drop", name, max_drop, None, False,
                                 f"model {name!r} is not in the baseline report"))
                continue
            out += _drop_gates(m, b, max_drop, gates.max_drop_significant, unpairable)
        out += _detection_gates(m, gates)
        wanted = CHECKS if "all" in gates.checks else gates.checks
        by_name = {c["name"]: c for c in m.get("checks", [])}
        for c in wanted:
            got = by_name.get(c)
            if got is None:
                out.append(_gate(f"check[{name},{c}]", "check", name, None, None, False,
                                 f"check {c} did not run (checks disabled?)"))
                continue
            ok = got["status"] != "fail"
            out.append(_gate(f"check[{name},{c}]", "check", name, None, None, ok,
                             f"{c}: {got['status']}: {got['message']}"))
    return out


def _accuracy_gates(m: dict[str, Any], wanted: dict[Any, float], kind: str) -> list[dict[str, Any]]:
    """``min_robust_acc`` / ``max_robust_acc`` on one model: per (attack or worst case, norm, eps), one gate
    per matching threat model (and attack); a failing gate when nothing matches."""
    out, name = [], m["name"]
    upper = kind == "max_robust_acc"
    for (attack, norm, eps), t in wanted.items():
        hits = []
        for tm in m["threat_models"]:
            if norm not in (None, tm["norm"]):
                continue
            rows = [(None, tm["worst_case"])] if attack is None else \
                [(a["label"], a["results"]) for a in tm["attacks"] if attack in (a["label"], a["attack"])]
            hits += [(tm["norm"], label, r) for label, results in rows for r in results if _close(r["eps"], eps)]
        label = f"{norm or 'any'}@{eps:g}"
        if not hits:
            what = f"attack {attack!r} at eps {eps:g}" if attack else f"eps {eps:g}"
            key = f"{name},{attack},{label}" if attack else f"{name},{label}"
            out.append(_gate(f"{kind}[{key}]", kind, name, t, None, False,
                             f"no threat model evaluates {what}" + (f" in {norm}" if norm else "")))
        for tn, atk, r in hits:
            v = r["robust_acc"]
            ok = v is not None and (v <= t + 1e-12 if upper else v >= t)
            sign = ("<=" if ok else ">") if upper else (">=" if ok else "<")
            whose = f"robust accuracy under {atk}" if atk else "worst-case robust accuracy"
            ci = fmt_interval(r.get("robust_acc_ci"))
            value = "not measured" if v is None else f"{v:.1%}" + (f" {ci}" if ci else "")
            why = " (the attack got weaker?)" if upper and not ok else ""
            key = f"{name},{atk},{tn}@{eps:g}" if atk else f"{name},{tn}@{eps:g}"
            out.append(_gate(f"{kind}[{key}]", kind, name, t, v, ok,
                             f"{whose} at {tn} eps {eps:g}: {value} {sign} {t:.1%}{why}"))
    return out


def _drop_gates(m: dict[str, Any], b: dict[str, Any], max_drop: float, significant: bool,
                unpairable: str | None) -> list[dict[str, Any]]:
    """``max_drop`` of one model against its baseline entry ``b``: clean accuracy, worst case per threat model
    and eps, and for detectors the AUCs. With ``significant``, a drop beyond ``max_drop`` fails only when
    McNemar's exact test on the paired samples gives p < 0.05; a drop that cannot be tested (no per-sample
    outcomes on one side, other data, eps grids or suites) fails as without it, and the message says why."""
    name = m["name"]
    pairs = [("clean", b["clean_acc"], m["clean_acc"], _pair(clean_correct(b), clean_correct(m)))]
    det, bdet = m.get("detection"), b.get("detection")
    if det and bdet:  # detectors: AUCs, clean and under attack, may not drop either
        pairs.append(("auc", bdet["clean"]["auc"], det["clean"]["auc"], None))
        for r in det["robust"]:
            br = next((x for x in bdet["robust"] if _close(x["eps"], r["eps"])), None)
            if br is not None:
                pairs.append((f"robust_auc@{r.get('label', r['eps'])}", br["auc"], r["auc"], None))
    for tm in m["threat_models"]:
        btm = next((x for x in b["threat_models"] if x["norm"] == tm["norm"]), None)
        rows, brows = fooled_by(tm), (fooled_by(btm) if btm else None)
        same_grid = btm is not None and len(btm["eps"]) == len(tm["eps"]) and all(
            _close(x, y) for x, y in zip(btm["eps"], tm["eps"]))
        for ei, w in enumerate(tm["worst_case"]):
            bw = next((x for x in (btm or {}).get("worst_case", []) if _close(x["eps"], w["eps"])), None)
            if bw is not None:
                test = _pair(robust_after(brows, ei), robust_after(rows, ei)) if rows and brows and same_grid \
                    else None
                pairs.append((f"{tm['norm']}@{w['eps']:g}", bw["robust_acc"], w["robust_acc"], test))
    out = []
    for what, old, new, test in pairs:
        drop = old - new
        ok = drop <= max_drop + 1e-12
        note, p = "", None
        if test is not None and not unpairable:
            p = test["p_value"]
            if significant:
                note = f"; McNemar p = {p:.2g} on {test['lost']} lost / {test['gained']} gained samples"
                if not ok:
                    ok = not test["significant"]
                    note += ": significant" if not ok else ": not significant, allowed"
        elif significant:
            note = f"; not tested for significance ({unpairable or 'no per-sample outcomes to pair'})"
        out.append(_gate(f"max_drop[{name},{what}]", "max_drop", name, max_drop, drop, ok,
                         f"{what}: {old:.1%} -> {new:.1%} (drop {drop:+.1%}, allowed {max_drop:.1%}){note}", p))
    return out


def _pair(old: list[bool] | None, new: list[bool] | None) -> dict[str, Any] | None:
    return paired_test(old, new) if old is not None and new is not None and len(old) == len(new) else None


def _detection_gates(m: dict[str, Any], gates: GatesConfig) -> list[dict[str, Any]]:
    """``min_auc``, ``min_robust_auc`` and ``min_laundered_auc`` on a model's ``detection`` results; each
    fails with a message when the model has none (it is not a detector, or the laundering grid was off)."""
    name, det = m["name"], m.get("detection")
    out: list[dict[str, Any]] = []
    wanted = gates.min_auc is not None or gates.min_robust_auc or gates.min_laundered_auc
    if not wanted:
        return out
    if det is None:
        return [_gate(f"detection[{name}]", "min_auc", name, None, None, False,
                      f"detector gates are set but {name!r} has no detection results (not a detector evaluation)")]

    def auc_gate(kind: str, key: str | None, t: float, v: float | None, what: str, missing: str) -> None:
        gate = f"{kind}[{name}]" if key is None else f"{kind}[{name},{key}]"
        if v is None:
            out.append(_gate(gate, kind, name, t, None, False, missing))
        else:
            out.append(_gate(gate, kind, name, t, v, v >= t, f"{what}: {v:.4f} {'>=' if v >= t else '<'} {t:.4f}"))

    if gates.min_auc is not None:
        auc_gate("min_auc", None, gates.min_auc, det["clean"]["auc"], "clean AUC", "")
    for eps, t in gates.min_robust_auc.items():
        row: dict[str, Any] = next((r for r in det["robust"] if _close(r["eps"], float(eps))), {})
        label = row.get("label") or f"{eps:.4g}"
        auc_gate("min_robust_auc", label, t, row.get("auc"),
                 f"AUC with fakes attacked (targeted PGD towards real) at eps {label}",
                 f"the evaluation has no evasion attack at eps {eps:.4g} (evaluation.eps)")
    for key, t in gates.min_laundered_auc.items():
        for tr in LAUNDERING_NAMES if key == "all" else (key,):
            auc_gate("min_laundered_auc", tr, t, det["laundering"].get(tr, {}).get("auc"), f"AUC after {tr}",
                     f"no laundering result {tr} (evaluation.laundering off?)")
    return out
