"""Per-sample outcomes in a report, and the paired comparison of two runs on them.

A threat model's ``per_sample.fooled_by`` holds, per eps, one code per evaluated sample: the index of the first
attack of the suite that fooled it, ``-1`` when no attack did (robust) and ``-2`` when the model misclassified
it clean. ``report.json`` stores each eps as one string, a character per sample (``encode_fooled_by``):

    ``.`` robust · ``-`` misclassified clean · ``0``-``9``, ``a``-``z``, ``A``-``Z`` the first attack that fooled it

(10,000 samples x 3 eps is 30 kB instead of 30,000 JSON lines). Lists of integers, as older reports and the
suite itself write them, are read too.

Two reports of the same samples pair up sample by sample, so a change in robust accuracy can be tested with
McNemar's exact test on the samples whose outcome changed (:func:`paired_tests`); :func:`pairing_problem` says
why two reports cannot be paired (other data, another eps grid, another attack suite).
"""

from __future__ import annotations

import hashlib
from typing import Any

from advkit.errors import AdvkitError
from advkit.report.schema import eps_label, same_eps
from advkit.report.stats import ALPHA, mcnemar_exact

CLEAN_WRONG, ROBUST = -2, -1
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_CODE = {CLEAN_WRONG: "-", ROBUST: "."} | dict(enumerate(_ALPHABET))
_VALUE = {ch: v for v, ch in _CODE.items()}


def encode_fooled_by(rows: list[list[int]]) -> list[str] | list[list[int]]:
    """``fooled_by`` rows in the compact form ``report.json`` stores.

    Args:
        rows: one list of outcome codes per eps.

    Returns:
        One string per eps, a character per sample; the rows as lists of ints when a code has no character
        (a suite of more than 62 attacks).
    """
    try:
        return ["".join(_CODE[int(v)] for v in row) for row in rows]
    except KeyError:
        return [[int(v) for v in row] for row in rows]


def decode_fooled_by(rows: Any, where: str = "per_sample.fooled_by") -> list[list[int]]:
    """``fooled_by`` rows back to integer codes.

    Args:
        rows: the stored rows: one string or one list of ints per eps.
        where: how error messages name the rows.

    Returns:
        One list of integer codes per eps.

    Raises:
        AdvkitError: ``rows`` is not a list, or a row is neither a string of known codes nor a list of ints.
    """
    if not isinstance(rows, list):
        raise AdvkitError(f"{where}: expected a list (one entry per eps), got {type(rows).__name__}")
    out = []
    for i, row in enumerate(rows):
        if isinstance(row, str):
            bad = next((ch for ch in row if ch not in _VALUE), None)
            if bad is not None:
                raise AdvkitError(f"{where}[{i}]: unknown outcome code {bad!r}")
            out.append([_VALUE[ch] for ch in row])
        elif isinstance(row, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in row):
            out.append(list(row))
        else:
            raise AdvkitError(f"{where}[{i}]: expected a string or a list of integers")
    return out


def fingerprint(images: Any, labels: Any) -> str:
    """A short hash of the evaluated samples, so that two reports can tell whether they saw the same samples.

    Args:
        images: the images, in order: a tensor or an array (anything with ``.numpy()`` or the buffer protocol).
        labels: their labels, likewise.

    Returns:
        ``sha256:`` and 16 hex digits over both shapes and contents.
    """
    h = hashlib.sha256()
    for t in (images, labels):
        a = t.contiguous().cpu().numpy() if hasattr(t, "contiguous") else t
        h.update(str(tuple(a.shape)).encode())
        h.update(memoryview(a.tobytes() if hasattr(a, "tobytes") else bytes(a)))
    return "sha256:" + h.hexdigest()[:16]


# ------------------------------------------------------------------------------------------ outcomes

def fooled_by(tm: dict[str, Any]) -> list[list[int]] | None:
    """A threat model's per-sample outcome codes.

    Args:
        tm: a threat-model entry of a report.

    Returns:
        One list of codes per eps, or ``None`` when the entry has no per-sample outcomes.

    Raises:
        AdvkitError: the stored outcomes cannot be read, or their row count is not the eps count.
    """
    ps = tm.get("per_sample")
    if not isinstance(ps, dict) or "fooled_by" not in ps:
        return None
    rows = decode_fooled_by(ps["fooled_by"], f"threat model {tm.get('norm')}: per_sample.fooled_by")
    if len(rows) != len(tm.get("eps", [])):
        raise AdvkitError(f"threat model {tm.get('norm')}: per_sample.fooled_by has {len(rows)} rows for "
                          f"{len(tm.get('eps', []))} eps")
    return rows


