"""``run_eval``: models x threat models x attack suites -> one report dict (schema in :mod:`advkit.report`).

The samples are sharded over ``torchrun`` ranks by batch; rank 0 gathers the per-batch results, runs the
sanity checks and builds the report, which matches a single-process run except for timings.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Sequence
from typing import Any, Callable

import torch
from torch import nn

from advkit.data import ArrayDataset, load_dataset
from advkit.errors import AdvkitError
from advkit.eval.checks import attack_checks, merge, model_checks
from advkit.eval.config import EvalConfig, ModelSpec, config_dict
from advkit.eval.gates import evaluate_gates
from advkit.eval.suite import run_suite, summarize
from advkit.models.ensemble import Ensemble
from advkit.models.resolve import check_model_fits
from advkit.report import build_report, environment  # noqa: F401  (environment: kept importable here)
from advkit.report.paired import encode_fooled_by, fingerprint
from advkit.report.stats import wilson_interval
from advkit.runtime.distributed import Dist

log = logging.getLogger(__name__)


def load_model(spec: ModelSpec, data: ArrayDataset, device: torch.device,
               say: Callable[[str], None] = log.warning) -> nn.Module:
    """The model (or the ensemble of models, their logits averaged) that ``spec`` names.

    Args:
        spec: the model entry of the config; each source goes through :func:`advkit.train.default.resolve`
            (a checkpoint, ``default``, or a model name built with random weights for ``data``).
        data: the evaluated data (a model built from a name takes its classes and image shape).
        device: where the model runs.
        say: told what was resolved, and when weights are random.

    Returns:
        The model in eval mode on ``device``.
    """
    from advkit.train.default import resolve

    if spec.ensemble:
        # the ensemble's own module, over the resolved members as they are (no weight copy). The eval path runs
        # no autocast (attacks and checks cast logits to fp32 themselves), so the members' logits need no cast.
        return Ensemble([resolve(s, data, device, say) for s in spec.ensemble]).eval()
    return resolve(spec.model, data, device, say)


def _png(ex: tuple[torch.Tensor, ...], classes: Sequence[str], title: str) -> str:
    """A worst-case example grid as base64 PNG; ``ex`` is (x, x_adv, y, pred_clean, pred_adv)."""
    from advkit.viz.grid import adversarial_grid_png

    x, x_adv, y, pred_clean, pred_adv = ex
    png = adversarial_grid_png(x, x_adv, y, pred_clean, pred_adv, classes, n=x.shape[0], title=title)
    return base64.b64encode(png).decode()


def run_eval(cfg: EvalConfig, *, device: torch.device, dist: Dist = Dist(), baseline: dict[str, Any] | None = None,
             progress: bool = False, say: Callable[[str], None] = log.warning) -> dict[str, Any] | None:
    """Run the whole evaluation: every model under every threat model's suite, the checks and the gates.

    Args:
        cfg: the evaluation config.
        device: where the models run.
        dist: the process group (batches are sharded over its ranks).
        baseline: an earlier report for the ``max_drop`` gates, or None.
        progress: show a progress bar on rank 0.
        say: told how each model was resolved.

    Returns:
        The report's dict on rank 0, None on the other ranks.

    Raises:
        AdvkitError: the data is empty, a targeted attack meets a model with fewer than 3 classes, or a model
            does not fit the data.
    """
    t_start = time.perf_counter()
    data = load_dataset(cfg.data.dataset, cfg.data.split, root=cfg.data.root).subset(cfg.data.n)
    if len(data) == 0:
        raise AdvkitError(f"{cfg.data.dataset} ({cfg.data.split}) has no samples")
    suites = [(tm, tm.suite()) for tm in cfg.threat_models]
    for _tm, suite in suites:
        for atk_spec in suite:
            if atk_spec.targeted and data.num_classes < 3:
                raise AdvkitError(f"attack {atk_spec.label!r} is targeted, but a {data.num_classes}-class model has "
                                  f"no other class to target than the one an untargeted attack already seeks")
    x_chk, y_chk = data.subset(cfg.checks.n).tensors()
    models_out, attack_s, saved_s = [], 0.0, 0.0
    for spec in cfg.models:
        model = load_model(spec, data, device, say)
        check_model_fits(model, data.subset(2).tensors()[0].to(device), data.num_classes, spec.label, data.name)
        entry: dict[str, Any] = {"name": spec.label, "source": spec.model or list(spec.ensemble), "n": len(data),
                 "threat_models": [], "checks": [], "examples": []}
        per_tm_checks: list[dict[str, dict[str, Any]]] = []
        bar = None
        if progress and dist.main:
            from tqdm.auto import tqdm
            n_batches = -(-len(data) // cfg.batch_size)
            bar = tqdm(total=len(suites) * -(-n_batches // dist.world), desc=f"eval {spec.label}", unit="batch")
        for tm, suite in suites:
            batches = run_suite(model, data.images, data.labels, norm=tm.norm, eps_list=tm.eps, suite=suite,
                                mode=cfg.mode,
                                seed=cfg.seed, num_classes=data.num_classes, batch_size=cfg.batch_size,
                                device=device, rank=dist.rank, world=dist.world, n_examples=cfg.examples,
                                on_batch=bar.update if bar else None)
            if dist.enabled:
                gathered: list = [None] * dist.world
                torch.distributed.all_gather_object(gathered, batches)
                batches = [b for part in gathered for b in part]
            if not dist.main:
                continue
            summ = summarize(batches, n=len(data), eps_list=tm.eps, suite=suite, mode=cfg.mode)
            summ["n"] = len(data)
            # one character per sample and eps (report.paired): a 10,000-sample run stays a few lines of JSON
            summ["per_sample"] = {"fooled_by": encode_fooled_by(summ["per_sample"]["fooled_by"])}
            clean_correct = summ.pop("clean_correct")
            entry["clean_acc"] = clean_correct / len(data)
            entry["clean_acc_ci"] = wilson_interval(clean_correct, len(data))
            examples = summ.pop("_examples")
            for e, ex in zip(tm.eps, examples):
                if ex[0].shape[0]:
                    entry["examples"].append({"eps": e, "norm": tm.norm, "attack": "worst case",
                                              "png_base64": _png(ex, data.classes, f"{tm.norm} eps {e:g}")})
            attack_s += sum(w["time_s"] for w in summ["worst_case"])
            saved_s += sum(w["time_saved_s"] for w in summ["worst_case"])
            entry["threat_models"].append({"norm": tm.norm, **summ})
            if cfg.checks.enabled:
                xs, ys = x_chk.to(device), y_chk.to(device)
                per_tm_checks.append(attack_checks(model, xs, ys, tm, summ, cfg.checks, cfg.batch_size,
                                                   data.num_classes, cfg.seed))
        if bar:
            bar.close()
        if dist.main:
            if cfg.checks.enabled:
                xs, ys = x_chk.to(device), y_chk.to(device)
                entry["checks"] = model_checks(model, xs, ys, cfg.checks, cfg.batch_size) + merge(per_tm_checks)
            models_out.append(entry)
        del model
    if not dist.main:
        return None
    data_info = {"dataset": cfg.data.dataset, "split": cfg.data.split, "n": len(data),
                 "num_classes": data.num_classes, "shape": list(data.image_shape),
                 "fingerprint": fingerprint(data.images, data.labels)}
    gates = evaluate_gates({"models": models_out, "data": data_info}, cfg.gates, baseline)
    return build_report(config=config_dict(cfg), data=data_info, models=models_out, gates=gates, device=device,
                        world=dist.world, total_s=time.perf_counter() - t_start, attack_s=attack_s,
                        time_saved_s=saved_s).to_dict()
