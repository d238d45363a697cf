"""The advkit evaluation report, schema version 1, as typed dataclasses; loading; helpers the writers share.

An evaluation run produces one :class:`Report`; ``advkit.report.write_reports`` renders it as ``report.json``,
``report.md``, ``report.html`` and ``junit.xml``. Accuracies and rates are fractions in [0, 1]; times are
seconds; any number may be ``null`` where it does not exist (``NaN`` is never written).

Version 1 grows only by optional keys, left out when absent, so every version-1 report still loads and a
reader ignores keys it does not know (they travel in ``extra``). Added since the first version-1 reports:
``clean_acc_ci``, ``robust_acc_ci`` (95% Wilson intervals, ``[lo, hi]``, of the accuracy beside them),
``data.fingerprint`` (a hash of the evaluated samples), compact ``per_sample.fooled_by`` strings
(:mod:`advkit.report.paired`), ``auc_ci`` / ``acc_ci`` in detection results (DeLong / Wilson) and a gate's
``p_value`` (McNemar, for a ``max_drop`` that requires significance). A change that old readers would
misread gets a new ``schema_version`` instead.

``Report.from_dict`` checks a report dict (every key the writers and the diff read; one ``AdvkitError`` line
naming where the first problem is) and ``Report.to_dict`` gives the same dict back, key order included. Keys
this version does not model travel in each part's ``extra``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from advkit.errors import AdvkitError
from advkit.report.stats import fmt_interval

SCHEMA = "advkit.report"
SCHEMA_VERSION = 1
AUC_GATES = ("min_auc", "min_robust_auc", "min_laundered_auc")
CHECK_STATUSES = ("pass", "warn", "fail", "skip")

_P = TypeVar("_P", bound="_Part")  # typing.Self is Python 3.11+; advkit runs on 3.10
# field metadata of an optional key that is left out, rather than written as null, when it has no value
_OMIT = {"omit_none": True}


@dataclass(kw_only=True)
class _Part:
    """A part of the report. Modelled keys are fields, the others stay in ``extra``; ``key_order`` is the
    key order of the dict it was read from, so that :meth:`to_dict` writes the same JSON back."""

    REQUIRED: ClassVar[tuple[str, ...]] = ()  # the keys from_dict insists on
    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    key_order: tuple[str, ...] = field(default=(), repr=False, compare=False)

    @classmethod
    def _read(cls: type[_P], d: Any, where: str, **parsed: Any) -> _P:
        """``cls`` from the dict ``d`` (its required keys checked), ``parsed`` replacing raw values."""
        _require(d, cls.REQUIRED, where)
        names = {f.name for f in fields(cls)} - {"extra", "key_order"}
        known = {k: v for k, v in d.items() if k in names} | parsed
        return cls(**known, extra={k: v for k, v in d.items() if k not in names}, key_order=tuple(d))

    def to_dict(self) -> dict[str, Any]:
        """The plain, JSON-ready dict: the keys it was read with (in their order), then fields set since, then
        ``extra``. A part built in code writes its fields in declaration order, leaving out unset optional
        keys (the ones the schema marks as sometimes absent)."""
        values = {f.name: (getattr(self, f.name), f.metadata.get("omit_none", False)) for f in fields(self)
                  if f.name not in ("extra", "key_order")}
        out: dict[str, Any] = {}
        for k in (*self.key_order, *values, *self.extra):
            if k in out:
                continue
            if k in values:
                v, omit = values[k]
                if v is None and k not in self.key_order and (self.key_order or omit):
                    continue  # absent when read, or an optional key never set
                out[k] = _plain(v)
            elif k in self.extra:
                out[k] = self.extra[k]
        return out


def _plain(v: Any) -> Any:
    if isinstance(v, _Part):
        return v.to_dict()
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


# ------------------------------------------------------------------------------ the parts, innermost first

@dataclass(kw_only=True)
class AttackAtEps(_Part):
    """One attack at one budget (``models[i].threat_models[j].attacks[k].results[r]``)."""

    REQUIRED: ClassVar[tuple[str, ...]] = ("eps", "robust_acc")
    eps: float
    attacked: int | None = None         # samples the attack ran on
    fooled: int | None = None
    robust_acc: float | None            # cascade: cumulative (the suite so far); full: this attack alone
    robust_acc_ci: list[float] | None = field(default=None, metadata=_OMIT)  # 95% Wilson interval [lo, hi]
    success_rate: float | None = None   # fooled / attacked
    norm_mean: float | None = None      # perturbation size of the successful samples (null: none succeeded)
    norm_max: float | None = None
    time_s: float | None = None

    @classmethod
    def from_dict(cls, d: Any, where: str = "result") -> AttackAtEps:
        return cls._read(d, where)


@dataclass(kw_only=True)
class AttackResult(_Part):
    """One attack of a threat model's suite (``threat_models[j].attacks[k]``), in suite order."""

    REQUIRED: ClassVar[tuple[str, ...]] = ("attack", "label", "results")
    attack: str                         # registry name
    label: str                          # unique within the threat model, used in tables
    params: dict[str, Any] = field(default_factory=dict)
    targeted: bool | None = field(default=None, metadata=_OMIT)
    gradient_free: bool | None = None
    results: list[AttackAtEps]          # one per eps, ascending

    @classmethod
    def from_dict(cls, d: Any, where: str = "attack") -> AttackResult:
        _require(d, cls.REQUIRED, where)
        results = [AttackAtEps.from_dict(r, f"{where}.results[{i}]")
                   for i, r in enumerate(_list(d["results"], f"{where}.results"))]
        return cls._read(d, where, results=results)