def robust_after(rows: list[list[int]], ei: int, attack: int | None = None) -> list[bool]:
    """Which samples are still robust at one eps.

    Args:
        rows: per-sample codes, one list per eps (:func:`fooled_by`).
        ei: the eps index.
        attack: None: after the whole suite; an attack index (cascade mode): after the suite's attacks up to
            and including it (the report's cumulative numbers: a sample fooled at a smaller eps is fooled
            before any attack runs).

    Returns:
        One bool per sample: robust.
    """
    codes = rows[ei]
    if attack is None:
        return [c == ROBUST for c in codes]
    prev = rows[ei - 1] if ei else [ROBUST] * len(codes)
    return [c == ROBUST or (c > attack and p < 0) for c, p in zip(codes, prev)]


def clean_correct(m: dict[str, Any]) -> list[bool] | None:
    """Which samples the model classified correctly without an attack.

    Args:
        m: a model entry of a report.

    Returns:
        One bool per sample (from the first threat model with per-sample outcomes), or ``None`` without any.
    """
    for tm in m.get("threat_models", []):
        rows = fooled_by(tm)
        if rows:
            return [c != CLEAN_WRONG for c in rows[0]]
    return None


def paired_test(old: list[bool], new: list[bool]) -> dict[str, Any]:
    """McNemar's exact test on two runs' outcomes on the same samples.

    Args:
        old: per sample, right in the first run.
        new: per sample, right in the second run.

    Returns:
        ``lost`` (right before, wrong now), ``gained``, ``p_value``, ``significant`` (p < 0.05).

    Raises:
        AdvkitError: the two lists differ in length.
    """
    if len(old) != len(new):
        raise AdvkitError(f"cannot pair {len(old)} outcomes with {len(new)}")
    lost = sum(o and not n for o, n in zip(old, new))
    gained = sum(n and not o for o, n in zip(old, new))
    p = mcnemar_exact(lost, gained)
    return {"lost": lost, "gained": gained, "p_value": p, "significant": p < ALPHA}


# ------------------------------------------------------------------------------------------ pairing

def _suite(tm: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(a.get("attack"), _canon(a.get("params", {})), bool(a.get("targeted"))) for a in tm["attacks"]]


def _canon(x: Any) -> Any:
    """Parameters compared as values (1 and 1.0, key order, tuples and lists alike)."""
    if isinstance(x, dict):
        return tuple(sorted((str(k), _canon(v)) for k, v in x.items()))
    if isinstance(x, (list, tuple)):
        return tuple(_canon(v) for v in x)
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return float(x)
    return x


def _suite_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    """The first difference of two suites: their attack lists, or one attack's name, parameters or targeting."""
    def labels(tm: dict[str, Any]) -> str:
        return ", ".join(str(a.get("label", a.get("attack"))) for a in tm["attacks"]) or "none"

    def spec(a: dict[str, Any]) -> str:
        params = ", ".join(f"{k}: {v}" for k, v in sorted(a.get("params", {}).items()))
        return f"{a.get('attack')} {{{params}}}" + (" targeted" if a.get("targeted") else "")

    pairs = list(zip(old["attacks"], new["attacks"]))
    if len(old["attacks"]) != len(new["attacks"]) or any(a.get("attack") != b.get("attack") for a, b in pairs):
        return f"{labels(old)} vs {labels(new)}"
    k, (a, b) = next((k, p) for k, p in enumerate(pairs) if _suite({"attacks": [p[0]]}) != _suite({"attacks": [p[1]]}))
    return f"attack {k + 1} ({a.get('label', a.get('attack'))}) is {spec(a)} vs {spec(b)}"


def _eps_list(eps: list[Any]) -> str:
    return "[" + ", ".join(f"{e:g}" if isinstance(e, (int, float)) else str(e) for e in eps) + "]"


def _same_grid(a: list[Any], b: list[Any]) -> bool:
    return len(a) == len(b) and all(same_eps(x, y) for x, y in zip(a, b))


