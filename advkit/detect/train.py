"""Train a fake-image detector: real/fake sets from :func:`build_realfake`, the one classifier trainer (any
model, any objective: ``pgd`` hardens the detector) with the augmentation applied per batch, then the
evaluation on the test split. The model is the trainer's ``model.safetensors``: an advkit 2-class classifier
(0 real, 1 fake) that ``advkit detect`` loads as it is."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Callable, cast

import torch
import yaml
from torch import nn

from advkit.config import to_dict, to_yaml
from advkit.data import ArrayDataset, StreamDataset
from advkit.data.transforms import Augment
from advkit.detect.config import DetectorConfig
from advkit.detect.data import RealFakeConfig, RealFakeStream, build_realfake, data_name
from advkit.detect.evaluate import evaluate_detector
from advkit.detect.report import data_info, detection_report, detector_entry
from advkit.errors import AdvkitError
from advkit.models import RUN_CHECKPOINT, ensemble, save
from advkit.report import write_reports
from advkit.runtime.device import resolve_device
from advkit.runtime.distributed import init_distributed, is_main_process, shutdown
from advkit.runtime.io import atomic_write_json, atomic_write_text
from advkit.train.trainer import BatchTransform, checkpoint_metadata, train_classifier

log = logging.getLogger(__name__)
REPORT = "detect_report.json"
CONFIG = "detector.yaml"
# sections that must not change between a run and its resumption (train.* is checked by the trainer)
FIXED_ON_RESUME = ("data", "augment")
# keys of data that may: decoding processes change nothing; skip_bad neither, as a run that met an unreadable
# file without it stopped before training (build_realfake reads the training split once first)
RESUMABLE_DATA = ("num_workers", "skip_bad")


def augment_batch(aug: Augment) -> BatchTransform | None:
    """The trainer's ``batch_transform`` for ``aug``.

    Args:
        aug: the detector-training augmentation.

    Returns:
        ``(x, generator) -> x``: float [0,1] -> uint8 (rounded, as the images were stored) -> ``aug`` ->
        float; None when every probability is 0 (nothing to do).
    """
    if not any((aug.blur_prob, aug.jpeg_prob, aug.crop_prob, aug.flip_prob)):
        return None

    def transform(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        u8 = x.mul(255).round_().clamp_(0, 255).to(torch.uint8)
        return aug(u8, gen).float().div_(255)

    return transform


def data_summary(sets: dict[str, ArrayDataset] | dict[str, ArrayDataset | RealFakeStream], cfg: RealFakeConfig
                 ) -> dict:
    """What a detector report says about its data.

    Args:
        sets: the ``train``/``val``/``test`` sets from :func:`advkit.detect.data.build_realfake`.
        cfg: the real/fake data config.

    Returns:
        Counts per split (real, fake, per fake source), the fake sources, image shape and debiasing.
    """
    generators = list(sets["train"].meta.get("generators", []))
    splits = {}
    for sp, ds in sets.items():
        n_fake = int(ds.labels.sum())
        by_source = Counter(ds.meta.get("generator", []))
        splits[sp] = {"n": len(ds), "real": len(ds) - n_fake, "fake": n_fake,
                      "per_generator": {g: by_source[g] for g in generators}}
    return {"generators": generators, "debias_jpeg": cfg.debias_jpeg, "split": cfg.split,
            "image_shape": list(sets["train"].image_shape), "splits": splits}


def _check_resume(out: Path, cfg: DetectorConfig) -> None:
    """A resumed run must train on the same data with the same augmentation as the run it continues."""
    path = out / CONFIG
    if not (out / "last.ckpt").is_file() or not path.is_file():
        return
    before = yaml.safe_load(path.read_text()) or {}
    now = to_dict(cfg)
    for d in (before, now):
        for k in RESUMABLE_DATA:
            (d.get("data") or {}).pop(k, None)
    diff = [k for k in FIXED_ON_RESUME if before.get(k) != now[k]]
    if diff:
        raise AdvkitError(f"cannot resume {out}: it was trained with other {' and '.join(diff)} settings "
                          f"(see {path})")


def member_dir(out: Path, k: int) -> Path:
    """Where member ``k`` of an ensemble detector trains (its own trainer outputs and ``last.ckpt``).

    Args:
        out: the detector's run folder.
        k: the member's index, from 0.

    Returns:
        ``out/member<k>``.
    """
    return out / f"member{k}"


def _train_members(cfg: DetectorConfig, out: Path | None, datasets: tuple[ArrayDataset | StreamDataset, ArrayDataset],
                   progress: bool, resume: bool, on_epoch) -> tuple[nn.Module, dict]:
    """One trainer run, or with ``cfg.ensemble`` > 1 one per member (seed ``train.seed + k``, outputs in
    ``OUT/memberK``, each resumable) and their logit average saved as ``OUT/model.safetensors``. The
    metrics are the trainer's, or ``{"members": [each member's]}``; ``on_epoch`` sees ``member`` too."""
    transform = augment_batch(cfg.augment)
    if cfg.ensemble == 1:
        return train_classifier(cfg.train, out, progress=progress, resume=resume, on_epoch=on_epoch,
                                datasets=datasets, batch_transform=transform)
    models, member_metrics = [], []
    # under torchrun the process group is joined once for all members (each trainer run keeps it)
    d = init_distributed(resolve_device(cfg.train.device).type)
    try:
        for k in range(cfg.ensemble):
            seed = cfg.train.seed + k
            log.info("ensemble member %d of %d (seed %d)", k + 1, cfg.ensemble, seed)
            hook = None if on_epoch is None else (lambda m, k=k: on_epoch({**m, "member": k}))
            model, m = train_classifier(dataclasses.replace(cfg.train, seed=seed),
                                        member_dir(out, k) if out is not None else None, progress=progress,
                                        resume=resume, on_epoch=hook, datasets=datasets, batch_transform=transform,
                                        kind="detector")
            models.append(model)
            member_metrics.append({**m, "seed": seed})
    finally:
        shutdown(d)
    model, metrics = ensemble(models), {"members": member_metrics}
    if out is not None and d.main:
        save(model, out / RUN_CHECKPOINT, kind="detector",
             **checkpoint_metadata(to_dict(cfg.train), datasets[0].name, datasets[0], metrics),
             ensemble=cfg.ensemble)
    return model, metrics


def train_detector(cfg: DetectorConfig, out_dir: str | Path | None = None, *, progress: bool = False,
                   resume: bool = False, on_epoch: Callable[[dict], None] | None = None) -> tuple[nn.Module, dict]:
    """Build the data, train (per-epoch metrics are on the val split), evaluate on the test split.

    With ``out_dir``: the trainer's outputs (``model.safetensors``, ``metrics.jsonl``, ``last.ckpt``, ...),
    ``detector.yaml`` (this config), ``detect_report.json`` (config, data summary, training metrics,
    evaluation) and the harness's ``report.json`` / ``.md`` / ``.html`` / ``junit.xml`` (the evaluation as a
    detector entry, ``cfg.gates`` evaluated), all written atomically.

    Args:
        cfg: the detector config: data, training, augmentation, evaluation, gates.
        out_dir: the run folder; None writes nothing.
        progress: show progress bars.
        resume: continue from the run folder's ``last.ckpt`` (same data and augmentation required).
        on_epoch: called on rank 0 with each epoch's metrics (``member`` added for ensembles).

    Returns:
        The model (eval mode) and ``detect_report.json``'s dict with the harness report under
        ``"report"``.

    Raises:
        AdvkitError: data that cannot be built or split, a run that cannot be resumed, or a training error.
    """
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and resume:
        _check_resume(out, cfg)
    # imagefolder:/csv: images of the training split stay on disk, read per batch by the trainer's workers
    sets = build_realfake(cfg.data, root=cfg.data_root, stream=True)
    val, test = cast(ArrayDataset, sets["val"]), cast(ArrayDataset, sets["test"])  # (only train streams)
    for sp, hint in (("val", "data.val_frac"), ("test", "data.test_frac")):
        ds = sets[sp]
        if len(ds) == 0 or not 0 < int(ds.labels.sum()) < len(ds):
            raise AdvkitError(f"the {sp} split is empty or holds one class ({len(ds)} images); raise {hint} "
                              f"or n_per_class")
    train = dataclasses.replace(sets["train"], name=data_name(cfg.data))
    if out is not None:
        atomic_write_text(out / CONFIG, to_yaml(cfg))
    model, metrics = _train_members(cfg, out, (train, val), progress, resume, on_epoch)
    if not is_main_process():  # under torchrun, rank 0 evaluates and reports
        return model, {"training": metrics}
    device = next(model.parameters()).device
    t0 = time.perf_counter()
    evaluation = evaluate_detector(model, test, val, cfg.evaluation, device, seed=cfg.train.seed,
                                   batch_size=cfg.train.eval_batch_size)
    model_file = str(out / RUN_CHECKPOINT) if out is not None else None
    source = model_file or cfg.train.model.name
    config = to_dict(cfg)
    harness = detection_report(config=config, data=data_info(train.name, test),
                               models=[detector_entry(out.name if out is not None else "detector", source,
                                                      evaluation)],
                               gates=cfg.gates, device=device, total_s=time.perf_counter() - t0)
    report = {"kind": "detector", "config": config, "data": data_summary(sets, cfg.data),
              "training": metrics, "evaluation": evaluation,
              "model": model_file}
    if out is not None:
        write_reports(harness, out)  # report.json/.md/.html, junit.xml: the harness's formats and gates
        atomic_write_json(out / REPORT, report)
    report["report"] = harness
    log.info("detector: clean AUC %.4f on %d test images", evaluation["clean"]["auc"], evaluation["n_test"])
    return model, report