@dataclass(kw_only=True)
class WorstCase(_Part):
    """The suite's per-sample worst case at one budget (``threat_models[j].worst_case[r]``)."""

    REQUIRED: ClassVar[tuple[str, ...]] = ("eps", "robust_acc")
    eps: float
    robust_acc: float | None
    robust_acc_ci: list[float] | None = field(default=None, metadata=_OMIT)  # 95% Wilson interval [lo, hi]
    robust: int | None = None           # samples no attack fooled
    time_s: float | None = None
    time_saved_s: float | None = None   # attack time the cascade did not spend on samples already fooled
    gradient_free_only: int | None = field(default=None, metadata=_OMIT)  # fooled only by gradient-free attacks

    @classmethod
    def from_dict(cls, d: Any, where: str = "worst_case") -> WorstCase:
        return cls._read(d, where)


@dataclass(kw_only=True)
class ThreatModel(_Part):
    """One norm's results (``models[i].threat_models[j]``)."""

    REQUIRED: ClassVar[tuple[str, ...]] = ("norm", "mode", "eps", "attacks", "worst_case")
    norm: str                           # linf or l2
    # cascade: each attack runs only on the samples no earlier attack fooled, so an attack's robust_acc is
    # cumulative; full: each attack runs on every correctly classified sample, so robust_acc is that attack's
    mode: str
    eps: list[float]                    # ascending budgets
    attacks: list[AttackResult]
    worst_case: list[WorstCase]         # one per eps
    # fooled_by: per eps, per sample, the first attack that fooled it (report.paired: codes, compact strings)
    per_sample: dict[str, Any] | None = field(default=None, metadata=_OMIT)
    n: int | None = field(default=None, metadata=_OMIT)

    @classmethod
    def from_dict(cls, d: Any, where: str = "threat_model") -> ThreatModel:
        _require(d, cls.REQUIRED, where)
        _list(d["eps"], f"{where}.eps")
        attacks = [AttackResult.from_dict(a, f"{where}.attacks[{k}]")
                   for k, a in enumerate(_list(d["attacks"], f"{where}.attacks"))]
        _unique((a.label for a in attacks), where, "attack label")
        worst = [WorstCase.from_dict(w, f"{where}.worst_case[{r}]")
                 for r, w in enumerate(_list(d["worst_case"], f"{where}.worst_case"))]
        return cls._read(d, where, attacks=attacks, worst_case=worst)


@dataclass(kw_only=True)
class Check(_Part):
    """A sanity check of one model (``models[i].checks[k]``)."""

    REQUIRED: ClassVar[tuple[str, ...]] = ("name", "status", "message")
    name: str
    status: str                         # pass, warn, fail or skip
    message: str                        # one line for people
    evidence: Any = field(default_factory=dict)  # any JSON backing the verdict

    @classmethod
    def from_dict(cls, d: Any, where: str = "check") -> Check:
        check = cls._read(d, where)
        if check.status not in CHECK_STATUSES:
            raise AdvkitError(f"{where}: status {check.status!r} is not one of {', '.join(CHECK_STATUSES)}")
        return check


