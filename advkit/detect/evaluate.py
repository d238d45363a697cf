"""Evaluate a 2-class fake-image detector (index 0 real, 1 fake) on a test split: clean metrics with a
threshold calibrated on validation data, AP per fake source, the evasion attack (targeted L-inf PGD that
pushes fakes towards "real") at each radius, and laundering (JPEG, blur, rescale applied to every image).

Scores are P(fake) = softmax(logits)[:, 1]; images and radii are in [0,1] pixel units.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn

from advkit.attacks import pgd
from advkit.data import ArrayDataset, transforms
from advkit.detect.config import DetectEvalConfig
from advkit.detect.metrics import (
    accuracy_ci,
    average_precision,
    calibrate_threshold,
    detection_report,
    roc_auc,
    roc_auc_ci,
    roc_curve,
)
from advkit.errors import AdvkitError

REAL, FAKE = 0, 1
ROC_POINTS = 200
# (name, transform on uint8 [N,C,H,W]): the post-processing a fake meets on its way to a detector
LAUNDERING = [(f"jpeg_q{q}", lambda x, q=q: transforms.jpeg(x, q)) for q in (95, 75, 50, 30)] \
    + [(f"blur_s{s:g}", lambda x, s=s: transforms.blur(x, s)) for s in (1.0, 2.0)] \
    + [(f"rescale_{f:g}", lambda x, f=f: transforms.rescale(x, f)) for f in (0.75, 0.5)]


def eps_label(eps: float) -> str:
    """A radius as people write it.

    Args:
        eps: the radius in [0,1] pixel units.

    Returns:
        ``4/255`` when ``eps`` is a whole number of 255ths, else four significant digits (``0.0123``).
    """
    k = eps * 255
    return f"{round(k)}/255" if abs(k - round(k)) < 1e-6 else f"{eps:.4g}"


def _to_float(images: torch.Tensor) -> torch.Tensor:
    return images.float().div_(255)


def _batch(x: torch.Tensor, device) -> torch.Tensor:
    """A batch as float [0,1] on ``device`` (uint8 batches are converted there, one batch at a time)."""
    x = x.to(device)
    return _to_float(x) if x.dtype == torch.uint8 else x


@torch.no_grad()
def fake_scores(model: nn.Module, x: torch.Tensor, device: torch.device | str = "cpu",
                batch_size: int = 500) -> torch.Tensor:
    """The detector's P(fake) for each image.

    Args:
        model: a detector, ``f(x in [0,1]) -> logits [N, 2]`` (0 real, 1 fake).
        x: images [N, C, H, W], float in [0,1] or uint8 (converted one batch at a time on ``device``).
        device: where ``model`` is.
        batch_size: images per forward pass.

    Returns:
        P(fake) [N], on the CPU as float64.
    """
    out = [torch.softmax(model(_batch(x[s:s + batch_size], device)).float(), 1)[:, FAKE].cpu()
           for s in range(0, len(x), batch_size)]
    return torch.cat(out).double() if out else torch.zeros(0, dtype=torch.float64)


def _attacked_scores(model: nn.Module, x: torch.Tensor, target: int, eps: float, steps: int, device,
                     batch_size: int, gen: torch.Generator) -> torch.Tensor:
    """P(fake) of every image of ``x`` after targeted PGD towards class ``target`` (batch by batch: the
    attacked images are scored and dropped, never all held at once)."""
    out = []
    for s in range(0, len(x), batch_size):
        xb = _batch(x[s:s + batch_size], device)
        yb = torch.full((len(xb),), target, dtype=torch.int64, device=device)
        out.append(fake_scores(model, pgd(model, xb, yb, eps=eps, steps=steps, targeted=True, generator=gen),
                               device, batch_size))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def roc_points(scores, labels, max_points: int = ROC_POINTS) -> dict[str, list[float]]:
    """The ROC curve, thinned for a report.

    Args:
        scores: P(fake) per sample.
        labels: 0 real / 1 fake per sample.
        max_points: the most points kept (evenly spaced, both ends kept).

    Returns:
        ``{"fpr": [...], "tpr": [...]}``, rounded to 5 decimals.
    """
    fpr, tpr, _ = roc_curve(scores, labels)
    if len(fpr) > max_points:
        keep = np.unique(np.linspace(0, len(fpr) - 1, max_points).round().astype(int))
        fpr, tpr = fpr[keep], tpr[keep]
    return {"fpr": [round(float(v), 5) for v in fpr], "tpr": [round(float(v), 5) for v in tpr]}


def _summary(scores: torch.Tensor, labels: torch.Tensor, threshold: float, calibrated: float | None) -> dict:
    """AUC, AP and accuracies (no EER: attacked score sets are often degenerate)."""
    called = (scores >= threshold).long()
    out = {"auc": roc_auc(scores, labels), "ap": average_precision(scores, labels),
           "acc": float((called == labels).double().mean()),
           "auc_ci": roc_auc_ci(scores, labels), "acc_ci": accuracy_ci(scores, labels, threshold)}  # 95%
    if calibrated is not None:
        out["acc_calibrated"] = float(((scores >= calibrated).long() == labels).double().mean())
    return out


def evaluate_detector(model: nn.Module, test: ArrayDataset, val: ArrayDataset | None = None,
                      cfg: DetectEvalConfig | None = None, device: torch.device | str = "cpu", *,
                      seed: int = 0, batch_size: int = 500) -> dict:
    """Evaluate detector ``model`` on ``test`` (labels 0 real / 1 fake): clean, attacked and laundered.

    The result, a JSON-ready dict:

    - ``clean``: :func:`detection_report` on all of ``test``, with a threshold calibrated on ``val``
      (when given, with both classes) next to ``cfg.threshold``; ``per_generator``: each fake source's
      AUC/AP against all reals, when ``test.meta["generators"]`` has several.
    - ``robust``: per radius (ascending), on the first ``cfg.n`` test samples: fakes attacked with targeted
      PGD towards "real", reals clean. Each fake keeps the lowest score found at any radius up to this one
      (a point of a smaller ball lies in the larger one), so the numbers cannot rise with eps by attack luck.
      ``auc_reals_attacked``: the reverse attack (reals pushed towards "fake", fakes clean).
    - ``laundering``: AUC/AP/acc after each transform applied to both classes' images (same subset).
    - ``roc``: thinned ROC curves: ``clean``, ``pgd@<eps>`` and one per laundering transform.
    - ``time_s``: seconds spent on ``clean`` scoring, ``robust`` (the attacks) and ``laundering``.

    Attacks are seeded with ``seed`` (one stream per radius), and the model's mode is restored.

    Args:
        model: a detector, ``f(x in [0,1]) -> logits [N, 2]`` (0 real, 1 fake).
        test: the test set.
        val: a validation set to calibrate a threshold on; None: none.
        cfg: radii (eps in [0,1] pixel units), attack steps, subset size, threshold; default
            ``DetectEvalConfig()``.
        device: where ``model`` is.
        seed: seeds the attacks.
        batch_size: images per forward pass.

    Returns:
        The JSON-ready dict above.

    Raises:
        AdvkitError: ``test`` does not have 2 classes.
    """
    cfg = cfg or DetectEvalConfig()
    if test.num_classes != 2:
        raise AdvkitError(f"{test.name}: a detector test set needs 2 classes (real, fake), got {test.classes}")
    was = model.training
    model.eval()
    try:
        return _evaluate(model, test, val, cfg, device, seed, batch_size)
    finally:
        model.train(was)


def _evaluate(model, test: ArrayDataset, val, cfg: DetectEvalConfig, device, seed: int, batch_size: int) -> dict:
    t = cfg.threshold
    t0 = time.perf_counter()
    labels = test.labels.clone()
    scores = fake_scores(model, test.images, device, batch_size)
    calibrated = None
    if val is not None and len(val) and 0 < int(val.labels.sum()) < len(val):
        calibrated = calibrate_threshold(fake_scores(model, val.images, device, batch_size), val.labels)
    out: dict = {"n_test": len(test), "threshold": t, "calibrated_threshold": calibrated, "pgd_steps": cfg.pgd_steps,
                 "clean": detection_report(scores, labels, t, calibrated), "roc": {"clean": roc_points(scores, labels)}}

    sources = test.meta.get("generators") or []
    per_sample = test.meta.get("generator")
    if len(sources) > 1 and per_sample is not None:
        prov = np.asarray(per_sample)
        out["per_generator"] = {}
        for g in sources:
            keep = torch.from_numpy((labels.numpy() == REAL) | (prov == g))
            n_fake = int((labels[keep] == FAKE).sum())
            out["per_generator"][g] = ({"n_fake": n_fake, "auc": roc_auc(scores[keep], labels[keep]),
                                        "auc_ci": roc_auc_ci(scores[keep], labels[keep]),
                                        "ap": average_precision(scores[keep], labels[keep])} if n_fake else
                                       {"n_fake": 0, "auc": None, "ap": None})

    sub = test.subset(cfg.n)
    y, s_clean = sub.labels, scores[:len(sub)]
    if not 0 < int(y.sum()) < len(y):
        raise AdvkitError(f"the first {len(sub)} test samples (evaluation.n) hold only one class; raise n")
    x = sub.images
    fake_idx, real_idx = torch.nonzero(y == FAKE).flatten(), torch.nonzero(y == REAL).flatten()
    out["subset"] = {"n": len(sub), "n_fake": len(fake_idx), "n_real": len(real_idx),
                     **_summary(s_clean, y, t, calibrated),
                     "fake_score_mean": float(s_clean[fake_idx].mean()),
                     "real_score_mean": float(s_clean[real_idx].mean())}

    t1 = time.perf_counter()
    out["robust"] = []
    worst_fake, worst_real = s_clean[fake_idx].clone(), s_clean[real_idx].clone()
    for i, eps in enumerate(sorted(cfg.eps)):
        gen = torch.Generator(device=device).manual_seed(seed + 1000 * (i + 1))
        attacked = _attacked_scores(model, x[fake_idx], REAL, eps, cfg.pgd_steps, device, batch_size, gen)
        worst_fake = torch.minimum(worst_fake, attacked)
        s = s_clean.clone()
        s[fake_idx] = worst_fake
        row = {"eps": eps, "label": eps_label(eps), **_summary(s, y, t, calibrated),
               "fake_score_mean": float(worst_fake.mean()),
               "fakes_called_real": float((worst_fake < t).double().mean())}
        if cfg.attack_reals:
            attacked = _attacked_scores(model, x[real_idx], FAKE, eps, cfg.pgd_steps, device, batch_size, gen)
            worst_real = torch.maximum(worst_real, attacked)
            s_r = s_clean.clone()
            s_r[real_idx] = worst_real
            row.update(auc_reals_attacked=roc_auc(s_r, y), reals_called_fake=float((worst_real >= t).double().mean()))
        out["robust"].append(row)
        out["roc"][f"pgd@{row['label']}"] = roc_points(s, y)

    t2 = time.perf_counter()
    out["laundering"] = {}
    if cfg.laundering:
        for name, fn in LAUNDERING:
            s = fake_scores(model, fn(sub.images), device, batch_size)
            out["laundering"][name] = _summary(s, y, t, calibrated)
            out["roc"][name] = roc_points(s, y)
    out["time_s"] = {"clean": round(t1 - t0, 3), "robust": round(t2 - t1, 3),
                     "laundering": round(time.perf_counter() - t2, 3)}
    _check_finite(out)
    return out


def _check_finite(obj) -> None:
    """NaN would turn into invalid JSON and meaningless tables: fail loudly instead."""
    if isinstance(obj, float) and not math.isfinite(obj):
        raise AdvkitError("the detector evaluation produced a non-finite number (a diverged model?)")
    if isinstance(obj, dict):
        for v in obj.values():
            _check_finite(v)
    elif isinstance(obj, list):
        for v in obj:
            _check_finite(v)
