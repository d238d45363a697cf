"""``run_eval``: models x threat models x attack suites -> one report dict (schema in :mod:`advkit.report`).

Data in memory and data streamed from disk (``imagefolder:``, ``csv:``) share one batch loop. The samples are
sharded over ``torchrun`` ranks by batch; rank 0 gathers the per-batch results, runs the
sanity checks and builds the report, which matches a single-process run except for timings.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, cast

import torch
from torch import nn

from advkit.data import ArrayDataset, Batch, StreamDataset, bad_files_error, head, iter_batches, open_dataset
from advkit.data.stream import stream_fingerprint
from advkit.errors import AdvkitError
from advkit.eval.checks import attack_checks, merge, model_checks
from advkit.eval.config import EvalConfig, ModelSpec, config_dict
from advkit.eval.gates import evaluate_gates
from advkit.eval.suite import BatchResult, run_batches, summarize
from advkit.models.ensemble import Ensemble
from advkit.models.resolve import check_model_fits
from advkit.report import build_report, environment  # noqa: F401  (environment: kept importable here)
from advkit.report.paired import encode_fooled_by, fingerprint
from advkit.report.stats import wilson_interval
from advkit.runtime.distributed import Dist
from advkit.runtime.journal import Journal, fingerprint_of

log = logging.getLogger(__name__)


def load_model(spec: ModelSpec, data: ArrayDataset, device: torch.device,
               say: Callable[[str], None] = log.warning) -> nn.Module:
    """The model (or the ensemble of models, their logits averaged) that ``spec`` names.

    Args:
        spec: the model entry of the config; each source goes through :func:`advkit.train.default.resolve`
            (a checkpoint, ``default``, a model name, ``timm:``/``torchvision:`` with ``weights``, ``py:``,
            TorchScript), ``model`` with the entry's ``weights``, ``num_classes``, ``mean``, ``std``, ``input_size``.
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
    return resolve(spec.model, data, device, say, options=spec.options())


def _png(ex: tuple[torch.Tensor, ...], classes: Sequence[str], title: str) -> str:
    """A worst-case example grid as base64 PNG; ``ex`` is (x, x_adv, y, pred_clean, pred_adv)."""
    from advkit.viz.grid import adversarial_grid_png

    x, x_adv, y, pred_clean, pred_adv = ex
    png = adversarial_grid_png(x, x_adv, y, pred_clean, pred_adv, classes, n=x.shape[0], title=title)
    return base64.b64encode(png).decode()


class _FirstPass:
    """What the first pass over streamed data saw: per-sample digests and labels (the fingerprint, the sample
    count) and the unreadable files; a fatal unreadable file stops the attacks but not the reading, so the error
    lists every bad file at once."""

    def __init__(self) -> None:
        self.done = False
        self.digests: dict[int, bytes] = {}
        self.labels: dict[int, torch.Tensor] = {}
        self.bad: list[tuple[str, str]] = []
        self.view: StreamDataset | None = None  # the data as the first model saw it

    def watch(self, batches: Iterable[Batch], view: StreamDataset) -> Iterator[Batch]:
        self.view = view
        for b in batches:
            self.digests[b.batch_index], self.labels[b.batch_index] = b.digests, b.y
            self.bad += b.bad
            if self.bad and not view.skip_bad:
                continue  # read on to list every bad file; attack nothing more
            yield b

    def finish(self, dist: Dist) -> None:
        if dist.enabled:
            parts: list = [None] * dist.world
            torch.distributed.all_gather_object(parts, (self.digests, self.labels, self.bad))
            self.digests = {k: v for p in parts for k, v in p[0].items()}
            self.labels = {k: v for p in parts for k, v in p[1].items()}
            self.bad = [b for p in parts for b in p[2]]
        self.done = True
        data = cast(StreamDataset, self.view)
        if self.bad and not data.skip_bad:
            raise bad_files_error(sorted(self.bad), data.name)
        if not self.labels or not sum(len(y) for y in self.labels.values()):
            raise AdvkitError(f"{data.name}: none of its {len(data)} file(s) is a readable image")

    def data_info(self, cfg: EvalConfig) -> dict[str, Any]:
        data = cast(StreamDataset, self.view)
        order = sorted(self.labels)
        labels = torch.cat([self.labels[i] for i in order])
        fp = stream_fingerprint(b"".join(self.digests[i] for i in order), labels, data.image_shape)
        return {"dataset": cfg.data.dataset, "split": cfg.data.split, "n": len(labels),
                "num_classes": data.num_classes, "shape": list(data.image_shape), "fingerprint": fp,
                "classes": list(data.classes),
                "transform": {"input_size": data.size, "crop_pct": data.crop_pct, "interpolation": data.interpolation},
                "skipped": [data.relative(p) for p, _ in sorted(self.bad)]}