@dataclass(kw_only=True)
class Example(_Part):
    """An adversarial example grid (``models[i].examples[k]``)."""

    REQUIRED: ClassVar[tuple[str, ...]] = ("eps", "attack", "png_base64")
    eps: float
    norm: str | None = field(default=None, metadata=_OMIT)
    attack: str                         # an attack's label, or "worst case"
    png_base64: str                     # a PNG image

    @classmethod
    def from_dict(cls, d: Any, where: str = "example") -> Example:
        return cls._read(d, where)


@dataclass(kw_only=True)
class Detection(_Part):
    """A fake-image detector's results (``models[i].detection``; its ``threat_models`` are then empty): the
    output of ``advkit.detect.evaluate.evaluate_detector``."""

    REQUIRED: ClassVar[tuple[str, ...]] = ("n_test", "clean", "robust", "laundering", "roc")
    n_test: int
    threshold: float | None = None      # P(fake) at which a sample is called fake
    calibrated_threshold: float | None = None  # the equal-error threshold on the val split
    pgd_steps: int | None = None
    clean: dict[str, Any]               # auc, ap, eer, acc (at the threshold), acc_calibrated; auc_ci, acc_ci
    roc: dict[str, dict[str, Any]]      # curve name (clean, pgd@<eps>, a transform) -> fpr, tpr lists
    per_generator: dict[str, dict[str, Any]] | None = field(default=None, metadata=_OMIT)  # fake source ->
    #                                   n_fake, auc, ap (when there are several)
    subset: dict[str, Any] | None = field(default=None, metadata=_OMIT)  # the first n test samples, attacked
    #                                   and laundered
    robust: list[dict[str, Any]]        # per eps: eps, label, auc, ap, acc, fakes_called_real, auc_reals_attacked
    laundering: dict[str, dict[str, Any]]  # transform -> auc, ap, acc
    time_s: dict[str, float] | None = field(default=None, metadata=_OMIT)  # clean, robust, laundering

    @classmethod
    def from_dict(cls, d: Any, where: str = "detection") -> Detection:
        _require(d, cls.REQUIRED, where)
        _require(d["clean"], ("auc", "ap", "acc"), f"{where}.clean")
        for r, row in enumerate(_list(d["robust"], f"{where}.robust")):
            _require(row, ("eps", "auc"), f"{where}.robust[{r}]")
        for k, v in _require(d["laundering"], (), f"{where}.laundering").items():
            _require(v, ("auc",), f"{where}.laundering.{k}")
        for k, v in _require(d["roc"], (), f"{where}.roc").items():
            _require(v, ("fpr", "tpr"), f"{where}.roc.{k}")
        return cls._read(d, where)


@dataclass(kw_only=True)
class Loaded(_Part):
    """What a model entry loaded (``models[i].loaded``, optional): written by the model resolver."""

    form: str                           # checkpoint, name, timm, torchvision, py, torchscript
    spec: str | None = None             # the model spec as given
    weights: str | None = None          # the weights file (or checkpoint, or TorchScript archive) read
    sha256: str | None = None           # that file's SHA-256
    mean: list[float] | None = None     # the normalization inside the model, [0,1] pixel units
    std: list[float] | None = None
    input_size: int | None = None       # the side the network takes; other sizes are resized to it
    interpolation: str | None = None    # how inputs of another size are resized (None: they are not)

    @classmethod
    def from_dict(cls, d: Any, where: str = "loaded") -> Loaded:
        _require(d, ("form",), where)
        return cls._read(d, where)


