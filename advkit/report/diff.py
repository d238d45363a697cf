"""Compare two reports: what got less robust, what improved, what is no longer measured.

Models match by name, threat models by norm, eps by value (up to float noise), attacks by label. A drop of
more than ``tol`` in clean or worst-case accuracy, or in one attack's robust accuracy, is a regression; a rise
of more than ``tol`` an improvement; for detectors the same holds for AUC (clean, under the evasion attack
per eps, after each laundering transform). A model, threat model, eps or attack that only the old report has is
"removed" and counts as a regression (coverage lost: the new report can look better by measuring less);
only the new one: "added". A gate that passed before and fails now is a regression, the reverse an
improvement. Per-attack numbers are compared only when both threat models ran in the same mode (cascade
numbers are cumulative, full ones are not).

Reports of different data (dataset, split, number of samples, or, when both carry a fingerprint, the samples)
are refused. When both carry per-sample outcomes (every report ``advkit eval`` writes), the two runs are paired
sample by sample: they must then share eps grids and attack suites (else refused, naming what differs), every
change of an accuracy gets McNemar's exact p-value on the samples whose outcome changed, and ``paired`` lists
every test (:mod:`advkit.report.paired`). With ``significant_only`` a drop beyond ``tol`` counts as a
regression only when it is significant (p < 0.05); drops that cannot be tested still count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from advkit.errors import AdvkitError
from advkit.report.paired import data_problem, has_per_sample, paired_tests, pairing_problem
from advkit.report.schema import Report, as_dict, at_eps, eps_label, finite, pct, same_eps, validate

KINDS = ("regression", "improvement", "added", "removed")
_SLACK = 1e-9  # so a drop of exactly ``tol`` (0.99 -> 0.98 with tol 0.01) is not a regression by float noise


@dataclass
class DiffResult:
    """The changes beyond tolerance, in report order; ``regressed`` when any is a regression or a removal
    (with ``significant_only``: a regression only when significant or untestable). ``paired``: McNemar's test
    for every accuracy both runs measured on the same samples (empty when the reports are not paired)."""
    changes: list[dict[str, Any]]
    tol: float = 0.01
    paired: list[dict[str, Any]] = field(default_factory=list)
    significant_only: bool = False
    regressed: bool = field(init=False)

    def __post_init__(self) -> None:
        self.regressed = any(c["kind"] == "removed" or (c["kind"] == "regression" and (
            not self.significant_only or c.get("significant", True))) for c in self.changes)


class _Collector:
    def __init__(self, tol: float, tests: Sequence[dict[str, Any]] = ()) -> None:
        self.tol = tol
        self.changes: list[dict[str, Any]] = []
        self.tests = {(t["model"], t["what"]): t for t in tests}

    def add(self, model: Any, what: str, old: Any, new: Any, kind: str) -> None:
        o, n = finite(old), finite(new)
        delta = None if o is None or n is None else n - o
        self.changes.append({"model": model, "what": what, "old": _no_nan(old), "new": _no_nan(new),
                             "delta": delta, "kind": kind})

    def compare(self, model: Any, what: str, old: Any, new: Any) -> None:
        """A regression or improvement when both are numbers that differ by more than ``tol``."""
        o, n = finite(old), finite(new)
        if o is None or n is None or abs(n - o) <= self.tol + _SLACK:
            return
        self.add(model, what, old, new, "regression" if n < o else "improvement")
        test = self.tests.get((model, what))
        if test is not None:  # paired runs: is the change more than chance?
            self.changes[-1].update(p_value=test["p_value"], significant=test["significant"])


def _no_nan(x: Any) -> Any:
    """NaN and infinities as ``None``, so a result always dumps as strict JSON."""
    return None if isinstance(x, float) and not math.isfinite(x) else x


def _by(items: list[dict[str, Any]], key: str) -> dict[Any, dict[str, Any]]:
    return {item[key]: item for item in items}


def _robust(entries: list[dict[str, Any]], eps: Any) -> Any:
    return (at_eps(entries, eps) or {}).get("robust_acc")


def _threat_model(c: _Collector, model: Any, old: dict[str, Any], new: dict[str, Any]) -> None:
    norm = old["norm"]
    for eps in old["eps"]:
        if not any(same_eps(e, eps) for e in new["eps"]):
            c.add(model, f"eps {norm}@{eps_label(eps)}", _robust(old["worst_case"], eps), None, "removed")
    for eps in new["eps"]:
        if not any(same_eps(e, eps) for e in old["eps"]):
            c.add(model, f"eps {norm}@{eps_label(eps)}", None, _robust(new["worst_case"], eps), "added")
    old_attacks, new_attacks = _by(old["attacks"], "label"), _by(new["attacks"], "label")
    for label in (k for k in old_attacks if k not in new_attacks):
        c.add(model, f"attack {label} ({norm})", None, None, "removed")
    for label in (k for k in new_attacks if k not in old_attacks):
        c.add(model, f"attack {label} ({norm})", None, None, "added")
    same_mode = old.get("mode") == new.get("mode")
    for eps in old["eps"]:
        where = f"{norm}@{eps_label(eps)}"
        c.compare(model, f"worst_case {where}", _robust(old["worst_case"], eps), _robust(new["worst_case"], eps))
        if same_mode:
            for label, a in old_attacks.items():
                if label in new_attacks:
                    c.compare(model, f"{label} {where}", _robust(a["results"], eps),
                              _robust(new_attacks[label]["results"], eps))


def _detection(c: _Collector, model: Any, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
    """Detectors: clean AUC, AUC under the evasion attack per eps and after each laundering transform."""
    if old is None or new is None:
        if old is not None or new is not None:
            c.add(model, "detection results", None, None, "removed" if new is None else "added")
        return
    c.compare(model, "AUC clean", old["clean"].get("auc"), new["clean"].get("auc"))
    for r in old["robust"]:
        label = r.get("label") or eps_label(r["eps"])
        nr = at_eps(new["robust"], r["eps"])
        if nr is None:
            c.add(model, f"AUC evasion@{label}", r.get("auc"), None, "removed")
        else:
            c.compare(model, f"AUC evasion@{label}", r.get("auc"), nr.get("auc"))
    for k, v in old["laundering"].items():
        nv = new["laundering"].get(k)
        if nv is None:
            c.add(model, f"AUC {k}", v.get("auc"), None, "removed")
        else:
            c.compare(model, f"AUC {k}", v.get("auc"), nv.get("auc"))


def diff_reports(old: Report | dict[str, Any], new: Report | dict[str, Any], tol: float = 0.01, *,
                 significant_only: bool = False) -> DiffResult:
    """What changed from ``old`` to ``new`` by more than ``tol`` (a fraction: 0.01 is one point of accuracy).

    Args:
        old, new: the reports (typed or their dicts).
        tol: the change treated as noise.
        significant_only: a drop counts as a regression only when McNemar's test calls it significant
            (paired reports; a drop that cannot be tested still counts).

    Returns:
        The changes, the paired tests and the verdict.

    Raises:
        AdvkitError: the reports are of different schema versions or data, or, paired, of different eps
            grids or attack suites (the message names what differs).
    """
    old, new = as_dict(old), as_dict(new)
    versions = [r.get("schema_version") if isinstance(r, dict) else None for r in (old, new)]
    if versions[0] != versions[1]:
        raise AdvkitError(f"cannot compare reports of schema version {versions[0]} and {versions[1]}")
    validate(old)
    validate(new)
    if not tol >= 0:
        raise AdvkitError(f"tolerance must be >= 0, got {tol}")
    paired = has_per_sample(old) and has_per_sample(new)
    problem = pairing_problem(old, new) if paired else data_problem(old, new)
    if problem:
        raise AdvkitError(f"cannot compare these reports: {problem}")
    tests = paired_tests(old, new) if paired else []
    c = _Collector(tol, tests)
    old_models, new_models = _by(old["models"], "name"), _by(new["models"], "name")
    for name, m in old_models.items():
        if name not in new_models:
            c.add(name, "model", m["clean_acc"], None, "removed")
            continue
        n = new_models[name]
        c.compare(name, "clean_acc", m["clean_acc"], n["clean_acc"])
        old_tms, new_tms = _by(m["threat_models"], "norm"), _by(n["threat_models"], "norm")
        for norm, tm in old_tms.items():
            if norm in new_tms:
                _threat_model(c, name, tm, new_tms[norm])
            else:
                c.add(name, f"threat model {norm}", None, None, "removed")
        for norm in (k for k in new_tms if k not in old_tms):
            c.add(name, f"threat model {norm}", None, None, "added")
        _detection(c, name, m.get("detection"), n.get("detection"))
    for name, m in new_models.items():
        if name not in old_models:
            c.add(name, "model", None, m["clean_acc"], "added")
    new_gates = _by(new["gates"], "name")
    for name, g in _by(old["gates"], "name").items():
        ng = new_gates.get(name)
        if ng is not None and (g.get("passed") is True) != (ng.get("passed") is True):
            c.add(ng.get("model"), f"gate {name}", g.get("value"), ng.get("value"),
                  "improvement" if ng.get("passed") is True else "regression")
    return DiffResult(c.changes, tol, tests, significant_only)


def _value(x: Any) -> str:
    return pct(x) if finite(x) is not None else "—" if x is None else str(x)


def _significance(ch: dict[str, Any]) -> str:
    """``; McNemar p = 0.003, significant`` on a paired change, else nothing."""
    if "p_value" not in ch:
        return ""
    p = ch["p_value"]
    shown = f"= {p:.2g}" if p >= 1e-4 else "< 0.0001"
    return f"; McNemar p {shown}, {'significant' if ch['significant'] else 'not significant'}"


def format_diff(result: DiffResult) -> str:
    """The diff for people to read.

    Args:
        result: what :func:`diff_reports` found.

    Returns:
        One line per change, then a verdict line.
    """
    lines = []
    for ch in result.changes:
        model = "" if ch["model"] is None else f"[{ch['model']}] "
        values = "" if ch["old"] is None and ch["new"] is None else f": {_value(ch['old'])} -> {_value(ch['new'])}"
        delta = "" if ch["delta"] is None else f" ({ch['delta'] * 100:+.1f} pts)"
        lines.append(f"{ch['kind'].upper():<11} {model}{ch['what']}{values}{delta}{_significance(ch)}")
    counts = {k: sum(ch["kind"] == k for ch in result.changes) for k in KINDS}
    if not result.changes:
        lines.append(f"no changes beyond tolerance {result.tol:.1%}")
    else:
        summary = ", ".join(f"{n} {k}{'s' * (n != 1) if k in ('regression', 'improvement') else ''}"
                            for k, n in counts.items() if n)
        only = ", significant drops only" if result.significant_only else ""
        lines.append(f"{'REGRESSED' if result.regressed else 'no regressions'}: {summary} "
                     f"(tolerance {result.tol:.1%}{only})")
    return "\n".join(lines) + "\n"
