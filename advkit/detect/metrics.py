"""Detection metrics on fake-scores: ROC AUC with DeLong's 95% interval, average precision, equal error rate,
accuracy at a threshold (with its Wilson interval), and a threshold calibrated on validation data. Label 1 =
fake (the positive class), 0 = real.

Scores are any real numbers where larger means "more likely fake" (e.g. ``softmax(logits)[:, 1]``).
Everything is exact (no binning): ties between a real and a fake score count one half in the AUC, and
tied scores form one operating point on the ROC and precision-recall curves.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from advkit.errors import AdvkitError
from advkit.report.stats import Z95, wilson_interval


def _arrays(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = scores.detach().cpu().double().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores, float)
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    s, y = s.reshape(-1), y.reshape(-1)
    if s.shape != y.shape:
        raise AdvkitError(f"{len(s)} scores but {len(y)} labels")
    if not np.isfinite(s).all():
        raise AdvkitError("scores contain NaN or infinite values")
    if not np.isin(y, (0, 1)).all():
        raise AdvkitError("labels must be 0 (real) or 1 (fake)")
    y = y.astype(np.int64)
    if y.min(initial=1) == 1 or y.max(initial=0) == 0:
        raise AdvkitError("detection metrics need both real (0) and fake (1) samples")
    return s, y


def roc_curve(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ROC curve, one point per distinct score (predict fake when ``score >= t``).

    Args:
        scores: fake-scores [N] (a tensor, an array or a sequence), larger meaning more likely fake.
        labels: [N], 1 = fake, 0 = real; both classes present.

    Returns:
        ``(fpr, tpr, thresholds)``, from (0, 0) at ``t = +inf`` to (1, 1).

    Raises:
        AdvkitError: scores and labels differ in length, a score is not finite, a label is not 0 or 1, or one
            class is missing.
    """
    s, y = _arrays(scores, labels)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # the last index of each run of equal scores
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    tpr = np.r_[0.0, tp / y.sum()]
    fpr = np.r_[0.0, fp / (len(y) - y.sum())]
    return fpr, tpr, np.r_[np.inf, s[last]]


def roc_auc(scores, labels) -> float:
    """Area under the ROC curve.

    Args:
        scores: fake-scores [N] (a tensor, an array or a sequence), larger meaning more likely fake.
        labels: [N], 1 = fake, 0 = real; both classes present.

    Returns:
        P(score of a random fake > score of a random real) + P(tie) / 2.

    Raises:
        AdvkitError: scores and labels differ in length, a score is not finite, a label is not 0 or 1, or one
            class is missing.
    """
    fpr, tpr, _ = roc_curve(scores, labels)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))  # trapezoids: ties count one half


def _midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x``, tied values sharing the mean of their ranks."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.r_[0, np.nonzero(np.diff(xs))[0] + 1]
    ends = np.r_[starts[1:], len(xs)]
    ranks = np.empty(len(x))
    ranks[order] = np.repeat((starts + 1 + ends) / 2, ends - starts)  # mean of ranks start+1 .. end
    return ranks


def roc_auc_ci(scores, labels, z: float = Z95) -> list[float]:
    """DeLong's interval of the ROC AUC (DeLong, DeLong & Clarke-Pearson 1988): the AUC's variance from its
    structural components (each fake's share of reals scored below it, each real's share of fakes above it,
    ties one half), computed exactly with midranks in O(n log n). Deterministic (no resampling).

    Args:
        scores, labels: as :func:`roc_auc`.
        z: the normal quantile of the level (1.96: 95%).

    Returns:
        ``[lo, hi]`` clipped to [0, 1], rounded to 6 decimals. With one sample of a class the variance is not
        defined and the interval is [0, 1]; classes that separate perfectly give a point interval (the
        estimate has no spread to measure; it says nothing about samples not seen).

    Raises:
        AdvkitError: as :func:`roc_auc`.
    """
    s, y = _arrays(scores, labels)
    pos, neg = s[y == 1], s[y == 0]
    m, n = len(pos), len(neg)
    if m < 2 or n < 2:
        return [0.0, 1.0]
    r_all = _midranks(np.r_[pos, neg])
    v10 = (r_all[:m] - _midranks(pos)) / n        # per fake: P(real < it) + P(tie) / 2
    v01 = 1 - (r_all[m:] - _midranks(neg)) / m    # per real: P(fake > it) + P(tie) / 2
    auc = float(v10.mean())
    se = math.sqrt(max(float(v10.var(ddof=1)) / m + float(v01.var(ddof=1)) / n, 0.0))
    return [round(max(0.0, auc - z * se), 6), round(min(1.0, auc + z * se), 6)]


def accuracy_ci(scores, labels, threshold: float = 0.5) -> list[float] | None:
    """The 95% Wilson interval of :func:`accuracy_at`.

    Args:
        scores: fake-scores [N] (a tensor, an array or a sequence), larger meaning more likely fake.
        labels: [N], 1 = fake, 0 = real; both classes present.
        threshold: a sample is called fake at ``score >= threshold``.

    Returns:
        ``[lo, hi]``.

    Raises:
        AdvkitError: as :func:`roc_auc`.
    """
    s, y = _arrays(scores, labels)
    return wilson_interval(int(((s >= threshold).astype(np.int64) == y).sum()), len(y))


