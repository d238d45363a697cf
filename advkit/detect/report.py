"""Fake-image detectors in the harness: ``advkit eval`` with ``detection.data`` set, and the report that
``advkit train detector`` writes. A detector is a model entry like any other (``clean_acc`` is its accuracy
at the 0.5 threshold, ``threat_models`` is empty) with a ``detection`` object: the output of
:func:`advkit.detect.evaluate.evaluate_detector` (clean, per-generator, evasion and laundering results and
ROC points), so the same writers, gates and JUnit file serve both.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch

from advkit.detect.config import EvalDetectionConfig
from advkit.errors import AdvkitError
from advkit.eval.config import GatesConfig, ModelSpec, config_dict
from advkit.eval.gates import evaluate_gates
from advkit.report import build_report
from advkit.report.paired import fingerprint
from advkit.report.stats import proportion_interval
from advkit.runtime.distributed import Dist


def detector_entry(name: str, source: Any, evaluation: dict[str, Any],
                   checks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A report model entry for a detector.

    Args:
        name: the model's label.
        source: its checkpoint path or registry name, or a list of them for an ensemble.
        evaluation: what :func:`advkit.detect.evaluate.evaluate_detector` returned.
        checks: the model checks that ran, or None.

    Returns:
        The entry, with ``clean_acc`` the accuracy at the threshold and ``clean_acc_ci`` its 95% Wilson
        interval, no threat models, and the evaluation as ``detection``.
    """
    clean = evaluation["clean"]
    ci = clean.get("acc_ci") or proportion_interval(clean["acc"], evaluation["n_test"])
    return {"name": name, "source": source, "clean_acc": clean["acc"], "clean_acc_ci": ci, "n": evaluation["n_test"],
            "threat_models": [], "checks": checks or [], "examples": [], "detection": evaluation}


def detection_report(*, config: dict[str, Any], data: dict[str, Any], models: list[dict[str, Any]],
                     gates: GatesConfig, device: torch.device, world: int = 1,
                     baseline: dict[str, Any] | None = None, total_s: float = 0.0) -> dict[str, Any]:
    """A report around detector entries (:func:`advkit.report.build_report`), its gates evaluated.

    Args:
        config: the resolved evaluation config as JSON.
        data: the report's ``data`` (:func:`data_info`).
        models: detector entries (:func:`detector_entry`).
        gates: the thresholds to judge.
        device: where the run ran.
        world: its number of processes.
        baseline: an earlier report for the ``max_drop`` gates, or None.
        total_s: the run's seconds.

    Returns:
        The report's dict; its attack time is the evasion attacks' time.

    Raises:
        AdvkitError: an entry or gate misses a key the writers need.
    """
    attack_s = sum(m["detection"].get("time_s", {}).get("robust", 0.0) for m in models)
    evaluated = evaluate_gates({"models": models, "data": data}, gates, baseline)
    return build_report(config=config, data=data, models=models, gates=evaluated, device=device, world=world,
                        total_s=total_s, attack_s=attack_s).to_dict()


def data_info(name: str, test: Any) -> dict[str, Any]:
    """The report's ``data`` for a detector's test split.

    Args:
        name: the real/fake data's name.
        test: the test split (an ``ArrayDataset``).

    Returns:
        ``dataset``, ``split``, ``n``, ``num_classes`` (2), ``shape`` and ``fingerprint`` (which samples, so a
        report diff can tell whether two runs saw the same ones).
    """
    return {"dataset": name, "split": "test", "n": len(test), "num_classes": 2, "shape": list(test.image_shape),
            "fingerprint": fingerprint(test.images, test.labels)}