def data_problem(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """What differs between two reports' evaluated data.

    Args:
        old: the first report's dict.
        new: the second report's dict.

    Returns:
        The first difference (dataset, split, number of samples, the samples themselves when both carry a
        fingerprint) as one line, or ``None``.
    """
    a, b = old.get("data") or {}, new.get("data") or {}
    for key in ("dataset", "split", "n", "fingerprint"):
        if a.get(key) is not None and b.get(key) is not None and a[key] != b[key]:
            what = "sample set" if key == "fingerprint" else f"data.{key}"
            return f"different data: {what} {a[key]!r} vs {b[key]!r}"
    return None


def has_per_sample(report: dict[str, Any]) -> bool:
    """Whether a report can be paired sample by sample.

    Args:
        report: a report's dict.

    Returns:
        True when there is at least one threat model and every threat model of every model carries
        per-sample outcomes.
    """
    tms = [tm for m in report.get("models", []) for tm in m.get("threat_models", [])]
    return bool(tms) and all(isinstance(tm.get("per_sample"), dict) for tm in tms)


def pairing_problem(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """Why two reports cannot be compared sample by sample, naming what differs, or ``None``.

    Checked in this order: the data (:func:`data_problem`); then, for every model both reports hold, the
    threat models (norms), each one's eps grid, its attack suite (attacks, their parameters, targeted or
    not) and mode, and the number of per-sample outcomes.

    Args:
        old: the first report's dict.
        new: the second report's dict.

    Returns:
        The first problem as one line, or ``None`` when the reports pair up.
    """
    problem = data_problem(old, new)
    if problem:
        return problem
    new_models = {m["name"]: m for m in new.get("models", [])}
    for m in old.get("models", []):
        n = new_models.get(m["name"])
        if n is None:
            continue
        where = f"model {m['name']!r}"
        old_tms = {tm["norm"]: tm for tm in m.get("threat_models", [])}
        new_tms = {tm["norm"]: tm for tm in n.get("threat_models", [])}
        if set(old_tms) != set(new_tms):
            return (f"different threat models for {where}: {', '.join(old_tms) or 'none'} vs "
                    f"{', '.join(new_tms) or 'none'}")
        for norm, tm in old_tms.items():
            ntm = new_tms[norm]
            if not _same_grid(tm["eps"], ntm["eps"]):
                return f"different eps grids for {where} ({norm}): {_eps_list(tm['eps'])} vs {_eps_list(ntm['eps'])}"
            if _suite(tm) != _suite(ntm):
                return f"different attack suites for {where} ({norm}): {_suite_difference(tm, ntm)}"
            if tm.get("mode") != ntm.get("mode"):
                return f"different suite modes for {where} ({norm}): {tm.get('mode')} vs {ntm.get('mode')}"
            a, b = fooled_by(tm), fooled_by(ntm)
            if a and b and len(a[0]) != len(b[0]):
                return f"different sample sets for {where} ({norm}): {len(a[0])} vs {len(b[0])} per-sample outcomes"
    return None


def paired_tests(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """McNemar's test for every model both reports hold: clean accuracy, then per threat model and eps the
    worst case and (cascade mode) each attack's cumulative result. Call after :func:`pairing_problem` found
    nothing; parts without per-sample outcomes on either side are left out.

    Args:
        old: the first report's dict.
        new: the second report's dict.

    Returns:
        Dicts with ``model``, ``what`` (``clean_acc``, ``worst_case linf@0.1``, ``PGD-10 linf@0.1``: the names
        :func:`advkit.report.diff_reports` uses), ``old``/``new`` (accuracies), ``lost``, ``gained``,
        ``p_value``, ``significant``.
    """
    out: list[dict[str, Any]] = []

    def add(model: str, what: str, a: list[bool], b: list[bool]) -> None:
        n = len(a) or 1
        out.append({"model": model, "what": what, "old": sum(a) / n, "new": sum(b) / n, **paired_test(a, b)})

    new_models = {m["name"]: m for m in new.get("models", [])}
    for m in old.get("models", []):
        nm = new_models.get(m["name"])
        if nm is None:
            continue
        a, b = clean_correct(m), clean_correct(nm)
        if a is not None and b is not None and len(a) == len(b):
            add(m["name"], "clean_acc", a, b)
        new_tms = {tm["norm"]: tm for tm in nm.get("threat_models", [])}
        for tm in m.get("threat_models", []):
            ntm = new_tms.get(tm["norm"])
            ra, rb = fooled_by(tm), (fooled_by(ntm) if ntm else None)
            if ntm is None or not ra or not rb or len(ra) != len(rb) or len(ra[0]) != len(rb[0]):
                continue
            cascade = tm.get("mode") == "cascade" and ntm.get("mode") == "cascade"
            for ei, eps in enumerate(tm["eps"]):
                where = f"{tm['norm']}@{eps_label(eps)}"
                add(m["name"], f"worst_case {where}", robust_after(ra, ei), robust_after(rb, ei))
                if cascade:
                    for ai, atk in enumerate(tm["attacks"]):
                        add(m["name"], f"{atk['label']} {where}", robust_after(ra, ei, ai), robust_after(rb, ei, ai))
    return out
