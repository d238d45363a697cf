"""Evaluation reports: the typed, versioned :class:`Report` (``advkit.report.schema``, where every field is
documented), the one envelope every evaluation builds (:func:`build_report`), the writers (JSON, Markdown,
HTML, JUnit XML) and the comparison of two reports. Writers and the diff take a :class:`Report` or its dict."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from advkit.report.diff import DiffResult, diff_reports, format_diff
from advkit.report.envelope import build_report, environment
from advkit.report.html import to_html
from advkit.report.junit import to_junit
from advkit.report.markdown import to_markdown
from advkit.report.schema import (
    SCHEMA,
    SCHEMA_VERSION,
    AttackAtEps,
    AttackResult,
    Check,
    DataInfo,
    Detection,
    Environment,
    Example,
    Gate,
    ModelEntry,
    Report,
    ThreatModel,
    Timing,
    WorstCase,
    as_dict,
    load_report,
    validate,
)
from advkit.runtime.io import atomic_write_text

__all__ = ["SCHEMA", "SCHEMA_VERSION", "AttackAtEps", "AttackResult", "Check", "DataInfo", "Detection", "DiffResult",
           "Environment", "Example", "Gate", "ModelEntry", "Report", "ThreatModel", "Timing", "WorstCase",
           "build_report", "diff_reports", "environment", "format_diff", "load_report", "to_html", "to_json",
           "to_junit", "to_markdown", "validate", "write_reports"]


def _nan_to_null(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _nan_to_null(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_nan_to_null(v) for v in x]
    return x


def to_json(report: Report | dict[str, Any]) -> str:
    """The report as strict JSON.

    Args:
        report: the report (typed, or its dict).

    Returns:
        JSON text, indented by 2, ending in a newline; NaN and infinities become null.
    """
    return json.dumps(_nan_to_null(as_dict(report)), indent=2, allow_nan=False, ensure_ascii=False) + "\n"


def write_reports(report: Report | dict[str, Any], out_dir: str | os.PathLike) -> list[Path]:
    """Validate ``report`` and write ``report.json``, ``report.md``, ``report.html`` and ``junit.xml``.

    Everything is rendered before anything is written, so a bad report writes nothing; each file is written
    atomically, ``report.json`` last (its presence means the set is complete).

    Args:
        report: the report (typed, or its dict).
        out_dir: the folder to write into (created if needed).

    Returns:
        The paths written, ``report.json`` last.

    Raises:
        AdvkitError: the report is not valid (the message names where the first problem is).
    """
    report = as_dict(report)
    validate(report)
    files = {"report.md": to_markdown(report), "report.html": to_html(report), "junit.xml": to_junit(report),
             "report.json": to_json(report)}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        atomic_write_text(out / name, text)
    return [out / name for name in files]
