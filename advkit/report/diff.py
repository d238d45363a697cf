"""Compare two reports: what got less robust, what improved, what is no longer measured.

Models match by name, threat models by norm, eps by value (up to float noise), attacks by label. A drop of
more than ``tol`` in clean or worst-case accuracy, or in one attack's robust accuracy, is a regression; a rise
of more than ``tol`` an improvement; for detectors the same holds for AUC (clean, under the evasion attack
per eps, after each laundering transform). A model, threat model, eps or attack that only the old report has is
"removed" and counts as a regression (coverage lost: the new report can look better by measuring less);
only the new one: "added". A gate that passed before and fails now is a regression, the reverse an
improvement. Per-attack numbers are compared only when both threat models ran in the same mode (cascade
numbers are cumulative, full ones are not).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from advkit.errors import AdvkitError
from advkit.report.schema import Report, as_dict, at_eps, eps_label, finite, pct, same_eps, validate

KINDS = ("regression", "improvement", "added", "removed")
_SLACK = 1e-9  # so a drop of exactly ``tol`` (0.99 -> 0.98 with tol 0.01) is not a regression by float noise


@dataclass
class DiffResult:
    """The changes beyond tolerance, in report order; ``regressed`` when any is a regression or a removal."""
    changes: list[dict[str, Any]]
    tol: float = 0.01
    regressed: bool = field(init=False)

    def __post_init__(self) -> None:
        self.regressed = any(c["kind"] in ("regression", "removed") for c in self.changes)


class _Collector:
    def __init__(self, tol: float) -> None:
        self.tol = tol
        self.changes: list[dict[str, Any]] = []

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


def diff_reports(old: Report | dict[str, Any], new: Report | dict[str, Any], tol: float = 0.01) -> DiffResult:
    """What changed from ``old`` to ``new`` by more than ``tol`` (a fraction: 0.01 is one point of accuracy)."""
    old, new = as_dict(old), as_dict(new)
    versions = [r.get("schema_version") if isinstance(r, dict) else None for r in (old, new)]
    if versions[0] != versions[1]:
        raise AdvkitError(f"cannot compare reports of schema version {versions[0]} and {versions[1]}")
    validate(old)
    validate(new)
    if not tol >= 0:
        raise AdvkitError(f"tolerance must be >= 0, got {tol}")
    c = _Collector(tol)
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
    return DiffResult(c.changes, tol)


def _value(x: Any) -> str:
    return pct(x) if finite(x) is not None else "—" if x is None else str(x)


def format_diff(result: DiffResult) -> str:
    """One line per change, then a verdict line."""
    lines = []
    for ch in result.changes:
        model = "" if ch["model"] is None else f"[{ch['model']}] "
        values = "" if ch["old"] is None and ch["new"] is None else f": {_value(ch['old'])} -> {_value(ch['new'])}"
        delta = "" if ch["delta"] is None else f" ({ch['delta'] * 100:+.1f} pts)"
        lines.append(f"{ch['kind'].upper():<11} {model}{ch['what']}{values}{delta}")
    counts = {k: sum(ch["kind"] == k for ch in result.changes) for k in KINDS}
    if not result.changes:
        lines.append(f"no changes beyond tolerance {result.tol:.1%}")
    else:
        summary = ", ".join(f"{n} {k}{'s' * (n != 1) if k in ('regression', 'improvement') else ''}"
                            for k, n in counts.items() if n)
        lines.append(f"{'REGRESSED' if result.regressed else 'no regressions'}: {summary} "
                     f"(tolerance {result.tol:.1%})")
    return "\n".join(lines) + "\n"
