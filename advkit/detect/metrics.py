"""Detection metrics on fake-scores: ROC AUC, average precision, equal error rate, accuracy at a threshold,
and a threshold calibrated on validation data. Label 1 = fake (the positive class), 0 = real.

Scores are any real numbers where larger means "more likely fake" (e.g. ``softmax(logits)[:, 1]``).
Everything is exact (no binning): ties between a real and a fake score count one half in the AUC, and
tied scores form one operating point on the ROC and precision-recall curves.
"""

from __future__ import annotations

import numpy as np
import torch

from advkit.errors import AdvkitError


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
    """``(fpr, tpr, thresholds)``: one point per distinct score (predict fake when ``score >= t``), from
    (0, 0) at ``t = +inf`` to (1, 1)."""
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
    """Area under the ROC curve = P(score of a random fake > score of a random real) + P(tie) / 2."""
    fpr, tpr, _ = roc_curve(scores, labels)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))  # trapezoids: ties count one half


def average_precision(scores, labels) -> float:
    """Average precision: the precision at each distinct threshold weighted by the recall it adds
    (the step-wise area under the precision-recall curve, no interpolation)."""
    fpr, tpr, _ = roc_curve(scores, labels)
    _, y = _arrays(scores, labels)
    n_pos, n_neg = y.sum(), len(y) - y.sum()
    tp, fp = tpr[1:] * n_pos, fpr[1:] * n_neg
    precision = tp / np.maximum(tp + fp, 1)
    return float(np.sum(np.diff(tpr) * precision))


def eer(scores, labels) -> tuple[float, float]:
    """Equal error rate and its threshold: where the false-positive rate meets the false-negative rate
    (linear interpolation between the two ROC points that bracket the crossing)."""
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
    """Accuracy when a sample is called fake at ``score >= threshold``."""
    s, y = _arrays(scores, labels)
    return float(((s >= threshold).astype(np.int64) == y).mean())


def calibrate_threshold(scores, labels) -> float:
    """The threshold that maximizes accuracy on (validation) data; among equally good ones, the midpoint
    between that score and the next lower one, so test scores near it are not decided by a tie."""
    s, y = _arrays(scores, labels)
    fpr, tpr, thr = roc_curve(s, y)
    n_pos, n_neg = y.sum(), len(y) - y.sum()
    acc = (tpr * n_pos + (1 - fpr) * n_neg) / len(y)
    i = int(np.argmax(acc))
    if i == 0:
        return float(np.nextafter(s.max(), np.inf))  # call nothing fake
    below = s[s < thr[i]]
    return float((thr[i] + below.max()) / 2) if len(below) else float(thr[i])


def detection_report(scores, labels, threshold: float = 0.5, calibrated: float | None = None) -> dict:
    """AUC, AP, EER, accuracy at ``threshold`` and (when given) at a ``calibrated`` threshold."""
    e, t = eer(scores, labels)
    out = {"auc": roc_auc(scores, labels), "ap": average_precision(scores, labels), "eer": e,
           "eer_threshold": t, "acc": accuracy_at(scores, labels, threshold), "threshold": threshold,
           "n": int(len(np.asarray(labels).reshape(-1)))}
    if calibrated is not None:
        out.update(acc_calibrated=accuracy_at(scores, labels, calibrated), calibrated_threshold=calibrated)
    return out