def run_detection_eval(cfg: EvalDetectionConfig, *, device: torch.device, dist: Dist = Dist(),
                       baseline: dict[str, Any] | None = None,
                       say: Callable[[str], None] = print) -> dict[str, Any] | None:
    """Evaluate every model of ``cfg.models`` as a detector on ``cfg.detection.data``'s test split.

    Runs on rank 0 only (the attacks are per-sample; a detector test split is small).

    Args:
        cfg: the detection evaluation config.
        device: where the models run.
        dist: the process group.
        baseline: an earlier report for the ``max_drop`` gates, or None.
        say: told how each model was resolved.

    Returns:
        The report's dict on rank 0, None on the other ranks.

    Raises:
        AdvkitError: the test split lacks a class, or a model does not fit the data.
    """
    from advkit.detect.data import build_realfake, data_name
    from advkit.detect.evaluate import evaluate_detector
    from advkit.eval.checks import model_checks
    from advkit.eval.harness import load_model
    from advkit.models.resolve import check_model_fits

    if not dist.main:
        return None
    t0 = time.perf_counter()
    spec = cfg.detection
    sets = build_realfake(spec.data, root=cfg.data.root)
    test, val = sets["test"], sets["val"]
    if len(test) == 0 or not 0 < int(test.labels.sum()) < len(test):
        raise AdvkitError(f"the detection test split holds {len(test)} images of one class or none; check "
                          f"detection.data (split, test_frac, n_per_class)")
    entries = []
    for m in cfg.models:
        model = load_model(m, test, device, say)
        check_model_fits(model, test.subset(2).tensors()[0].to(device), test.num_classes, m.label, test.name)
        checks = []
        if cfg.checks.enabled:
            x, y = test.subset(cfg.checks.n).tensors()
            checks = model_checks(model, x.to(device), y.to(device), cfg.checks, cfg.batch_size)
        ev = evaluate_detector(model, test, val, spec.evaluation, device, seed=cfg.seed, batch_size=cfg.batch_size)
        entries.append(detector_entry(m.label, _source(m), ev, checks))
        del model
    return detection_report(config=config_dict(cfg), data=data_info(data_name(spec.data), test), models=entries,
                            gates=cfg.gates, device=device, world=dist.world, baseline=baseline,
                            total_s=time.perf_counter() - t0)


def summary_text(ev: dict[str, Any]) -> str:
    """A detector evaluation as a few aligned lines for people (the JSON report has everything).

    Args:
        ev: what :func:`advkit.detect.evaluate.evaluate_detector` returned.

    Returns:
        The lines, joined with newlines.
    """
    c = ev["clean"]
    cal = "" if c.get("acc_calibrated") is None else \
        f"  acc@{ev['calibrated_threshold']:.3g} (val-calibrated) {c['acc_calibrated']:.2%}"
    lines = [f"clean (test, n={ev['n_test']}): AUC {c['auc']:.4f}  AP {c['ap']:.4f}  EER {c['eer']:.2%}  "
             f"acc@{ev['threshold']:g} {c['acc']:.2%}{cal}"]
    for g, r in ev.get("per_generator", {}).items():
        lines.append(f"  {g}: AUC {r['auc']:.4f}  AP {r['ap']:.4f}" if r["auc"] is not None else f"  {g}: no fakes")
    sub = ev["subset"]
    if ev["robust"]:
        lines.append(f"evasion: targeted PGD-{ev.get('pgd_steps', '?')} pushes fakes to 'real' (n={sub['n']}, "
                     f"clean AUC {sub['auc']:.4f})")
        lines.append(f"  {'eps':>8}  {'AUC':>6}  {'AP':>6}  {'fakes called real':>17}  {'AUC, reals attacked':>19}")
        for r in ev["robust"]:
            rev = f"{r['auc_reals_attacked']:.4f}" if "auc_reals_attacked" in r else "-"
            lines.append(f"  {r['label']:>8}  {r['auc']:.4f}  {r['ap']:.4f}  {r['fakes_called_real']:>17.2%}  "
                         f"{rev:>19}")
    if ev["laundering"]:
        lines.append(f"laundering (both classes, n={sub['n']}): " + "  ".join(
            f"{k} {v['auc']:.3f}" for k, v in ev["laundering"].items()))
    return "\n".join(lines)


def _source(m: ModelSpec) -> Any:
    return m.model or list(m.ensemble)