@dataclass(kw_only=True)
class ModelEntry(_Part):
    """One evaluated model (``models[i]``); names are unique within a report."""

    REQUIRED: ClassVar[tuple[str, ...]] = ("name", "source", "clean_acc", "n", "threat_models", "checks",
                                           "examples")
    name: str
    source: str | list[str]             # checkpoint path or registry name; a list of them for an ensemble
    clean_acc: float | None
    clean_acc_ci: list[float] | None = field(default=None, metadata=_OMIT)  # 95% Wilson interval [lo, hi]
    n: int                              # samples evaluated
    threat_models: list[ThreatModel]    # one per norm
    checks: list[Check]
    examples: list[Example]             # may be empty
    detection: Detection | None = field(default=None, metadata=_OMIT)  # only for fake-image detectors
    loaded: Loaded | None = field(default=None, metadata=_OMIT)  # what the resolver loaded (form, sha256, ...)

    @classmethod
    def from_dict(cls, d: Any, where: str = "model") -> ModelEntry:
        _require(d, cls.REQUIRED, where)
        where = f"{where} ({d['name']})"
        tms = [ThreatModel.from_dict(tm, f"{where}.threat_models[{j}]")
               for j, tm in enumerate(_list(d["threat_models"], f"{where}.threat_models"))]
        _unique((tm.norm for tm in tms), f"{where}.threat_models", "norm")
        checks = [Check.from_dict(c, f"{where}.checks[{j}]")
                  for j, c in enumerate(_list(d["checks"], f"{where}.checks"))]
        examples = [Example.from_dict(e, f"{where}.examples[{j}]")
                    for j, e in enumerate(_list(d["examples"], f"{where}.examples"))]
        parsed: dict[str, Any] = {"threat_models": tms, "checks": checks, "examples": examples}
        if "detection" in d:
            parsed["detection"] = Detection.from_dict(d["detection"], f"{where}.detection")
        if d.get("loaded") is not None:
            parsed["loaded"] = Loaded.from_dict(d["loaded"], f"{where}.loaded")
        return cls._read(d, where, **parsed)


@dataclass(kw_only=True)
class Gate(_Part):
    """A pass/fail criterion (``gates[k]``): one JUnit test case, one row in every report."""

    REQUIRED: ClassVar[tuple[str, ...]] = ("name", "kind", "passed")
    name: str                           # e.g. min_robust_acc[default,linf@0.1]
    # min_clean_acc, min_robust_acc, max_robust_acc (the attack-strength canary), max_drop (against a
    # baseline report), check (a sanity check that must pass), or for detectors min_auc, min_robust_auc,
    # min_laundered_auc
    kind: str
    model: str | None = None
    threshold: float | None = None
    value: float | str | None = None    # what was measured (null: it could not be)
    passed: bool
    message: str | None = None
    p_value: float | None = field(default=None, metadata=_OMIT)  # McNemar's exact test (max_drop, paired)

    @classmethod
    def from_dict(cls, d: Any, where: str = "gate") -> Gate:
        return cls._read(d, where)


@dataclass(kw_only=True)
class Environment(_Part):
    """Where the run ran."""

    advkit: str | None = None           # versions
    torch: str | None = None
    python: str | None = None
    platform: str | None = None
    device: str | None = None           # e.g. "cuda:0 (NVIDIA H200)"
    world_size: int | None = None       # torchrun processes

    @classmethod
    def from_dict(cls, d: Any, where: str = "environment") -> Environment:
        return cls._read(d, where)


@dataclass(kw_only=True)
class DataInfo(_Part):
    """The evaluated data."""

    dataset: str | None = None
    split: str | None = None
    n: int | None = None                # samples evaluated
    num_classes: int | None = None
    shape: list[int] | None = None      # C, H, W
    fingerprint: str | None = field(default=None, metadata=_OMIT)  # hash of the samples (report.paired)
    # streamed data (imagefolder:, csv:) only: class names (index = label), the resize-and-crop, files left out
    classes: list[str] | None = field(default=None, metadata=_OMIT)
    transform: dict[str, Any] | None = field(default=None, metadata=_OMIT)
    skipped: list[str] | None = field(default=None, metadata=_OMIT)

    @classmethod
    def from_dict(cls, d: Any, where: str = "data") -> DataInfo:
        return cls._read(d, where)


@dataclass(kw_only=True)
class Timing(_Part):
    """Seconds."""

    total_s: float | None = None        # the whole run
    attack_s: float | None = None       # in attacks
    time_saved_s: float | None = None   # attack time the cascade did not spend on samples already fooled

    @classmethod
    def from_dict(cls, d: Any, where: str = "timing") -> Timing:
        return cls._read(d, where)