def _journal_hooks(journal: Journal | None, prefix: str) -> tuple[Callable[[int], BatchResult | None] | None,
                                                                 Callable[[BatchResult], None] | None]:
    """``run_batches``' ``done`` and ``on_result`` over ``journal`` (None: no progress is kept)."""
    if journal is None:
        return None, None

    def done(i: int) -> BatchResult | None:
        st = journal.get(f"{prefix}-b{i}")
        if st is None:
            return None
        return BatchResult(index=st["index"], correct=st["correct"], fooled_by=st["fooled_by"], stats=st["stats"],
                           gradient_free_only=st["gradient_free_only"],
                           examples=[tuple(ex) for ex in st["examples"]])

    def on_result(b: BatchResult) -> None:
        journal.put(f"{prefix}-b{b.index}", {"index": b.index, "correct": b.correct, "fooled_by": b.fooled_by,
                                             "stats": b.stats, "gradient_free_only": b.gradient_free_only,
                                             "examples": [list(ex) for ex in b.examples]})

    return done, on_result


def run_eval(cfg: EvalConfig, *, device: torch.device, dist: Dist = Dist(), baseline: dict[str, Any] | None = None,
             progress: bool = False, say: Callable[[str], None] = log.warning,
             models: Sequence[tuple[str, nn.Module]] | None = None,
             data: ArrayDataset | StreamDataset | None = None, progress_dir: str | Path | None = None,
             resume: bool = False) -> dict[str, Any] | None:
    """Run the whole evaluation: every model under every threat model's suite, the checks and the gates.

    In-memory and streamed data (``imagefolder:``, ``csv:``) go through one batch loop
    (:func:`advkit.eval.suite.run_batches` over :func:`advkit.data.iter_batches`); streamed images are resized
    and cropped to each model's input size (:meth:`advkit.data.StreamDataset.for_model`) and never held whole.

    Args:
        cfg: the evaluation config.
        device: where the models run.
        dist: the process group (batches are sharded over its ranks).
        baseline: an earlier report for the ``max_drop`` gates, or None.
        progress: show a progress bar on rank 0.
        say: told how each model was resolved.
        models: already-built ``(label, model)`` pairs (in eval mode on ``device``) evaluated instead of
            ``cfg.models`` (``advkit.evaluate``); None: resolve ``cfg.models``.
        data: an already-opened dataset (in memory or streamed) used instead of ``cfg.data`` (still cut to
            ``cfg.data.n``).
        progress_dir: where each finished batch's results are stored as the run goes (``OUT/.eval_progress``);
            None stores nothing.
        resume: take back the batches an interrupted run with the same config, models and data stored in
            ``progress_dir`` (the report equals an uninterrupted run's, timings aside).

    Returns:
        The report's dict on rank 0, None on the other ranks.

    Raises:
        AdvkitError: the data is empty or has unreadable files (unless ``data.skip_bad``), a targeted attack meets
            a model with fewer than 3 classes, or a model does not fit the data.
    """
    t_start = time.perf_counter()
    d = cfg.data
    if data is None:
        data = open_dataset(d.dataset, d.split, root=d.root, skip_bad=d.skip_bad, num_workers=d.num_workers,
                            input_size=d.input_size, crop_pct=d.crop_pct, interpolation=d.interpolation)
    data = data.subset(d.n)
    if len(data) == 0:
        raise AdvkitError(f"{d.dataset} ({d.split}) has no samples")
    suites = [(tm, tm.suite()) for tm in cfg.threat_models]
    for _tm, suite in suites:
        for atk_spec in suite:
            if atk_spec.targeted and data.num_classes < 3:
                raise AdvkitError(f"attack {atk_spec.label!r} is targeted, but a {data.num_classes}-class model has "
                                  f"no other class to target than the one an untargeted attack already seeks")
    journal = None
    if progress_dir is not None:  # results depend on the config, the data and (below, per model) the weights
        data_fp = fingerprint(data.images, data.labels) if isinstance(data, ArrayDataset) else None
        journal = Journal(progress_dir, fingerprint_of({"config": config_dict(cfg), "data": data_fp}),
                          resume=resume, writes=dist.main)
    first = _FirstPass()
    models_out, attack_s, saved_s = [], 0.0, 0.0
    jobs: list[tuple[str, nn.Module | ModelSpec]] = [*models] if models is not None else [
        (s.label, s) for s in cfg.models]
    for label, what in jobs:
        # resolve reads only classes, image shape, mean and std, which a StreamDataset has too
        model = what if isinstance(what, nn.Module) else load_model(what, cast(ArrayDataset, data), device, say)
        view = (data.for_model(model, input_size=d.input_size, crop_pct=d.crop_pct, interpolation=d.interpolation)
                if isinstance(data, StreamDataset) else data)
        n_chk = cfg.checks.n if cfg.checks.enabled else 0
        x_chk, y_chk = head(view, max(n_chk, 2))
        if len(x_chk):  # streamed: the first files may all be unreadable; the batch loop reports them
            check_model_fits(model, x_chk[:2].to(device), data.num_classes, label, data.name)
        x_chk, y_chk = x_chk[:n_chk], y_chk[:n_chk]
        source = what.model or list(what.ensemble) if isinstance(what, ModelSpec) else f"python:{type(what).__name__}"
        entry: dict[str, Any] = {"name": label, "source": source, "n": len(data),
                 "threat_models": [], "checks": [], "examples": []}
        if getattr(model, "origin", None):
            entry["loaded"] = model.origin  # form, file and sha256, normalization, input size (models.resolve)
        per_tm_checks: list[dict[str, dict[str, Any]]] = []
        bar = None
        if progress and dist.main:
            from tqdm.auto import tqdm
            n_batches = -(-len(data) // cfg.batch_size)
            bar = tqdm(total=len(suites) * -(-n_batches // dist.world), desc=f"eval {label}", unit="batch")
        model_fp = fingerprint_of([label, entry.get("loaded") or source])
        for k, (tm, suite) in enumerate(suites):
            done, on_result = _journal_hooks(journal, f"{label}-{model_fp}-tm{k}")
            feed: Iterable[Batch] = iter_batches(view, cfg.batch_size, rank=dist.rank, world=dist.world,
                                                 pin_memory=device.type == "cuda")
            watching = isinstance(view, StreamDataset) and not first.done  # the first pass over streamed data
            if watching:
                feed = first.watch(feed, cast(StreamDataset, view))
            batches = run_batches(model, feed, norm=tm.norm, eps_list=tm.eps, suite=suite, mode=cfg.mode,
                                  seed=cfg.seed, num_classes=data.num_classes, device=device, n_examples=cfg.examples,
                                  on_batch=bar.update if bar else None, done=done, on_result=on_result)
            if watching:
                first.finish(dist)
            if dist.enabled:
                gathered: list = [None] * dist.world
                torch.distributed.all_gather_object(gathered, batches)
                batches = [b for part in gathered for b in part]
            if not dist.main:
                continue
            n = sum(len(b.correct) for b in batches)
            summ = summarize(batches, n=n, eps_list=tm.eps, suite=suite, mode=cfg.mode)
            summ["n"] = n
            entry["n"] = n
            # one character per sample and eps (report.paired): a 10,000-sample run stays a few lines of JSON
            summ["per_sample"] = {"fooled_by": encode_fooled_by(summ["per_sample"]["fooled_by"])}
            clean_correct = summ.pop("clean_correct")
            entry["clean_acc"] = clean_correct / n
            entry["clean_acc_ci"] = wilson_interval(clean_correct, n)
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
    if isinstance(data, StreamDataset):
        data_info = first.data_info(cfg)
    else:
        data_info = {"dataset": d.dataset, "split": d.split, "n": len(data), "num_classes": data.num_classes,
                     "shape": list(data.image_shape), "fingerprint": fingerprint(data.images, data.labels)}
    gates = evaluate_gates({"models": models_out, "data": data_info}, cfg.gates, baseline)
    return build_report(config=config_dict(cfg), data=data_info, models=models_out, gates=gates, device=device,
                        world=dist.world, total_s=time.perf_counter() - t_start, attack_s=attack_s,
                        time_saved_s=saved_s).to_dict()
