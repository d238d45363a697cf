"""Detection metrics against brute-force definitions and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from advkit.detect.metrics import (
    accuracy_at,
    accuracy_ci,
    average_precision,
    calibrate_threshold,
    detection_report,
    eer,
    roc_auc,
    roc_auc_ci,
    roc_curve,
)
from advkit.errors import AdvkitError


def _data(seed=0, n=400, rounding=1):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.round(rng.normal(size=n) + 1.2 * y, rounding)  # rounding makes ties
    return s, y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_is_the_pairwise_probability_with_ties_as_half(seed):
    s, y = _data(seed)
    pos, neg = s[y == 1], s[y == 0]
    brute = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert roc_auc(s, y) == pytest.approx(brute, abs=1e-12)
    assert roc_auc(torch.tensor(s), torch.tensor(y)) == pytest.approx(brute, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_average_precision_matches_its_definition(seed):
    s, y = _data(seed)
    # mean over distinct thresholds t of precision(t) * (recall(t) - recall(previous t))
    ap, prev_recall = 0.0, 0.0
    for t in np.unique(s)[::-1]:
        pred = s >= t
        tp = (pred & (y == 1)).sum()
        recall = tp / (y == 1).sum()
        ap += tp / pred.sum() * (recall - prev_recall)
        prev_recall = recall
    assert average_precision(s, y) == pytest.approx(ap, abs=1e-12)


def test_hand_computed_cases():
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert roc_auc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert roc_auc([0.5, 0.5], [0, 1]) == 0.5
    assert average_precision([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    # ranking fake, real, fake: precision 1 at recall 1/2, 2/3 at recall 1 -> AP = 1/2 + 1/3
    assert average_precision([0.9, 0.8, 0.7], [1, 0, 1]) == pytest.approx(0.5 + 1 / 3)
    fpr, tpr, thr = roc_curve([0.9, 0.8, 0.7], [1, 0, 1])
    assert fpr.tolist() == [0, 0, 1, 1] and tpr.tolist() == [0, 0.5, 0.5, 1] and thr[0] == np.inf
    assert accuracy_at([0.2, 0.6, 0.4, 0.9], [0, 1, 1, 1], 0.5) == 0.75


def test_eer_where_false_positive_and_false_negative_rates_meet():
    s, y = _data(3, n=2000, rounding=6)
    rate, t = eer(s, y)
    fpr = ((s >= t) & (y == 0)).sum() / (y == 0).sum()
    fnr = ((s < t) & (y == 1)).sum() / (y == 1).sum()
    assert abs(fpr - fnr) < 0.01 and abs(rate - (fpr + fnr) / 2) < 0.01
    assert 0.2 < rate < 0.35  # two unit Gaussians 1.2 apart: EER = Phi(-0.6) = 0.274
    assert eer([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1])[0] == 0.0


def test_calibrated_threshold_maximizes_accuracy_and_avoids_ties():
    s, y = _data(4)
    t = calibrate_threshold(s, y)
    best = max(accuracy_at(s, y, c) for c in np.r_[np.unique(s), np.inf])
    assert accuracy_at(s, y, t) == pytest.approx(best)
    assert t not in set(s.tolist())  # a midpoint, not a sample's score
    # scores all on one side of 0.5: the calibrated threshold fixes what 0.5 gets wrong
    s2, y2 = np.array([0.1, 0.15, 0.3, 0.35]), np.array([0, 0, 1, 1])
    assert accuracy_at(s2, y2, 0.5) == 0.5 and accuracy_at(s2, y2, calibrate_threshold(s2, y2)) == 1.0
    rep = detection_report(s2, y2, calibrated=calibrate_threshold(s2, y2))
    assert rep["auc"] == 1.0 and rep["acc"] == 0.5 and rep["acc_calibrated"] == 1.0 and rep["n"] == 4


def test_bad_inputs():
    with pytest.raises(AdvkitError, match="both real"):
        roc_auc([0.1, 0.2], [1, 1])
    with pytest.raises(AdvkitError, match="NaN"):
        roc_auc([0.1, float("nan")], [0, 1])
    with pytest.raises(AdvkitError, match="0 \\(real\\) or 1"):
        roc_auc([0.1, 0.2], [0, 2])
    with pytest.raises(AdvkitError, match="3 scores but 2 labels"):
        roc_auc([0.1, 0.2, 0.3], [0, 1])


# ------------------------------------------------------------------------------------- AUC intervals

def _delong_brute(s, y, z=1.959963984540054):
    """DeLong's interval from the pairwise kernel matrix (O(m n)): an independent route to the same numbers."""
    pos, neg = s[y == 1], s[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(1), psi.mean(0)
    se = np.sqrt(v10.var(ddof=1) / len(pos) + v01.var(ddof=1) / len(neg))
    return max(0.0, psi.mean() - z * se), min(1.0, psi.mean() + z * se)


@pytest.mark.parametrize("seed, rounding", [(0, 1), (1, 1), (2, 6)])
def test_auc_interval_is_delongs_with_ties(seed, rounding):
    s, y = _data(seed, n=300, rounding=rounding)
    lo, hi = roc_auc_ci(s, y)
    ref = _delong_brute(s, y)
    assert (lo, hi) == pytest.approx(ref, abs=2e-6)  # stored to 6 decimals
    assert lo < roc_auc(s, y) < hi
    assert roc_auc_ci(torch.tensor(s), torch.tensor(y)) == [lo, hi]  # deterministic, any input type


def test_auc_interval_covers_the_true_auc_about_95_percent_of_the_time():
    # fakes ~ N(1, 1), reals ~ N(0, 1): AUC = Phi(1 / sqrt(2)) = 0.76025
    rng = np.random.default_rng(7)
    hits = 0
    for _ in range(400):
        y = np.r_[np.ones(80, int), np.zeros(120, int)]
        s = rng.normal(size=200) + y
        lo, hi = roc_auc_ci(s, y)
        hits += lo <= 0.76025 <= hi
    assert 0.91 <= hits / 400 <= 0.985, hits


def test_auc_interval_edge_cases_and_the_report_fields():
    assert roc_auc_ci([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == [1.0, 1.0]  # perfect separation: no spread
    assert roc_auc_ci([0.1, 0.2, 0.8], [0, 0, 1]) == [0.0, 1.0]  # one fake: the variance is not defined
    s, y = _data(5)
    rep = detection_report(s, y, calibrated=0.3)
    assert rep["auc_ci"] == roc_auc_ci(s, y)
    k = int(((s >= 0.5) == (y == 1)).sum())
    assert rep["acc"] == k / len(y) and rep["acc_ci"][0] < rep["acc"] < rep["acc_ci"][1]
    assert rep["acc_ci"] == accuracy_ci(s, y, 0.5) and rep["acc_calibrated_ci"] == accuracy_ci(s, y, 0.3)