@dataclass(kw_only=True)
class Report(_Part):
    """An evaluation report. A reader refuses any ``schema_version`` but its own instead of guessing."""

    REQUIRED: ClassVar[tuple[str, ...]] = ("schema", "schema_version", "created", "environment", "config",
                                           "data", "models", "gates", "passed", "timing")
    schema: str = SCHEMA
    schema_version: int = SCHEMA_VERSION
    created: str                        # UTC time of the run, ISO 8601 ("2026-11-25T10:00:00Z")
    environment: Environment
    config: Any                         # the resolved evaluation config (any JSON), enough to rerun it
    data: DataInfo
    models: list[ModelEntry]
    gates: list[Gate]                   # may be empty
    passed: bool                        # every gate passed (true when there are none)
    timing: Timing

    @classmethod
    def from_dict(cls, d: Any, where: str = "report") -> Report:
        """Check ``d`` and type it; ``AdvkitError`` naming where the first problem is."""
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            raise AdvkitError(f'not an advkit report (no "schema": "{SCHEMA}")')
        version = d.get("schema_version")
        if version != SCHEMA_VERSION:
            raise AdvkitError(f"schema version {version}, this advkit reads version {SCHEMA_VERSION}")
        _require(d, cls.REQUIRED, where)
        env, data, timing = (part.from_dict(d[key]) for part, key in
                             ((Environment, "environment"), (DataInfo, "data"), (Timing, "timing")))
        raw = _list(d["models"], "models")
        for i, m in enumerate(raw):  # every entry's keys first, then names, then each entry in depth
            _require(m, ModelEntry.REQUIRED, f"models[{i}]")
        _unique((m["name"] for m in raw), "models", "model name")
        models = [ModelEntry.from_dict(m, f"models[{i}]") for i, m in enumerate(raw)]
        gates = [Gate.from_dict(g, f"gates[{i}]") for i, g in enumerate(_list(d["gates"], "gates"))]
        return cls._read(d, where, environment=env, data=data, timing=timing, models=models, gates=gates)