def average_precision(scores, labels) -> float:
    """Average precision: the step-wise area under the precision-recall curve, no interpolation.

    Args:
        scores: fake-scores [N] (a tensor, an array or a sequence), larger meaning more likely fake.
        labels: [N], 1 = fake, 0 = real; both classes present.

    Returns:
        The precision at each distinct threshold weighted by the recall it adds, summed.

    Raises:
        AdvkitError: as :func:`roc_auc`.
    """
    fpr, tpr, _ = roc_curve(scores, labels)
    _, y = _arrays(scores, labels)
    n_pos, n_neg = y.sum(), len(y) - y.sum()
    tp, fp = tpr[1:] * n_pos, fpr[1:] * n_neg
    precision = tp / np.maximum(tp + fp, 1)
    return float(np.sum(np.diff(tpr) * precision))


def eer(scores, labels) -> tuple[float, float]:
    """The equal error rate: where the false-positive rate meets the false-negative rate.

    Args:
        scores: fake-scores [N] (a tensor, an array or a sequence), larger meaning more likely fake.
        labels: [N], 1 = fake, 0 = real; both classes present.

    Returns:
        ``(rate, threshold)``, linearly interpolated between the two ROC points that bracket the crossing.

    Raises:
        AdvkitError: as :func:`roc_auc`.
    """
    fpr, tpr, thr = roc_curve(scores, labels)
    fnr = 1 - tpr
    diff = fnr - fpr  # decreasing from 1 to -1 along the curve
    i = int(np.nonzero(diff <= 0)[0][0])
    if diff[i] == 0 or i == 0:
        return float(fpr[i]), float(thr[i])
    w = diff[i - 1] / (diff[i - 1] - diff[i])
    rate = fpr[i - 1] + w * (fpr[i] - fpr[i - 1])
    t = thr[i] if not np.isfinite(thr[i - 1]) else thr[i - 1] + w * (thr[i] - thr[i - 1])
    return float(rate), float(t)


def accuracy_at(scores, labels, threshold: float = 0.5) -> float:
    """Accuracy at a fixed threshold.

    Args:
        scores: fake-scores [N] (a tensor, an array or a sequence), larger meaning more likely fake.
        labels: [N], 1 = fake, 0 = real; both classes present.
        threshold: a sample is called fake at ``score >= threshold``.

    Returns:
        The fraction of samples called right.

    Raises:
        AdvkitError: as :func:`roc_auc`.
    """
    s, y = _arrays(scores, labels)
    return float(((s >= threshold).astype(np.int64) == y).mean())


def calibrate_threshold(scores, labels) -> float:
    """The threshold that maximizes accuracy on (validation) data.

    Args:
        scores: fake-scores [N] (a tensor, an array or a sequence), larger meaning more likely fake.
        labels: [N], 1 = fake, 0 = real; both classes present.

    Returns:
        The best threshold (the highest of equally good ones) moved down to the midpoint between that score
        and the next lower one, so test scores near it are not decided by a tie; just above every score when
        calling nothing fake is best.

    Raises:
        AdvkitError: as :func:`roc_auc`.
    """
    s, y = _arrays(scores, labels)
    fpr, tpr, thr = roc_curve(s, y)
    n_pos, n_neg = y.sum(), len(y) - y.sum()
    acc = (tpr * n_pos + (1 - fpr) * n_neg) / len(y)
    i = int(np.argmax(acc))
    if i == 0:
        return float(np.nextafter(s.max(), np.inf))  # call nothing fake
    below = s[s < thr[i]]
    return float((thr[i] + below.max()) / 2) if len(below) else float(thr[i])


def detection_report(scores, labels, threshold: float = 0.5,
                     calibrated: float | None = None) -> dict[str, Any]:
    """Every detection metric at once.

    Args:
        scores: fake-scores [N] (a tensor, an array or a sequence), larger meaning more likely fake.
        labels: [N], 1 = fake, 0 = real; both classes present.
        threshold: the fixed threshold for ``acc``.
        calibrated: a threshold calibrated on validation data (:func:`calibrate_threshold`), or None.

    Returns:
        ``auc``, ``ap``, ``eer``, ``eer_threshold``, ``acc``, ``threshold``, ``n``, and (when ``calibrated``
        is given) ``acc_calibrated`` and ``calibrated_threshold``; ``auc_ci`` (DeLong) and ``acc_ci`` /
        ``acc_calibrated_ci`` (Wilson) are their 95% intervals.

    Raises:
        AdvkitError: as :func:`roc_auc`.
    """
    e, t = eer(scores, labels)
    out = {"auc": roc_auc(scores, labels), "ap": average_precision(scores, labels), "eer": e,
           "eer_threshold": t, "acc": accuracy_at(scores, labels, threshold), "threshold": threshold,
           "n": int(len(np.asarray(labels).reshape(-1))), "auc_ci": roc_auc_ci(scores, labels),
           "acc_ci": accuracy_ci(scores, labels, threshold)}
    if calibrated is not None:
        out.update(acc_calibrated=accuracy_at(scores, labels, calibrated), calibrated_threshold=calibrated,
                   acc_calibrated_ci=accuracy_ci(scores, labels, calibrated))
    return out
