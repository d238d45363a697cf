"""advkit in a test suite: :func:`assert_robust` fails a pytest (or any ``assert``-style check) when a model's
robust accuracy is below a floor.

    from advkit.testing import assert_robust

    def test_my_model_is_robust():
        assert_robust(load_my_model(), my_test_set, eps=8/255, min_robust_acc=0.4, n=500)

The gate is the point estimate: robust accuracy (the per-sample worst case over the attack) must be at least
``min_robust_acc``. The 95% Wilson interval is printed, not gated on: with n=500 it is about +-4 points, so
a floor set a few points under the model's measured accuracy keeps the test stable; a stricter gate that
wants the whole interval above the floor would fail a model sitting exactly at it half of the time.
"""

from __future__ import annotations

import base64
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advkit.api import evaluate
from advkit.errors import AdvkitError
from advkit.report import Report, write_reports
from advkit.runtime.io import atomic_write_bytes

__all__ = ["assert_robust", "write_examples"]


def _eps_text(eps: float, norm: str) -> str:
    k = eps * 255
    return f"{norm} eps={eps:.4g}" + (f" ({round(k)}/255)" if norm == "linf" and abs(k - round(k)) < 1e-6 else "")


def write_examples(report: Report, folder: str | os.PathLike) -> list[Path]:
    """Write the report's worst-case example grids (clean, adversarial, perturbation) as PNG files.

    Args:
        report: an evaluation report.
        folder: where to write them (created if needed); one ``MODEL_NORM_eps=EPS.png`` per model and eps.

    Returns:
        The paths written (none when no sample was fooled).
    """
    out = Path(folder)
    paths = []
    for m in report.models:
        for ex in m.examples:
            stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{m.name}_{ex.norm or 'linf'}_eps={ex.eps:.4g}")
            path = out / f"{stem}.png"
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, base64.b64decode(ex.png_base64))
            paths.append(path)
    return paths


def assert_robust(model: nn.Module, data: Any, eps: float = 8 / 255, attack: Any = "autoattack-fast",
                  min_robust_acc: float = 0.4, n: int | None = 500, out: str | os.PathLike | None = None, *,
                  norm: str = "linf", batch_size: int = 256, seed: int = 0, checks: bool = True,
                  device: str | torch.device | None = None) -> Report:
    """Fail with a short ``AssertionError`` when ``model``'s robust accuracy on ``data`` is below ``min_robust_acc``.

    The measurement is :func:`advkit.evaluate` (the eval harness): the share of the first ``n`` samples
    classified correctly and not fooled by ``attack`` within ``eps``. The gate compares the point estimate
    with ``min_robust_acc``; the message gives the estimate, its 95% Wilson interval, the clean accuracy, n,
    the attack, eps and the folder where the report and the fooled examples (PNG grids) were written.

    Args:
        model: ``f(x in [0,1]) -> logits`` (normalization inside the model).
        data: a ``Dataset``, ``DataLoader``, iterable of ``(x, y)`` batches or ``(x, y)`` pair, images in [0,1].
        eps: the radius, in pixel units of ``norm``.
        attack: an attack or preset name (``autoattack-fast``, ``pgd``, ...), a mapping with parameters, or a
            list of those (the per-sample worst case over them).
        min_robust_acc: the floor for the robust accuracy, in [0, 1].
        n: evaluate the first ``n`` samples; None: all.
        out: write the report files and the example PNGs (``examples/``) here, pass or fail; None: on
            failure only, into a new temporary folder named in the message.
        norm: ``linf`` or ``l2``.
        batch_size: samples per attack batch.
        seed: seeds the attacks.
        checks: also run the harness's sanity checks; one that fails (gradient masking, a non-deterministic
            model, ...) fails the assertion too, since the robust accuracy it qualifies cannot be trusted.
        device: where to run; None: the model's device.

    Returns:
        The report, when the assertion holds.

    Raises:
        AssertionError: robust accuracy below ``min_robust_acc``, or (with ``checks``) a failed check.
        AdvkitError: a bad argument (see :func:`advkit.evaluate`).
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not this function's
    if isinstance(min_robust_acc, bool) or not 0 <= min_robust_acc <= 1:
        raise AdvkitError(f"min_robust_acc must be in [0, 1], got {min_robust_acc!r}")
    if not isinstance(eps, (int, float)):
        raise AdvkitError(f"eps must be one number (pixel units, e.g. 8/255), got {eps!r}")
    report = evaluate(model, data, attacks=attack, eps=float(eps), n=n, norm=norm, batch_size=batch_size, seed=seed,
                      device=device, checks=checks)
    entry = report.models[0]
    worst = entry.threat_models[0].worst_case[0]
    acc = worst.robust_acc if worst.robust_acc is not None else float("nan")  # None only in a damaged report
    failed_checks = [c for c in entry.checks if c.status == "fail"]
    ok = acc >= min_robust_acc and not failed_checks
    if out is None and ok:
        return report
    folder = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="advkit-assert-robust-"))
    write_reports(report, folder)
    pictures = write_examples(report, folder / "examples")
    if ok:
        return report
    label = attack if isinstance(attack, str) else ", ".join(
        a if isinstance(a, str) else str(a.get("name")) for a in ([attack] if isinstance(attack, dict) else attack))
    lo, hi = worst.robust_acc_ci or (float("nan"), float("nan"))
    head = (f"robust accuracy {acc:.1%} < {min_robust_acc:.1%} required"
            if not acc >= min_robust_acc else f"robust accuracy {acc:.1%} (floor "
            f"{min_robust_acc:.1%} met) but a sanity check failed")
    lines = [f"{head} (95% CI {lo:.1%}-{hi:.1%}; clean {entry.clean_acc or 0:.1%}); n={entry.n}, {label}, "
             f"{_eps_text(worst.eps, norm)}"]
    lines += [f"check {c.name} failed: {c.message}" for c in failed_checks]
    lines.append(f"worst examples: {folder / 'examples'}" if pictures else f"report: {folder} (no sample was fooled)")
    raise AssertionError("\n".join(lines))
