"""The advkit evaluation report, schema version 1: loading, validation, and small helpers the writers share.

An evaluation run produces one JSON object; ``advkit.report.write_reports`` renders it as ``report.json``,
``report.md``, ``report.html`` and ``junit.xml``. Accuracies and rates are fractions in [0, 1]; times are
seconds; any number may be ``null`` where it does not exist (``NaN`` is never written).

Top level
    ``schema``          always ``"advkit.report"``.
    ``schema_version``  ``1``. A reader refuses any other version instead of guessing.
    ``created``         UTC time of the run, ISO 8601 (``"2026-11-25T10:00:00Z"``).
    ``environment``     ``advkit``, ``torch``, ``python`` versions, ``platform``, ``device``, ``world_size``.
    ``config``          the resolved evaluation config (any JSON), enough to rerun the evaluation.
    ``data``            ``dataset``, ``split``, ``n`` (samples evaluated), ``num_classes``, ``shape`` (C, H, W).
    ``models``          one entry per evaluated model (below); names are unique.
    ``gates``           the pass/fail criteria (below); may be empty.
    ``passed``          ``true`` when every gate passed (``true`` when there are no gates).
    ``timing``          ``total_s`` (whole run), ``attack_s`` (in attacks), ``time_saved_s`` (attack time the
                        cascade did not spend on samples an earlier attack had already fooled).

Model (``models[i]``)
    ``name``, ``source`` (checkpoint path or registry name; a list of them for an ensemble), ``clean_acc``,
    ``n``,
    ``threat_models``   one per norm (below),
    ``checks``          sanity checks: ``name``, ``status`` (``pass`` | ``warn`` | ``fail`` | ``skip``),
                        ``message`` (one line for people), ``evidence`` (any JSON backing the verdict),
    ``examples``        adversarial example grids: ``eps``, ``attack`` (label), optionally ``norm``,
                        ``png_base64`` (a PNG); may be empty.

Threat model (``models[i].threat_models[j]``)
    ``norm``            ``linf`` or ``l2``.
    ``mode``            ``cascade``: each attack runs only on the samples no earlier attack fooled, so an
                        attack's ``robust_acc`` is cumulative (the suite so far); ``full``: each attack runs on
                        every correctly classified sample, so ``robust_acc`` is that attack alone.
    ``eps``             ascending budgets.
    ``attacks``         in suite order: ``attack`` (registry name), ``label`` (unique, used in tables),
                        ``params``, ``gradient_free``, and ``results``, one per eps: ``eps``, ``attacked``
                        (samples the attack ran on), ``fooled``, ``robust_acc``, ``success_rate``,
                        ``norm_mean`` / ``norm_max`` (perturbation size of the successful samples, ``null``
                        when none succeeded), ``time_s``.
    ``worst_case``      one per eps: ``eps``, ``robust_acc`` and ``robust`` (samples no attack fooled),
                        ``time_s``, ``time_saved_s``.

Detector (``models[i].detection``, only for fake-image detectors; ``threat_models`` is then empty)
    The output of ``advkit.detect.evaluate.evaluate_detector``: ``n_test``, ``threshold``,
    ``calibrated_threshold``, ``pgd_steps``, ``clean`` (``auc``, ``ap``, ``eer``, ``acc`` at the threshold,
    ``acc_calibrated``), ``per_generator`` (fake source -> ``n_fake``, ``auc``, ``ap``; when there are
    several), ``subset`` (the first ``n`` test samples attacked and laundered), ``robust`` (per eps:
    ``eps``, ``label``, ``auc``, ``ap``, ``acc``, ``fakes_called_real``, ``auc_reals_attacked``),
    ``laundering`` (transform -> ``auc``, ``ap``, ``acc``), ``roc`` (curve name -> ``fpr``, ``tpr`` lists:
    ``clean``, ``pgd@<eps>``, one per transform), ``time_s``.

Gate (``gates[k]``)
    ``name`` (e.g. ``min_robust_acc[default,linf@0.1]``), ``kind`` (``min_clean_acc`` | ``min_robust_acc`` |
    ``max_drop`` (against a baseline report) | ``check`` (a sanity check that must pass) | ``min_auc`` |
    ``min_robust_auc`` | ``min_laundered_auc`` (detectors)), ``model``,
    ``threshold``, ``value``, ``passed``, ``message``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from advkit.errors import AdvkitError

SCHEMA = "advkit.report"
SCHEMA_VERSION = 1

_TOP_KEYS = ("schema", "schema_version", "created", "environment", "config", "data", "models", "gates",
             "passed", "timing")
_MODEL_KEYS = ("name", "source", "clean_acc", "n", "threat_models", "checks", "examples")
_THREAT_MODEL_KEYS = ("norm", "mode", "eps", "attacks", "worst_case")
_ATTACK_KEYS = ("attack", "label", "results")
_RESULT_KEYS = ("eps", "robust_acc")
_CHECK_KEYS = ("name", "status", "message")
_EXAMPLE_KEYS = ("eps", "attack", "png_base64")
_GATE_KEYS = ("name", "kind", "passed")
_DETECTION_KEYS = ("n_test", "clean", "robust", "laundering", "roc")
AUC_GATES = ("min_auc", "min_robust_auc", "min_laundered_auc")
CHECK_STATUSES = ("pass", "warn", "fail", "skip")


def load_report(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a report; every problem is one ``AdvkitError`` line that names the file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AdvkitError(f"{p}: no such report file") from None
    except IsADirectoryError:
        raise AdvkitError(f"{p}: is a folder, expected a report.json file") from None
    except UnicodeDecodeError:
        raise AdvkitError(f"{p}: not JSON (not UTF-8 text)") from None
    except OSError as e:
        raise AdvkitError(f"{p}: cannot read ({e.strerror or e})") from None
    try:
        report = json.loads(text)
    except json.JSONDecodeError as e:
        raise AdvkitError(f"{p}: not JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    try:
        validate(report)
    except AdvkitError as e:
        raise AdvkitError(f"{p}: {e}") from None
    return report


def validate(report: Any) -> None:
    """Check the header and that every key the writers and the diff read is there (``AdvkitError`` naming
    where the first problem is)."""
    if not isinstance(report, dict) or report.get("schema") != SCHEMA:
        raise AdvkitError(f'not an advkit report (no "schema": "{SCHEMA}")')
    version = report.get("schema_version")
    if version != SCHEMA_VERSION:
        raise AdvkitError(f"schema version {version}, this advkit reads version {SCHEMA_VERSION}")
    _require(report, _TOP_KEYS, "report")
    for key in ("environment", "data", "timing"):
        _require(report[key], (), key)
    models = _list(report["models"], "models")
    for i, m in enumerate(models):
        _require(m, _MODEL_KEYS, f"models[{i}]")
    _unique((m["name"] for m in models), "models", "model name")
    for i, m in enumerate(models):
        where = f"models[{i}] ({m['name']})"
        tms = _list(m["threat_models"], f"{where}.threat_models")
        for j, tm in enumerate(tms):
            tw = f"{where}.threat_models[{j}]"
            _require(tm, _THREAT_MODEL_KEYS, tw)
            _list(tm["eps"], f"{tw}.eps")
            for k, a in enumerate(_list(tm["attacks"], f"{tw}.attacks")):
                _require(a, _ATTACK_KEYS, f"{tw}.attacks[{k}]")
                for r, res in enumerate(_list(a["results"], f"{tw}.attacks[{k}].results")):
                    _require(res, _RESULT_KEYS, f"{tw}.attacks[{k}].results[{r}]")
            _unique((a["label"] for a in tm["attacks"]), tw, "attack label")
            for r, w in enumerate(_list(tm["worst_case"], f"{tw}.worst_case")):
                _require(w, _RESULT_KEYS, f"{tw}.worst_case[{r}]")
        _unique((tm["norm"] for tm in tms), f"{where}.threat_models", "norm")
        for j, c in enumerate(_list(m["checks"], f"{where}.checks")):
            _require(c, _CHECK_KEYS, f"{where}.checks[{j}]")
            if c["status"] not in CHECK_STATUSES:
                raise AdvkitError(f"{where}.checks[{j}]: status {c['status']!r} is not one of "
                                  f"{', '.join(CHECK_STATUSES)}")
        for j, ex in enumerate(_list(m["examples"], f"{where}.examples")):
            _require(ex, _EXAMPLE_KEYS, f"{where}.examples[{j}]")
        if "detection" in m:
            det = _require(m["detection"], _DETECTION_KEYS, f"{where}.detection")
            _require(det["clean"], ("auc", "ap", "acc"), f"{where}.detection.clean")
            for r, row in enumerate(_list(det["robust"], f"{where}.detection.robust")):
                _require(row, ("eps", "auc"), f"{where}.detection.robust[{r}]")
            for k, v in _require(det["laundering"], (), f"{where}.detection.laundering").items():
                _require(v, ("auc",), f"{where}.detection.laundering.{k}")
            for k, v in _require(det["roc"], (), f"{where}.detection.roc").items():
                _require(v, ("fpr", "tpr"), f"{where}.detection.roc.{k}")
    for i, g in enumerate(_list(report["gates"], "gates")):
        _require(g, _GATE_KEYS, f"gates[{i}]")


def _require(obj: Any, keys: Iterable[str], where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise AdvkitError(f"{where}: expected an object, got {type(obj).__name__}")
    for key in keys:
        if key not in obj:
            raise AdvkitError(f"{where}: missing key {key!r}")
    return obj


def _list(obj: Any, where: str) -> list[Any]:
    if not isinstance(obj, list):
        raise AdvkitError(f"{where}: expected a list, got {type(obj).__name__}")
    return obj


def _unique(values: Iterable[Any], where: str, what: str) -> None:
    seen: list[Any] = []  # a list, not a set: a malformed report may hold unhashable values
    for v in values:
        if v in seen:
            raise AdvkitError(f"{where}: two entries share the {what} {v!r}")
        seen.append(v)


# ------------------------------------------------------------------------------ helpers for the writers

def finite(x: Any) -> float | None:
    """``x`` as a float when it is a finite number, else ``None`` (null, NaN, inf, strings, booleans)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def pct(x: Any, missing: str = "—") -> str:
    """A fraction as ``98.7%``; ``missing`` when it is not a finite number."""
    v = finite(x)
    return missing if v is None else f"{v:.1%}"


