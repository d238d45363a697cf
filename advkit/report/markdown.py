"""The Markdown summary: short enough for a pull-request comment or a CI job summary."""

from __future__ import annotations

from typing import Any

from advkit.report.schema import (
    Report,
    as_dict,
    at_eps,
    eps_label,
    failing_gates,
    finite,
    gate_value,
    headline,
    loaded_label,
    num_ci,
    pct,
    pct_ci,
    seconds,
    source_label,
)

_ICON = {"pass": "✅", "warn": "⚠️", "fail": "❌", "skip": "⏭️"}


def _md(text: Any) -> str:
    """Report text made safe for one Markdown table cell or line (no HTML, no cell breaks, no newlines)."""
    s = " ".join(str(text).split())
    return s.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _table(header: list[str], rows: list[list[str]], align: list[str]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|",
            *("| " + " | ".join(r) + " |" for r in rows)]


def _acc(entry: dict[str, Any] | None) -> str:
    """An attack result's or worst case's robust accuracy, with its interval when the report has one."""
    entry = entry or {}
    return pct_ci(entry.get("robust_acc"), entry.get("robust_acc_ci"))


def _threat_model_table(tm: dict[str, Any], clean_acc: Any, clean_ci: Any = None) -> list[str]:
    cumulative = tm.get("mode") == "cascade"
    header = ["eps", "clean"] + [_md(a["label"]) + (" (cumulative)" if cumulative else "") for a in tm["attacks"]]
    header.append("**worst case**")
    rows = []
    for eps in tm["eps"]:
        cells = [eps_label(eps), pct_ci(clean_acc, clean_ci)]
        cells += [_acc(at_eps(a["results"], eps)) for a in tm["attacks"]]
        cells.append(f"**{_acc(at_eps(tm['worst_case'], eps))}**")
        rows.append(cells)
    return _table(header, rows, ["---:"] * len(header))


def _num(x: Any, fmt: str = ".4f") -> str:
    v = finite(x)
    return "—" if v is None else format(v, fmt)


def _auc(r: dict[str, Any]) -> str:
    return num_ci(r.get("auc"), r.get("auc_ci"))


def _det_acc(r: dict[str, Any]) -> str:
    return pct_ci(r.get("acc"), r.get("acc_ci"))


def _detection(det: dict[str, Any]) -> list[str]:
    """Clean, laundered and adversarial AUC side by side, then per-generator AP."""
    sub = det.get("subset") or {}
    rows = [["**clean**", str(det.get("n_test")), f"**{_auc(det['clean'])}**",
             _num(det["clean"].get("ap")), _det_acc(det["clean"]), "—"]]
    rows += [[f"laundered: {_md(k)}", str(sub.get("n", "—")), _auc(v), _num(v.get("ap")),
              _det_acc(v), "—"] for k, v in det["laundering"].items()]
    rows += [[f"evasion: PGD-{det.get('pgd_steps', '?')} at {_md(r.get('label', eps_label(r['eps'])))}",
              str(sub.get("n", "—")), _auc(r), _num(r.get("ap")), _det_acc(r),
              pct(r.get("fakes_called_real"))] for r in det["robust"]]
    out = ["", "Detection (scores P(fake); laundering on both classes; evasion: targeted PGD pushing fakes to "
               "real):", ""]
    out += _table(["condition", "images", "AUC", "AP", "acc", "fakes called real"], rows,
                  ["---", "---:", "---:", "---:", "---:", "---:"])
    per_gen = det.get("per_generator") or {}
    if per_gen:
        out += ["", "Per fake source (its fakes against all real test images):", ""]
        out += _table(["fake source", "fakes", "AUC", "AP"],
                      [[f"`{_md(g)}`", str(r.get("n_fake")), _auc(r), _num(r.get("ap"))]
                       for g, r in per_gen.items()], ["---", "---:", "---:", "---:"])
    return out


