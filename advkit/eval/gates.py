"""Gates: the thresholds a report must meet. Each gate is one JUnit test case and one row in every report.

:func:`evaluate_gates` reads only the model entries, so an evaluation judges its gates before it builds the
report (:func:`advkit.report.build_report` takes them evaluated)."""

from __future__ import annotations

import math

from advkit.eval.config import CHECKS, LAUNDERING_NAMES, GatesConfig
from advkit.report.schema import Gate


def _gate(name: str, kind: str, model: str, threshold: float | None, value: float | None, passed: bool,
          message: str) -> dict:
    return Gate(name=name, kind=kind, model=model, threshold=threshold, value=value, passed=passed,
                message=message).to_dict()


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def evaluate_gates(report: dict, gates: GatesConfig, baseline: dict | None = None) -> list[dict]:
    """Judge ``gates`` on ``report["models"]`` (a report, or any dict with its model entries).

    Args:
        report: holds ``models``, the report's model entries (classifier or detector).
        gates: the thresholds; ``max_drop`` compares with ``baseline`` (0.01 when a baseline is given and
            no ``max_drop`` is set).
        baseline: an earlier report, or None.

    Returns:
        One gate dict per judged criterion (see :class:`advkit.report.schema.Gate`), in a stable order.
    """
    out = []
    base_models = {m["name"]: m for m in (baseline or {}).get("models", [])}
    max_drop = gates.max_drop if gates.max_drop is not None else (0.01 if baseline else None)
    for m in report["models"]:
        name = m["name"]
        if gates.min_clean_acc is not None:
            v, t = m["clean_acc"], gates.min_clean_acc
            out.append(_gate(f"min_clean_acc[{name}]", "min_clean_acc", name, t, v, v >= t,
                             f"clean accuracy {v:.1%} {'>=' if v >= t else '<'} {t:.1%}"))
        for (norm, eps), t in gates.min_robust_acc.items():
            hits = [(tm["norm"], w) for tm in m["threat_models"] if norm in (None, tm["norm"])
                    for w in tm["worst_case"] if _close(w["eps"], eps)]
            label = f"{norm or 'any'}@{eps:g}"
            if not hits:
                out.append(_gate(f"min_robust_acc[{name},{label}]", "min_robust_acc", name, t, None, False,
                                 f"no threat model evaluates eps {eps:g}" + (f" in {norm}" if norm else "")))
            for tn, w in hits:
                v = w["robust_acc"]
                out.append(_gate(f"min_robust_acc[{name},{tn}@{eps:g}]", "min_robust_acc", name, t, v, v >= t,
                                 f"worst-case robust accuracy at {tn} eps {eps:g}: {v:.1%} "
                                 f"{'>=' if v >= t else '<'} {t:.1%}"))
        if max_drop is not None and baseline is not None:
            b = base_models.get(name)
            if b is None:
                out.append(_gate(f"max_drop[{name}]", "max_drop", name, max_drop, None, False,
                                 f"model {name!r} is not in the baseline report"))
                continue
            pairs = [("clean", b["clean_acc"], m["clean_acc"])]
            det, bdet = m.get("detection"), b.get("detection")
            if det and bdet:  # detectors: AUCs, clean and under attack, may not drop either
                pairs.append(("auc", bdet["clean"]["auc"], det["clean"]["auc"]))
                for r in det["robust"]:
                    br = next((x for x in bdet["robust"] if _close(x["eps"], r["eps"])), None)
                    if br is not None:
                        pairs.append((f"robust_auc@{r.get('label', r['eps'])}", br["auc"], r["auc"]))
            for tm in m["threat_models"]:
                btm = next((x for x in b["threat_models"] if x["norm"] == tm["norm"]), None)
                for w in tm["worst_case"]:
                    bw = next((x for x in (btm or {}).get("worst_case", []) if _close(x["eps"], w["eps"])), None)
                    if bw is not None:
                        pairs.append((f"{tm['norm']}@{w['eps']:g}", bw["robust_acc"], w["robust_acc"]))
            for what, old, new in pairs:
                drop = old - new
                ok = drop <= max_drop + 1e-12
                out.append(_gate(f"max_drop[{name},{what}]", "max_drop", name, max_drop, drop, ok,
                                 f"{what}: {old:.1%} -> {new:.1%} (drop {drop:+.1%}, allowed {max_drop:.1%})"))
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


def _detection_gates(m: dict, gates: GatesConfig) -> list[dict]:
    """``min_auc``, ``min_robust_auc`` and ``min_laundered_auc`` on a model's ``detection`` results; each
    fails with a message when the model has none (it is not a detector, or the laundering grid was off)."""
    name, det, out = m["name"], m.get("detection"), []
    wanted = gates.min_auc is not None or gates.min_robust_auc or gates.min_laundered_auc
    if wanted and det is None:
        return [_gate(f"detection[{name}]", "min_auc", name, None, None, False,
                      f"detector gates are set but {name!r} has no detection results (not a detector evaluation)")]

    def auc_gate(kind: str, key: str, t: float, v: float | None, what: str, missing: str) -> None:
        gate = f"{kind}[{name}]" if key is None else f"{kind}[{name},{key}]"
        if v is None:
            out.append(_gate(gate, kind, name, t, None, False, missing))
        else:
            out.append(_gate(gate, kind, name, t, v, v >= t, f"{what}: {v:.4f} {'>=' if v >= t else '<'} {t:.4f}"))

    if gates.min_auc is not None:
        auc_gate("min_auc", None, gates.min_auc, det["clean"]["auc"], "clean AUC", "")
    for eps, t in gates.min_robust_auc.items():
        row = next((r for r in det["robust"] if _close(r["eps"], eps)), {})
        label = row.get("label") or f"{eps:.4g}"
        auc_gate("min_robust_auc", label, t, row.get("auc"),
                 f"AUC with fakes attacked (targeted PGD towards real) at eps {label}",
                 f"the evaluation has no evasion attack at eps {eps:.4g} (evaluation.eps)")
    for key, t in gates.min_laundered_auc.items():
        for tr in LAUNDERING_NAMES if key == "all" else (key,):
            auc_gate("min_laundered_auc", tr, t, det["laundering"].get(tr, {}).get("auc"), f"AUC after {tr}",
                     f"no laundering result {tr} (evaluation.laundering off?)")
    return out