def load_report(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a report file.

    Args:
        path: a ``report.json``.

    Returns:
        The report's dict.

    Raises:
        AdvkitError: the file is missing, unreadable, not JSON or not a valid report (one line that names the
            file).
    """
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
    """Check a report dict against the schema (:meth:`Report.from_dict`).

    Args:
        report: the dict to check.

    Raises:
        AdvkitError: the report is not valid; the message names where the first problem is.
    """
    Report.from_dict(report)


def as_dict(report: Report | dict[str, Any]) -> dict[str, Any]:
    """A report as the plain dict the writers read.

    Args:
        report: a typed report, or its dict.

    Returns:
        ``report.to_dict()``, or the dict itself (not copied).
    """
    return report.to_dict() if isinstance(report, Report) else report


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
    """A report value as a number, when it is one.

    Args:
        x: any JSON value.

    Returns:
        ``x`` as a float when it is a finite number, else ``None`` (null, NaN, inf, strings, booleans).
    """
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def pct(x: Any, missing: str = "—") -> str:
    """A fraction as a percentage.

    Args:
        x: the fraction.
        missing: the text when ``x`` is not a finite number.

    Returns:
        ``98.7%``, or ``missing``.
    """
    v = finite(x)
    return missing if v is None else f"{v:.1%}"


def pct_ci(x: Any, ci: Any, missing: str = "—") -> str:
    """A fraction and its interval as percentages.

    Args:
        x: the fraction.
        ci: its interval ``[lo, hi]``, or None.
        missing: the text when ``x`` is not a finite number.

    Returns:
        ``89.9% [88.7, 91.0]``; just ``89.9%`` when there is no interval.
    """
    text = pct(x, missing)
    bounds = fmt_interval(ci)
    return f"{text} {bounds}" if bounds and finite(x) is not None else text


def num_ci(x: Any, ci: Any, fmt: str = ".4f", missing: str = "—") -> str:
    """A number (an AUC) and its interval.

    Args:
        x: the number.
        ci: its interval ``[lo, hi]``, or None.
        fmt: the number's format (``.4f``); the interval gets as many decimals.
        missing: the text when ``x`` is not a finite number.

    Returns:
        ``0.9913 [0.9871, 0.9955]``; the number alone without an interval.
    """
    v = finite(x)
    if v is None:
        return missing
    digits = int(fmt[1:-1]) if fmt.startswith(".") and fmt[1:-1].isdigit() else 4
    bounds = fmt_interval(ci, scale=1.0, digits=digits)
    return f"{v:{fmt}} {bounds}" if bounds else format(v, fmt)


def seconds(x: Any, missing: str = "—") -> str:
    """A duration for people.

    Args:
        x: seconds.
        missing: the text when ``x`` is not a finite number.

    Returns:
        ``40.2 s``, ``12 min 5 s`` or ``1 h 3 min``.
    """
    v = finite(x)
    if v is None:
        return missing
    if v < 60:
        return f"{v:.1f} s"
    if v < 3600:
        return f"{int(v // 60)} min {int(v % 60)} s"
    return f"{int(v // 3600)} h {int(v % 3600 // 60)} min"


def same_eps(a: Any, b: Any) -> bool:
    """Whether two budgets are the same up to float noise (``0.1`` written by two runs may differ in the last bit).

    Args:
        a: one eps.
        b: the other.

    Returns:
        True when both are finite numbers and close.
    """
    fa, fb = finite(a), finite(b)
    return fa is not None and fb is not None and math.isclose(fa, fb, rel_tol=1e-6, abs_tol=1e-12)


def at_eps(entries: list[dict[str, Any]], eps: Any) -> dict[str, Any] | None:
    """The entry for one budget.

    Args:
        entries: attack results or worst-case rows, each with an ``eps``.
        eps: the budget.

    Returns:
        The first entry at ``eps`` (see :func:`same_eps`), or ``None``.
    """
    return next((e for e in entries if same_eps(e.get("eps"), eps)), None)


def source_label(source: Any) -> str:
    """A model's source as text.

    Args:
        source: a checkpoint path or registry name, or a list of them for an ensemble.

    Returns:
        The source, a list joined with commas.
    """
    return ", ".join(map(str, source)) if isinstance(source, list) else str(source)


def eps_label(eps: Any) -> str:
    """An eps as a short label.

    Args:
        eps: the budget.

    Returns:
        ``0.1``, ``0.0313725`` (``:g`` format), or ``?`` when it is not a finite number.
    """
    v = finite(eps)
    return "?" if v is None else f"{v:g}"


def failing_gates(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The gates that did not pass.

    Args:
        report: a report's dict.

    Returns:
        The gate dicts whose ``passed`` is not True, in report order.
    """
    return [g for g in report["gates"] if g.get("passed") is not True]


def headline(report: dict[str, Any]) -> str:
    """The report's verdict in a few words.

    Args:
        report: a report's dict.

    Returns:
        ``PASSED (3 gates passed)``, ``FAILED (1 of 3 gates failing)`` or ``PASSED (no gates)``.
    """
    n, bad = len(report["gates"]), len(failing_gates(report))
    verdict = "PASSED" if report["passed"] is True else "FAILED"
    if n == 0:
        return f"{verdict} (no gates)"
    if bad == 0:
        return f"{verdict} ({n} gate{'s' * (n != 1)} passed)"
    return f"{verdict} ({bad} of {n} gate{'s' * (n != 1)} failing)"


def gate_value(v: Any, kind: str | None = None) -> str:
    """A gate's value or threshold as text.

    Args:
        v: the value: a fraction, an AUC, a word (check gates) or None.
        kind: the gate's kind; AUC gates show plain numbers.

    Returns:
        ``98.7%`` for accuracies and drops, ``0.9913`` for AUCs, a word as it is, ``—`` for None.
    """
    if v is None:
        return "—"
    if finite(v) is not None:
        return f"{finite(v):.4f}" if kind in AUC_GATES else pct(v)
    return str(v)


def loaded_label(loaded: Any) -> str:
    """What a model entry loaded, as a short text (empty when the entry does not say).

    Args:
        loaded: a model entry's ``loaded`` dict (see :class:`Loaded`), or None.

    Returns:
        E.g. ``timm, weights w.pt (sha256 0123456789ab), mean [0.485, ...], std [...], 224 px``.
    """
    if not isinstance(loaded, dict) or not loaded.get("form"):
        return ""
    parts = [str(loaded["form"])]
    if loaded.get("weights"):
        sha = f" (sha256 {str(loaded['sha256'])[:12]})" if loaded.get("sha256") else ""
        parts.append(f"file {loaded['weights']}{sha}")
    if loaded.get("mean") is not None:
        parts.append("mean [" + ", ".join(f"{v:.4g}" for v in loaded["mean"]) + "], std ["
                     + ", ".join(f"{v:.4g}" for v in loaded.get("std") or []) + "]")
    if loaded.get("input_size"):
        parts.append(f"{loaded['input_size']} px")
    return ", ".join(parts)
