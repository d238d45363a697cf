"""The HTML report: one self-contained file (inline style, inline SVG plots, example grids as data: URIs), so
it opens from a CI artifact with no network. Every string from the report is escaped."""

from __future__ import annotations

import html
import json
import math
import re
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
    same_eps,
    seconds,
    source_label,
)

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:1100px;
 padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:2em;border-bottom:1px solid #ccc}h3{margin-top:1.4em}
.verdict{display:inline-block;padding:.1em .6em;border-radius:.3em;color:#fff}
.verdict.passed{background:#2e7d32}.verdict.failed{background:#c62828}
.muted{color:#666}table{border-collapse:collapse;margin:.6em 0}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right;vertical-align:top}
th{background:#f4f4f4}td.text,th.text{text-align:left}
tr.bad td{background:#fdecea}tr.bad td.result{color:#c62828;font-weight:bold}td.result.ok{color:#2e7d32}
td.status{font-weight:bold;text-transform:uppercase;color:#fff;text-align:center}
td.status-pass{background:#2e7d32}td.status-warn{background:#ef8f00}td.status-fail{background:#c62828}
td.status-skip{background:#888}
td.worst{font-weight:bold}
pre{white-space:pre-wrap;word-break:break-all;background:#f7f7f7;padding:.4em;margin:.3em 0;font-size:.85em}
svg{max-width:100%;height:auto}svg text{font-size:12px;fill:#333}
figure{display:inline-block;margin:.5em 1em .5em 0}figure img{max-width:100%;image-rendering:pixelated}
figcaption{font-size:.9em;color:#444}
"""
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#d62728",
            "#7f7f7f")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")

# plot geometry (SVG user units): plot area, margins around it, legend to its right
_PW, _PH = 480, 260
_ML, _MR, _MT, _MB = 56, 16, 14, 44
_LEGEND_W, _LEGEND_ROW = 200, 18


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _num(x: Any, fmt: str = "g") -> str:
    """A number for a table cell; counts stay whole (``1000000``, not ``1e+06``)."""
    v = finite(x)
    if v is None:
        return "—"
    return str(int(v)) if fmt == "g" and v.is_integer() else format(v, fmt)


def _json(x: Any) -> str:
    return json.dumps(x, separators=(", ", ": "), ensure_ascii=False, default=str)


def _ticks(hi: float, n: int = 5) -> list[float]:
    """Round ticks from 0 to at least ``hi``: steps of 1, 2 or 5 times a power of ten, about ``n`` of them."""
    raw = hi / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw * (1 - 1e-9))
    return [i * step for i in range(math.ceil(hi / step - 1e-9) + 1)]


Point = tuple[float, float, "tuple[float, float] | None"]  # eps, accuracy, its interval (lo, hi) or None


def _interval(ci: Any) -> tuple[float, float] | None:
    if not isinstance(ci, (list, tuple)) or len(ci) != 2:
        return None
    lo, hi = finite(ci[0]), finite(ci[1])
    if lo is None or hi is None:
        return None
    return min(max(lo, 0.0), 1.0), min(max(hi, 0.0), 1.0)


def _series(tm: dict[str, Any], clean_acc: Any, clean_ci: Any = None) -> list[tuple[str, str, float, list[Point]]]:
    """(label, colour, stroke width, points) per attack and a last, thick one for the worst case. Every line
    starts at eps 0 with the clean accuracy (no budget, no change); points that are not numbers are skipped.
    A point carries its 95% interval when the report has one (drawn as an error bar)."""
    start = [] if finite(clean_acc) is None or any(same_eps(e, 0) for e in tm["eps"]) else \
        [(0.0, clean_acc, clean_ci)]

    def points(entries: list[dict[str, Any]]) -> list[Point]:
        pts = [(e, (at_eps(entries, e) or {}).get("robust_acc"), (at_eps(entries, e) or {}).get("robust_acc_ci"))
               for e in tm["eps"]]
        return [(float(x), min(max(float(y), 0.0), 1.0), _interval(ci)) for x, y, ci in start + pts
                if finite(x) is not None and finite(y) is not None]

    out = [(str(a["label"]), _PALETTE[i % len(_PALETTE)], 1.6, points(a["results"]))
           for i, a in enumerate(tm["attacks"])]
    out.append(("worst case", "#000", 3.5, points(tm["worst_case"])))
    return out


def _legend_row(i: int, label: str, colour: str, stroke: float, max_chars: int) -> str:
    """Row ``i`` of a plot legend right of the plot area: a line sample and the label (cut to ``max_chars``,
    the whole label in its tooltip)."""
    lx, y = _ML + _PW + _MR + 10, _MT + _LEGEND_ROW * (i + 0.5)
    short = label if len(label) <= max_chars else label[:max_chars - 1] + "…"
    return (f'<line x1="{lx}" y1="{y:.1f}" x2="{lx + 22}" y2="{y:.1f}" stroke="{colour}" stroke-width="{stroke}"/>'
            f'<text x="{lx + 28}" y="{y + 4:.1f}"><title>{_e(label)}</title>{_e(short)}</text>')


def _plot(tm: dict[str, Any], clean_acc: Any, clean_ci: Any = None) -> str:
    """Robust accuracy against eps as an inline SVG line plot with axes, ticks, grid, legend and, where the
    report has them, 95% intervals as error bars."""
    series = _series(tm, clean_acc, clean_ci)
    xs = [x for *_, pts in series for x, _, _ in pts]
    x_ticks = _ticks(max(xs) if xs and max(xs) > 0 else 1.0)
    x_hi = x_ticks[-1]
    width = _ML + _PW + _MR + _LEGEND_W
    height = max(_MT + _PH + _MB, _MT + _LEGEND_ROW * (len(series) + 1))

    def px(x: float) -> float:
        return _ML + x / x_hi * _PW

    def py(y: float) -> float:
        return _MT + (1 - y) * _PH

    norm = _e(tm["norm"])
    parts = [f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             f'aria-label="robust accuracy against eps ({norm})">']
    for i in range(6):  # y: 0% .. 100%
        y = py(i / 5)
        parts.append(f'<line x1="{_ML}" y1="{y:.1f}" x2="{_ML + _PW}" y2="{y:.1f}" stroke="#e5e5e5"/>'
                     f'<text x="{_ML - 6}" y="{y + 4:.1f}" text-anchor="end">{i * 20}%</text>')
    for t in x_ticks:
        x = px(t)
        parts.append(f'<line x1="{x:.1f}" y1="{_MT}" x2="{x:.1f}" y2="{_MT + _PH}" stroke="#f0f0f0"/>'
                     f'<line x1="{x:.1f}" y1="{_MT + _PH}" x2="{x:.1f}" y2="{_MT + _PH + 5}" stroke="#333"/>'
                     f'<text x="{x:.1f}" y="{_MT + _PH + 18}" text-anchor="middle">{round(t, 12):g}</text>')
    parts.append(f'<rect x="{_ML}" y="{_MT}" width="{_PW}" height="{_PH}" fill="none" stroke="#333"/>'
                 f'<text x="{_ML + _PW / 2}" y="{_MT + _PH + 36}" text-anchor="middle">eps ({norm})</text>'
                 f'<text transform="translate(14 {_MT + _PH / 2}) rotate(-90)" text-anchor="middle">'
                 f'robust accuracy</text>')
    n_points = max((len(pts) for *_, pts in series), default=0)
    radius = 3 if n_points <= 20 else 1.5
    for label, colour, stroke, pts in series[-1:] + series[:-1]:  # the worst case under the attack lines
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y, _ in pts)
        parts.append(f'<g><title>{_e(label)}</title><polyline points="{coords}" fill="none" stroke="{colour}" '
                     f'stroke-width="{stroke}" stroke-linejoin="round"/>')
        r = radius * 1.5 if stroke > 2 else radius
        parts += [_error_bar(px(x), py(ci[0]), py(ci[1]), colour, r + 1.5) for x, _, ci in pts if ci]
        parts += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="{r}" fill="{colour}">'
                  f'<title>{_e(label)}, eps {x:g}: {y:.1%}{_ci_title(ci)}</title></circle>' for x, y, ci in pts]
        parts.append("</g>")
    parts += [_legend_row(i, label, colour, stroke, 26) for i, (label, colour, stroke, _) in enumerate(series)]
    parts.append("</svg>")
    return "".join(parts)


def _error_bar(x: float, y_lo: float, y_hi: float, colour: str, cap: float) -> str:
    """A vertical error bar with caps as one SVG path (``y_lo`` is the lower accuracy: the larger y)."""
    return (f'<path class="ci" d="M{x:.1f},{y_lo:.1f}V{y_hi:.1f}M{x - cap:.1f},{y_lo:.1f}H{x + cap:.1f}'
            f'M{x - cap:.1f},{y_hi:.1f}H{x + cap:.1f}" stroke="{colour}" stroke-width="1" fill="none" '
            f'opacity="0.7"/>')


def _ci_title(ci: tuple[float, float] | None) -> str:
    return "" if ci is None else f" (95% interval {ci[0]:.1%} to {ci[1]:.1%})"


def _roc_plot(curves: list[tuple[str, dict[str, Any], Any]], title: str) -> str:
    """ROC curves (false-positive rate against true-positive rate, both 0..1) as an inline SVG with the
    chance diagonal; ``curves``: (name, {"fpr": [...], "tpr": [...]}, auc result) in legend order, where the
    result holds ``auc`` and, when the report has it, ``auc_ci`` (shown in the legend)."""
    labels = [f"{name} (AUC {num_ci((r or {}).get('auc'), (r or {}).get('auc_ci'), '.3f')})"
              for name, _, r in curves]
    legend_w = max(_LEGEND_W, 40 + 8.5 * max((len(t) for t in labels), default=0))  # ~8.5 units a character
    width = round(_ML + _PW + _MR + legend_w)
    height = max(_MT + _PH + _MB, _MT + _LEGEND_ROW * (len(curves) + 1))

    def px(x: float) -> float:
        return _ML + x * _PW

    def py(y: float) -> float:
        return _MT + (1 - y) * _PH

    parts = [f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             f'aria-label="{_e(title)}">']
    for i in range(6):
        v = i / 5
        parts.append(f'<line x1="{_ML}" y1="{py(v):.1f}" x2="{_ML + _PW}" y2="{py(v):.1f}" stroke="#e5e5e5"/>'
                     f'<text x="{_ML - 6}" y="{py(v) + 4:.1f}" text-anchor="end">{v:g}</text>'
                     f'<line x1="{px(v):.1f}" y1="{_MT}" x2="{px(v):.1f}" y2="{_MT + _PH}" stroke="#f0f0f0"/>'
                     f'<text x="{px(v):.1f}" y="{_MT + _PH + 18}" text-anchor="middle">{v:g}</text>')
    parts.append(f'<line x1="{px(0)}" y1="{py(0)}" x2="{px(1)}" y2="{py(1)}" stroke="#999" stroke-dasharray="4 4"/>'
                 f'<rect x="{_ML}" y="{_MT}" width="{_PW}" height="{_PH}" fill="none" stroke="#333"/>'
                 f'<text x="{_ML + _PW / 2}" y="{_MT + _PH + 36}" text-anchor="middle">false-positive rate '
                 f'(reals called fake)</text><text transform="translate(14 {_MT + _PH / 2}) rotate(-90)" '
                 f'text-anchor="middle">true-positive rate</text>')
    for i, (_name, roc, _auc) in enumerate(curves):
        colour = "#000" if i == 0 else _PALETTE[(i - 1) % len(_PALETTE)]
        stroke = 3 if i == 0 else 1.6
        pts = [(finite(x), finite(y)) for x, y in zip(roc.get("fpr") or [], roc.get("tpr") or [])]
        coords = " ".join(f"{px(min(max(x, 0), 1)):.1f},{py(min(max(y, 0), 1)):.1f}" for x, y in pts
                          if x is not None and y is not None)
        label = labels[i]
        parts.append(f'<g><title>{_e(label)}</title><polyline points="{coords}" fill="none" stroke="{colour}" '
                     f'stroke-width="{stroke}" stroke-linejoin="round"/></g>')
        parts.append(_legend_row(i, label, colour, stroke, 48))
    parts.append("</svg>")
    return "".join(parts)


def _detection(det: dict[str, Any]) -> str:
    """A detector's results: clean, laundered and adversarial side by side, per generator, ROC curves."""
    c, sub = det["clean"], det.get("subset") or {}
    cal = finite(det.get("calibrated_threshold"))
    head = ("<tr><th class='text'>condition</th><th>images</th><th>AUC</th><th>AP</th>"
            f"<th>acc @ {_num(det.get('threshold'))}</th><th>acc @ val-calibrated"
            f"{'' if cal is None else f' ({cal:.3g})'}</th><th>fakes called real</th>"
            "<th>AUC, reals attacked</th></tr>")

    def row(name: str, r: dict[str, Any], n: Any, cls: str = "") -> str:
        return (f'<tr{cls}><td class="text">{_e(name)}</td><td>{_num(n)}</td>'
                f'<td>{_e(num_ci(r.get("auc"), r.get("auc_ci")))}</td>'
                f'<td>{_num(r.get("ap"), ".4f")}</td><td>{_e(pct_ci(r.get("acc"), r.get("acc_ci")))}</td>'
                f'<td>{_e(pct_ci(r.get("acc_calibrated"), r.get("acc_calibrated_ci")))}</td>'
                f'<td>{pct(r.get("fakes_called_real"))}</td>'
                f'<td>{_e(num_ci(r.get("auc_reals_attacked"), r.get("auc_reals_attacked_ci")))}</td></tr>')

    rows = [row("clean (whole test split)", c, det.get("n_test"), ' class="worst"')]
    if sub:
        rows.append(row("clean (attacked subset)", sub, sub.get("n")))
    rows += [row(f"laundered: {k}", v, sub.get("n")) for k, v in det["laundering"].items()]
    steps = det.get("pgd_steps", "?")
    rows += [row(f"evasion: PGD-{steps} at {r.get('label', eps_label(r['eps']))}", r, sub.get("n"))
             for r in det["robust"]]
    parts = ["<h3>Detection: clean, laundered and adversarial</h3>",
             f'<p class="muted">Scores are P(fake). Laundering transforms both classes; the evasion attack is '
             f"targeted L-inf PGD pushing fakes towards “real” (reals clean; the last column pushes reals "
             f"towards “fake” instead), each fake keeping its lowest score over radii up to this one. "
             f"EER {pct(c.get('eer'))}.</p>",
             f"<table>{head}{''.join(rows)}</table>"]
    per_gen = det.get("per_generator") or {}
    if per_gen:
        gen_rows = "".join(f'<tr><td class="text">{_e(g)}</td><td>{_num(r.get("n_fake"))}</td>'
                           f'<td>{_e(num_ci(r.get("auc"), r.get("auc_ci")))}</td>'
                           f'<td>{_num(r.get("ap"), ".4f")}</td></tr>' for g, r in per_gen.items())
        parts += ["<h3>Per generator</h3>", '<p class="muted">Each source\'s fakes against all real test images.</p>',
                  "<table><tr><th class='text'>fake source</th><th>fakes</th><th>AUC</th><th>AP</th></tr>"
                  f"{gen_rows}</table>"]
    roc = det.get("roc") or {}
    robust_auc = {f"pgd@{r.get('label', eps_label(r['eps']))}": r for r in det["robust"]}
    adv = [("clean", roc["clean"], c)] if "clean" in roc else []
    adv += [(k, v, robust_auc.get(k)) for k, v in roc.items() if k.startswith("pgd@")]
    laundered = [("clean", roc["clean"], c)] if "clean" in roc else []
    laundered += [(k, roc[k], v) for k, v in det["laundering"].items() if k in roc]
    if len(adv) > 1 or (adv and len(laundered) <= 1):
        parts += ["<h3>ROC: clean and under the evasion attack</h3>", _roc_plot(adv, "ROC under attack")]
    if len(laundered) > 1:
        parts += ["<h3>ROC: laundered</h3>", _roc_plot(laundered, "ROC after laundering")]
    return "".join(parts)


def _acc(entry: dict[str, Any] | None) -> str:
    entry = entry or {}
    return _e(pct_ci(entry.get("robust_acc"), entry.get("robust_acc_ci")))


def _results_table(tm: dict[str, Any], clean_acc: Any, clean_ci: Any = None) -> str:
    cumulative = tm.get("mode") == "cascade"
    head = "".join(f"<th>{_e(a['label'])}{' (cumulative)' if cumulative else ''}</th>" for a in tm["attacks"])
    rows = []
    for eps in tm["eps"]:
        cells = "".join(f"<td>{_acc(at_eps(a['results'], eps))}</td>" for a in tm["attacks"])
        worst = _acc(at_eps(tm["worst_case"], eps))
        rows.append(f"<tr><td>{_e(eps_label(eps))}</td><td>{_e(pct_ci(clean_acc, clean_ci))}</td>{cells}"
                    f'<td class="worst">{worst}</td></tr>')
    return (f'<table><tr><th>eps</th><th>clean</th>{head}<th>worst case</th></tr>{"".join(rows)}</table>')


def _attack_details(tm: dict[str, Any]) -> str:
    """Every attack result: what it ran on, what it fooled, how large the perturbations were, its time."""
    rows = []
    for a in tm["attacks"]:
        gf = " (gradient-free)" if a.get("gradient_free") else ""
        title = _e(f"{a.get('attack')} {_json(a.get('params', {}))}")
        for r in a["results"]:
            rows.append(f'<tr><td class="text" title="{title}">{_e(a["label"])}{gf}</td>'
                        f"<td>{_e(eps_label(r.get('eps')))}</td><td>{_num(r.get('attacked'))}</td>"
                        f"<td>{_num(r.get('fooled'))}</td><td>{_acc(r)}</td>"
                        f"<td>{pct(r.get('success_rate'))}</td><td>{_num(r.get('norm_mean'), '.4g')}</td>"
                        f"<td>{_num(r.get('norm_max'), '.4g')}</td><td>{seconds(r.get('time_s'))}</td></tr>")
    return ('<details><summary>per-attack details</summary><table><tr><th class="text">attack</th><th>eps</th>'
            "<th>attacked</th><th>fooled</th><th>robust acc</th><th>success rate</th><th>mean norm</th>"
            f"<th>max norm</th><th>time</th></tr>{''.join(rows)}</table></details>")


def _checks_table(checks: list[dict[str, Any]]) -> str:
    if not checks:
        return '<p class="muted">No sanity checks ran.</p>'
    rows = []
    for c in checks:
        ev = c.get("evidence")
        details = f"<details><summary>evidence</summary><pre>{_e(_json(ev))}</pre></details>" if ev else ""
        rows.append(f'<tr><td class="status status-{_e(c["status"])}">{_e(c["status"])}</td>'
                    f'<td class="text">{_e(c["name"])}</td><td class="text">{_e(c["message"])}{details}</td></tr>')
    return ('<table><tr><th>status</th><th class="text">check</th><th class="text">message</th></tr>'
            f"{''.join(rows)}</table>")


def _examples(examples: list[dict[str, Any]]) -> str:
    figures = []
    for ex in examples:
        norm = f"{ex['norm']} " if ex.get("norm") else ""
        caption = f"{ex['attack']}, {norm}eps {eps_label(ex['eps'])}"
        data = "".join(str(ex["png_base64"]).split())
        if not data or not _BASE64.fullmatch(data):
            figures.append(f'<p class="muted">example {_e(caption)}: not base64 image data, skipped</p>')
            continue
        figures.append(f'<figure><img src="data:image/png;base64,{data}" alt="{_e(caption)}">'
                       f"<figcaption>{_e(caption)}</figcaption></figure>")
    return "".join(figures)


def _gates_table(gates: list[dict[str, Any]]) -> str:
    if not gates:
        return '<p class="muted">No gates configured.</p>'
    rows = []
    for g in gates:
        ok = g.get("passed") is True
        rows.append(f'<tr class="{"ok" if ok else "bad"}"><td class="text">{_e(g["name"])}</td>'
                    f'<td class="text">{_e(g["kind"])}</td><td>{_e(gate_value(g.get("value"), g["kind"]))}</td>'
                    f'<td>{_e(gate_value(g.get("threshold"), g["kind"]))}</td>'
                    f'<td class="result{" ok" if ok else ""}">{"pass" if ok else "FAIL"}</td>'
                    f'<td class="text">{_e(g.get("message", ""))}</td></tr>')
    return ('<table><tr><th class="text">gate</th><th class="text">kind</th><th>value</th><th>threshold</th>'
            f'<th>result</th><th class="text">message</th></tr>{"".join(rows)}</table>')


def _model(m: dict[str, Any]) -> str:
    parts = [f"<section><h2>Model {_e(m['name'])}</h2>",
             f'<p>Source <code>{_e(source_label(m["source"]))}</code>; clean accuracy <b>{pct(m["clean_acc"])}</b>'
             f"{_e(pct_ci(m['clean_acc'], m.get('clean_acc_ci'))[len(pct(m['clean_acc'])):])} on "
             f"{_num(m['n'])} samples.</p>"]
    if loaded_label(m.get("loaded")):
        parts.append(f"<p>Loaded: {_e(loaded_label(m.get('loaded')))}</p>")
    if m.get("detection"):
        parts.append(_detection(m["detection"]))
    for tm in m["threat_models"]:
        mode = tm.get("mode")
        note = ("cascade: each attack runs only on the samples earlier attacks did not fool, so attack columns "
                "are cumulative" if mode == "cascade" else "full: each attack runs on its own")
        if any(w.get("robust_acc_ci") for w in tm["worst_case"]):
            note += "; bars and brackets: 95% Wilson intervals"
        ci = m.get("clean_acc_ci")
        parts += [f"<h3>{_e(tm['norm'])}</h3>", f'<p class="muted">{_e(note)}; eps 0 is the clean accuracy.</p>',
                  _plot(tm, m["clean_acc"], ci), _results_table(tm, m["clean_acc"], ci), _attack_details(tm)]
    parts += ["<h3>Sanity checks</h3>", _checks_table(m["checks"])]
    if m["examples"]:
        parts += ["<h3>Adversarial examples</h3>", _examples(m["examples"])]
    parts.append("</section>")
    return "".join(parts)


def to_html(report: Report | dict[str, Any]) -> str:
    """The full report as one HTML document with no external resources.

    Args:
        report: a valid report (typed, or its dict).

    Returns:
        The HTML text.
    """
    report = as_dict(report)
    ok = report["passed"] is True
    verdict = headline(report)
    d, env, t = report["data"], report["environment"], report["timing"]
    shape = "×".join(str(s) for s in d.get("shape") or [])
    body = [f'<h1>advkit robustness report <span class="verdict {"passed" if ok else "failed"}">'
            f"{_e(verdict)}</span></h1>",
            f'<p class="muted">{_e(d.get("dataset", "?"))}/{_e(d.get("split", "?"))}: {_num(d.get("n"))} samples, '
            f'{_num(d.get("num_classes"))} classes, shape {_e(shape or "?")} · advkit {_e(env.get("advkit", "?"))}, '
            f'torch {_e(env.get("torch", "?"))}, Python {_e(env.get("python", "?"))} on {_e(env.get("device", "?"))}'
            f' (world size {_num(env.get("world_size"))}), {_e(env.get("platform", "?"))} · '
            f"{_e(report['created'])}</p>",
            f"<p>Time: {seconds(t.get('total_s'))} in all, {seconds(t.get('attack_s'))} in attacks, "
            f"{seconds(t.get('time_saved_s'))} saved by skipping samples already fooled.</p>",
            f"<h2>Gates ({len(failing_gates(report))} failing)</h2>", _gates_table(report["gates"]),
            *(_model(m) for m in report["models"]),
            f"<h2>Config</h2><details><summary>resolved evaluation config</summary>"
            f"<pre>{_e(json.dumps(report['config'], indent=1, ensure_ascii=False, default=str))}</pre></details>"]
    content = "\n".join(body)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>advkit robustness report: {_e(verdict)}</title><style>{_CSS}</style></head>\n"
            f"<body>\n{content}\n</body></html>\n")