def seconds(x: Any, missing: str = "—") -> str:
    """A duration for people: ``40.2 s``, ``12 min 5 s``, ``1 h 3 min``."""
    v = finite(x)
    if v is None:
        return missing
    if v < 60:
        return f"{v:.1f} s"
    if v < 3600:
        return f"{int(v // 60)} min {int(v % 60)} s"
    return f"{int(v // 3600)} h {int(v % 3600 // 60)} min"


def same_eps(a: Any, b: Any) -> bool:
    """Two budgets are the same up to float noise (``0.1`` written by two runs may differ in the last bit)."""
    fa, fb = finite(a), finite(b)
    return fa is not None and fb is not None and math.isclose(fa, fb, rel_tol=1e-6, abs_tol=1e-12)


def at_eps(entries: list[dict[str, Any]], eps: Any) -> dict[str, Any] | None:
    """The entry (an attack result or a worst case) for budget ``eps``, or ``None``."""
    return next((e for e in entries if same_eps(e.get("eps"), eps)), None)


def source_label(source: Any) -> str:
    """A model's source: a checkpoint path or registry name, or a list of them for an ensemble."""
    return ", ".join(map(str, source)) if isinstance(source, list) else str(source)


def eps_label(eps: Any) -> str:
    v = finite(eps)
    return "?" if v is None else f"{v:g}"


def failing_gates(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [g for g in report["gates"] if g.get("passed") is not True]


def headline(report: dict[str, Any]) -> str:
    """``PASSED (3 gates)``, ``FAILED (1 of 3 gates failing)``, ``PASSED (no gates)``."""
    n, bad = len(report["gates"]), len(failing_gates(report))
    verdict = "PASSED" if report["passed"] is True else "FAILED"
    if n == 0:
        return f"{verdict} (no gates)"
    if bad == 0:
        return f"{verdict} ({n} gate{'s' * (n != 1)} passed)"
    return f"{verdict} ({bad} of {n} gate{'s' * (n != 1)} failing)"


def gate_value(v: Any, kind: str | None = None) -> str:
    """A gate's value or threshold: accuracies and drops are fractions (``98.7%``), AUCs plain (``0.9913``),
    a check gate may hold a word."""
    if v is None:
        return "—"
    if finite(v) is not None:
        return f"{finite(v):.4f}" if kind in AUC_GATES else pct(v)
    return str(v)