def _has_intervals(tm: dict[str, Any]) -> bool:
    return any(w.get("robust_acc_ci") for w in tm["worst_case"])


def _ci_suffix(ci: Any, x: Any) -> str:
    """`` [88.7, 91.0]`` after a bold figure, or nothing."""
    full = pct_ci(x, ci)
    return full[len(pct(x)):] if full != pct(x) else ""


def _checks(checks: list[dict[str, Any]]) -> list[str]:
    if not checks:
        return ["Checks: none ran."]
    counts = {s: sum(c["status"] == s for c in checks) for s in _ICON}
    line = "Checks: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n or s != "skip")
    return [line, *(f"- {_ICON[c['status']]} `{_md(c['name'])}` ({c['status']}): {_md(c['message'])}"
                     for c in checks if c["status"] != "pass")]


def _gates(gates: list[dict[str, Any]]) -> list[str]:
    rows = []
    for g in gates:
        ok = g.get("passed") is True
        name = _md(g["name"])
        kind = g.get("kind")
        rows.append([name if ok else f"**{name}**", gate_value(g.get("value"), kind),
                     gate_value(g.get("threshold"), kind),
                     "✅ pass" if ok else "❌ **fail**"])
    return _table(["gate", "value", "threshold", "result"], rows, ["---", "---:", "---:", "---"])


def to_markdown(report: Report | dict[str, Any]) -> str:
    """The report as a Markdown summary (a CI job summary or a pull-request comment).

    Args:
        report: a valid report (typed, or its dict).

    Returns:
        Markdown: the verdict, one table per model and threat model, checks, gates, time.
    """
    report = as_dict(report)
    bad = failing_gates(report)
    icon = "✅" if report["passed"] is True else "❌"
    d, env = report["data"], report["environment"]
    lines = [f"## {icon} advkit robustness: {headline(report)}", "",
             f"{_md(d.get('dataset', '?'))}/{_md(d.get('split', '?'))}, {d.get('n', '?')} samples · "
             f"advkit {_md(env.get('advkit', '?'))}, torch {_md(env.get('torch', '?'))} on "
             f"{_md(env.get('device', '?'))} · {_md(report['created'])}"]
    for m in report["models"]:
        lines += ["", f"### Model `{_md(m['name'])}`", "",
                  f"Source: `{_md(source_label(m['source']))}` · clean accuracy **{pct(m['clean_acc'])}**"
                  f"{_ci_suffix(m.get('clean_acc_ci'), m['clean_acc'])} on {m['n']} samples"]
        if loaded_label(m.get("loaded")):
            lines += ["", f"Loaded: {_md(loaded_label(m.get('loaded')))}"]
        if m.get("detection"):
            lines += _detection(m["detection"])
        for tm in m["threat_models"]:
            mode = ("cascade: each attack only on what earlier ones left, so attack columns are cumulative"
                    if tm.get("mode") == "cascade" else "full: each attack on its own")
            ci = " with 95% Wilson intervals [lo, hi]" if _has_intervals(tm) else ""
            lines += ["", f"**{_md(tm['norm'])}** ({mode}); robust accuracy{ci}:", ""]
            lines += _threat_model_table(tm, m["clean_acc"], m.get("clean_acc_ci"))
        lines += ["", *_checks(m["checks"])]
    lines += ["", "### Gates", ""]
    if report["gates"]:
        lines += _gates(report["gates"])
        if bad:
            lines += ["", *(f"- ❌ **{_md(g['name'])}**: {_md(g.get('message', ''))}" for g in bad)]
    else:
        lines.append("No gates configured.")
    t = report["timing"]
    lines += ["", f"Time: {seconds(t.get('total_s'))} in all, {seconds(t.get('attack_s'))} in attacks; "
                  f"{seconds(t.get('time_saved_s'))} saved by skipping samples already fooled."]
    return "\n".join(lines) + "\n"
