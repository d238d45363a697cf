"""The training loop: one for every model kind; the objective decides what a step optimizes.

Per epoch: train, then clean and PGD accuracy on a fixed held-out subset, the catastrophic-overfitting
guard for one-step objectives, a metrics line (JSON lines, always; TensorBoard when installed) and an
atomic resume checkpoint. Runs on CPU or CUDA (AMP, channels_last, torch.compile) and under torchrun (DDP).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from pathlib import Path
from typing import Callable, cast

import torch
import torch.nn.functional as F
from torch import nn

from advkit.attacks import pgd
from advkit.config import to_dict
from advkit.data import ArrayDataset, Batch, StreamDataset, bad_files_error, open_dataset
from advkit.data.core import batch_order
from advkit.data.stream import iter_index_batches, spread
from advkit.errors import AdvkitError
from advkit.models import RUN_CHECKPOINT, Normalized, create_model, save
from advkit.runtime import faults
from advkit.runtime.device import resolve_device, seed_everything
from advkit.runtime.distributed import Dist, init_distributed, shutdown
from advkit.runtime.run import (
    MID_EPOCH,
    RunFolder,
    cpu_state,
    deterministic,
    ema_update,
    epoch_order_state,
    progress_bar,
    restore_rng,
    rng_state,
    skip_done_steps,
)
from advkit.runtime.signals import StopFlag, graceful
from advkit.train.config import TrainConfig
from advkit.train.objectives import get_objective
from advkit.train.schedules import make_scheduler

# ``batch_transform(x, generator) -> x'``: float [B,C,H,W] in [0,1] on the CPU, same shape and range out
BatchTransform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

log = logging.getLogger(__name__)
ONE_STEP = ("fgsm", "fgsm_rs")
# keys that may change between a run and its resumption
# (data.skip_bad: a run that completed an epoch without it met no unreadable file, so turning it on to resume
# a run stopped by one changes nothing that was trained)
RESUMABLE_CHANGES = {"device", "data.root", "tensorboard", "eval_batch_size", "data.num_workers", "data.skip_bad"}


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, data: ArrayDataset, batch_size: int = 1000,
                      device: torch.device | str = "cpu") -> float:
    """Clean top-1 accuracy of ``model`` on ``data``; the model's mode is restored afterwards.

    Args:
        model: ``f(x in [0,1]) -> logits``.
        data: the images and labels.
        batch_size: images per forward pass.
        device: where ``model`` is.

    Returns:
        The fraction correct, in [0, 1] (0 on empty data).
    """
    was = model.training
    model.eval()
    correct = 0
    for x, y in data.batches(batch_size):
        correct += (model(x.to(device)).argmax(1).cpu() == y).sum().item()
    model.train(was)
    return correct / max(len(data), 1)


def _accuracies(model: nn.Module, data: ArrayDataset, idx: torch.Tensor, eps: float, steps: int, restarts: int,
                batch_size: int, device: torch.device, autocast, seed: int, d: Dist) -> tuple[float, float | None]:
    """Clean and PGD accuracy over ``idx`` (sharded across ranks, counts summed). Seeded: the same model
    gives the same numbers, and training's random streams are untouched."""
    was = model.training
    model.eval()
    gen = torch.Generator(device=device).manual_seed(seed)
    clean = robust = 0.0
    for x, y in data.batches(batch_size, indices=idx[d.rank::d.world]):
        x, y = x.to(device), y.to(device)
        with autocast():
            with torch.no_grad():
                clean += (model(x).argmax(1) == y).sum().item()
            if eps > 0:
                xa = pgd(model, x, y, eps=eps, steps=steps, restarts=restarts, generator=gen)
                with torch.no_grad():
                    robust += (model(xa).argmax(1) == y).sum().item()
    model.train(was)
    clean, robust = d.all_sum([clean, robust], device)
    n = max(len(idx), 1)
    return clean / n, (robust / n if eps > 0 else None)


def _optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum, nesterov=o.nesterov,
                               weight_decay=o.weight_decay)
    cls = torch.optim.Adam if o.name == "adam" else torch.optim.AdamW
    return cls(model.parameters(), lr=o.lr, weight_decay=o.weight_decay)


def build_model(cfg: TrainConfig, data: ArrayDataset | StreamDataset) -> Normalized:
    """The model ``cfg.model`` names, shaped for ``data`` (classes, channels, size) and freshly initialised.

    Args:
        cfg: the training config.
        data: the training data; its mean and std become the model's normalization when
            ``cfg.model.normalize`` is set.

    Returns:
        The model.

    Raises:
        AdvkitError: non-square images, or a normalization asked for a model that scales its input itself.
    """
    c, h, w = data.image_shape
    if h != w:
        raise AdvkitError(f"{data.name}: square images expected, got {h}x{w}")
    if cfg.model.num_classes is not None and cfg.model.num_classes != data.num_classes:
        raise AdvkitError(f"model.num_classes is {cfg.model.num_classes} but {data.name} has {data.num_classes} "
                          f"classes")
    norm = cfg.model.normalize and (data.mean is not None or cfg.model.mean is not None)
    given = cfg.model.mean is not None
    mean = list(cfg.model.mean or ()) if given else data.mean
    std = list(cfg.model.std or ()) if given else data.std
    if norm and mean is not None and std is not None and len(mean) == 1 and c > 1:
        mean, std = list(mean) * c, list(std) * c
    model = create_model(cfg.model.name, num_classes=data.num_classes, in_chans=c, input_size=h,
                         mean=mean if norm else None, std=std if norm else None, **cfg.model.kwargs)
    if norm and getattr(model.net, "raw_pixels", False):
        raise AdvkitError(f"model {cfg.model.name!r} scales its [0,1] input itself; set normalize: false under "
                          f"model (train.model in a detector config)")
    return model


def load_init(model: Normalized, path: str | Path, *, new_head: bool = False) -> None:
    """Copy the weights of a classifier checkpoint, or of a plain weights file, into ``model`` (``train.init``).

    Every tensor name and shape must match. A normalization that differs from the checkpoint's only warns
    (the data may differ).

    Args:
        model: the model to initialise, in place.
        path: a ``.safetensors`` advkit checkpoint, a run folder holding ``model.safetensors``, or plain
            weights for ``model``'s network (safetensors or a torch state dict: see
            :func:`advkit.models.external.load_weights`), e.g. ImageNet weights for ``timm:NAME``.
        new_head: a plain weights file's classifier head of another class count starts fresh
            (``model.num_classes`` given) instead of being an error.

    Raises:
        AdvkitError: a missing or foreign checkpoint, or one that does not fit (the first tensor that does
            not is named).
    """
    from safetensors.torch import load_file

    from advkit.models import checkpoint_file, read_metadata
    from advkit.models.external import is_advkit_checkpoint, load_weights

    p = checkpoint_file(path)
    if not p.is_file():
        raise AdvkitError(f"train.init: checkpoint not found: {p}")
    if not is_advkit_checkpoint(p):
        load_weights(model.net, p, new_head=new_head, say=log.warning,
                     hint=f"set model.num_classes: {model.spec.get('num_classes')} (--num-classes) to start a new head")
        return
    meta = read_metadata(p)  # refuses GAN checkpoints and foreign files
    state, own = load_file(str(p)), model.state_dict()
    arch = meta["model"]["arch"]
    for name in own:
        if name not in state:
            raise AdvkitError(f"train.init {p} (a {arch!r}) does not fit model {model.spec['arch']!r}: it has no "
                              f"{name}")
        if state[name].shape != own[name].shape:
            raise AdvkitError(f"train.init {p} (a {arch!r}) does not fit model {model.spec['arch']!r}: {name} is "
                              f"{list(state[name].shape)} there, {list(own[name].shape)} here")
    extra = sorted(set(state) - set(own))
    if extra:
        raise AdvkitError(f"train.init {p} (a {arch!r}) does not fit model {model.spec['arch']!r}: it has "
                          f"{extra[0]}, which the model lacks")
    if (meta.get("normalization") or None) != model.normalization:
        log.warning("train.init %s was trained with normalization %s, this model has %s", p,
                    meta.get("normalization"), model.normalization)
    model.load_state_dict(state)


def train_classifier(cfg: TrainConfig, out_dir: str | Path | None = None, *, progress: bool = False,
                     resume: bool = False, on_epoch: Callable[[dict], None] | None = None,
                     datasets: tuple[ArrayDataset | StreamDataset, ArrayDataset] | None = None,
                     batch_transform: BatchTransform | None = None, kind: str = "classifier"
                     ) -> tuple[Normalized, dict]:
    """Train a classifier per ``cfg`` (clean or adversarial, one process or under torchrun).

    With ``out_dir``, rank 0 writes ``config.yaml``, ``metrics.jsonl``, the resume checkpoint ``last.ckpt``
    every epoch, ``best.safetensors`` and the final ``model.safetensors`` (+ ``.json``). With
    ``cfg.deterministic`` set, deterministic algorithms are on for the run and the previous mode comes back
    when it ends.

    Args:
        cfg: the training config.
        out_dir: the run folder; ``None`` writes nothing.
        progress: show a progress bar per epoch.
        resume: continue from ``out_dir/last.ckpt`` when it exists (it must hold the same config).
        on_epoch: called on rank 0 with each epoch's metrics.
        datasets: ``(train, eval)`` instead of loading ``cfg.data`` (only ``data.augment`` still applies;
            the checkpoints' ``dataset`` is ``train.name``): a hook for trainers built on this one (the
            detector trainer). A :class:`advkit.data.StreamDataset` ``train`` is read batch by batch (its own
            ``num_workers`` and ``skip_bad``), as ``imagefolder:``/``csv:`` data are.
        batch_transform: ``(x, generator) -> x`` applied to every training batch (float [0,1], on the CPU,
            before the move to the device). Its generator is seeded from ``cfg.seed`` and saved in
            ``last.ckpt``, so a resumed run draws what an uninterrupted one would.
        kind: what the checkpoints record (``detector`` for a real/fake model).

    Returns:
        The final model (eval mode, on the training device) and the last epoch's metrics.

    Raises:
        AdvkitError: a bad config (e.g. fp16 on the CPU, a batch size that does not divide over the
            processes), a diverged loss, or a checkpoint that cannot be resumed.
    """
    device = resolve_device(cfg.device)
    d = init_distributed(device.type)
    try:
        if device.type == "cuda" and d.enabled:
            device = torch.device("cuda", d.local_rank)
            torch.cuda.set_device(device)
        if cfg.amp == "fp16" and device.type != "cuda":
            raise AdvkitError("amp fp16 needs a CUDA device; use amp=bf16 or none on the CPU")
        if cfg.batch_size % d.world:
            raise AdvkitError(f"batch_size {cfg.batch_size} must divide evenly over {d.world} processes")
        seed_everything(cfg.seed)
        with deterministic(cfg.deterministic):
            run = _Run(cfg, out_dir=out_dir, resume=resume, device=device, d=d, datasets=datasets,
                       batch_transform=batch_transform, kind=kind)
            return run.fit(progress=progress, on_epoch=on_epoch)
    finally:
        shutdown(d)


class _Run:
    """One classifier training run: the state its steps share. The constructor builds it in a fixed order
    (data, the model's random initialisation, the optimizer, the random streams, then a resume), so a run
    draws the same numbers every time."""

    def __init__(self, cfg: TrainConfig, *, out_dir: str | Path | None, resume: bool, device: torch.device,
                 d: Dist, datasets: tuple[ArrayDataset | StreamDataset, ArrayDataset] | None,
                 batch_transform: BatchTransform | None, kind: str = "classifier"):
        self.kind = kind
        self.cfg, self.o, self.device, self.d, self.batch_transform = cfg, cfg.objective, device, d, batch_transform
        self._load_data(datasets)
        self.loss_fn = _smoothed_loss(cfg.label_smoothing)
        self.objective = self._objective_at(cfg.epochs)  # validates the config before any work
        self.folder = RunFolder(out_dir, main=d.main)
        resuming = self.folder.resuming(resume)
        if self.o.classes is not None and max(self.o.classes) >= self.train_all.num_classes:
            raise AdvkitError(f"objective.classes: label {max(self.o.classes)} does not exist in "
                              f"{self.train_all.name} ({self.train_all.num_classes} classes)")
        self._build_nets(init=None if resuming else cfg.init)  # a resumed run takes its weights from last.ckpt
        self._build_optimizer()
        self.shuffle_gen = torch.Generator().manual_seed(cfg.seed)
        self.attack_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
        self.transform_gen = torch.Generator().manual_seed(cfg.seed + 4 + d.rank)  # ranks see different batches
        self.cfg_dict = to_dict(cfg)
        self.start_epoch, self.best_metric, self.best_epoch = 1, -1.0, 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.mid: dict | None = None  # where a checkpoint written inside an epoch stopped
        self.stop = StopFlag()
        if resuming:
            self._restore()
        self.folder.write_config(cfg)
        self.writer = self._tensorboard()

    # ------------------------------------------------------------------ set-up

    def _load_data(self, datasets: tuple[ArrayDataset | StreamDataset, ArrayDataset] | None) -> None:
        cfg, o = self.cfg, self.o
        self.train_all: ArrayDataset | StreamDataset
        if datasets is not None:
            self.train_all, self.test = datasets
            self.data_name = self.train_all.name
        else:
            dc = cfg.data
            train_all, test = (open_dataset(dc.dataset, split, root=dc.root, download=dc.download,
                                            skip_bad=dc.skip_bad, num_workers=dc.num_workers,
                                            input_size=dc.input_size, crop_pct=dc.crop_pct,
                                            interpolation=dc.interpolation) for split in ("train", "test"))
            # imagefolder:/csv: stay on disk, read per batch. Their files are listed class by class, so a limit
            # or a held-out slice takes evenly spaced files (every class), not the first or last ones.
            if isinstance(train_all, StreamDataset):
                limit = len(train_all) if dc.train_limit is None else dc.train_limit
                self.train_all = train_all.take(spread(len(train_all), limit))
            else:
                self.train_all = train_all.subset(dc.train_limit)
            if isinstance(test, StreamDataset):
                # only eval.n test images are ever evaluated, every epoch: those are held in memory
                limit = cfg.eval.n if dc.test_limit is None else min(cfg.eval.n, dc.test_limit)
                test = _materialize(test.take(spread(len(test), limit)))
            self.test = test.subset(dc.test_limit)
            self.data_name = cfg.data.dataset
        n = len(self.train_all)
        self.guard_on = cfg.guard.enabled and o.name in ONE_STEP and o.eps > 0
        n_guard = min(cfg.guard.n, n // 5) if self.guard_on else 0  # the guard's held-out training images
        self.train_idx, self.guard_idx = torch.arange(n - n_guard), torch.arange(n - n_guard, n)
        self.guard_data: ArrayDataset | StreamDataset = self.train_all
        if isinstance(self.train_all, StreamDataset) and n_guard:
            # the guard's images are read every epoch: held in memory, at most guard.n of them, evenly spaced
            # over the (class-ordered) files so that every class keeps its share of the training set
            held = spread(n, n_guard)
            keep = torch.ones(n, dtype=torch.bool)
            keep[held] = False
            self.train_idx = torch.arange(n)[keep]
            self.guard_data = _materialize(self.train_all.take(held))
            self.guard_idx = torch.arange(len(self.guard_data))
        self.eval_idx = torch.arange(min(cfg.eval.n, len(self.test)))
        self.eval_eps = o.eps if cfg.eval.eps is None else cfg.eval.eps

    def _ramp(self, epoch: int) -> float:
        """The fraction of ``eps`` trained at ``epoch``: with ``eps_ramp`` the radius grows linearly over the
        first epochs (a strong adversary on an untrained net can pin it at the class prior, as PGD training at
        eps 0.3 does)."""
        o = self.o
        return min(1.0, epoch / o.eps_ramp) if o.eps_ramp > 0 else 1.0

    def _objective_at(self, epoch: int):
        o, frac = self.o, self._ramp(epoch)
        return get_objective(o.name, eps=o.eps * frac, alpha=None if o.alpha is None else o.alpha * frac,
                             steps=o.steps, norm=o.norm, mix=o.mix, beta=o.beta, loss_fn=self.loss_fn,
                             classes=o.classes)

    def _build_nets(self, *, init: str | Path | None) -> None:
        cfg, device = self.cfg, self.device
        raw = build_model(cfg, self.train_all)
        if init is not None:
            load_init(raw, init, new_head=cfg.model.num_classes is not None)
            log.info("initialised from %s", init)
        raw = raw.to(device)
        if cfg.channels_last:
            raw = raw.to(memory_format=torch.channels_last)
        self.raw = raw
        self.ema = copy.deepcopy(raw).eval() if cfg.ema else None
        net: nn.Module = raw
        if self.d.enabled:
            net = nn.parallel.DistributedDataParallel(raw, device_ids=[device.index] if device.type == "cuda" else None)
        if cfg.compile:
            net = cast(nn.Module, torch.compile(net))  # compiling a module gives a module (the stub says callable)
        self.net = net

    def _build_optimizer(self) -> None:
        cfg, device = self.cfg, self.device
        self.opt = _optimizer(cfg, self.raw)
        self.drop_last = self.d.enabled  # every rank must see the same number of equal-size steps
        n_train = len(self.train_idx)
        self.steps_per_epoch = n_train // cfg.batch_size + (0 if self.drop_last else bool(n_train % cfg.batch_size))
        if self.steps_per_epoch == 0:
            raise AdvkitError(f"{n_train} training images are fewer than one batch of {cfg.batch_size}")
        self.sched = make_scheduler(self.opt, cfg.schedule, cfg.epochs * self.steps_per_epoch, self.steps_per_epoch)
        amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
        self.autocast = lambda: torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None)
        self.scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16")

    def _generators(self) -> dict[str, torch.Generator]:
        """The run's random streams by their names in ``last.ckpt``."""
        return {"shuffle_rng": self.shuffle_gen, "attack_rng": self.attack_gen, "transform_rng": self.transform_gen}

    def _restore(self) -> None:
        st = self.folder.resume(self.cfg_dict, allowed=RESUMABLE_CHANGES, whole=("model.kwargs",))
        self.raw.load_state_dict(st["model"])
        self.opt.load_state_dict(st["optimizer"])
        self.sched.load_state_dict(st["scheduler"])
        self.scaler.load_state_dict(st["scaler"])
        if self.ema is not None:
            self.ema.load_state_dict(st["ema"])
        # transform_rng is absent from checkpoints written before batch_transform existed
        restore_rng(st, self._generators(), optional=("transform_rng",))
        self.start_epoch, self.best_metric, self.best_epoch = st["epoch"] + 1, st["best_metric"], st["best_epoch"]
        self.best_state = st.get("best_model")
        self.mid = st.get(MID_EPOCH)

    def _tensorboard(self):
        if not (self.folder.writes and self.cfg.tensorboard) or self.folder.out is None:  # (writes: a folder)
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.info("tensorboard not installed: metrics go to metrics.jsonl only")
            return None
        return SummaryWriter(str(self.folder.out / "tb"))

    # ------------------------------------------------------------------ the loop

    @property
    def model_eval(self) -> Normalized:
        """The model that is evaluated, kept and returned: the EMA copy when there is one."""
        return self.ema if self.ema is not None else self.raw

    def fit(self, *, progress: bool, on_epoch: Callable[[dict], None] | None) -> tuple[Normalized, dict]:
        metrics, stopped = self.folder.last_metrics, None
        # SIGINT/SIGTERM stop the run between two steps, after a resumable last.ckpt (one process only: under
        # torchrun the ranks could not agree on the step)
        with graceful(enabled=not self.d.enabled) as self.stop:
            for epoch in range(self.start_epoch, self.cfg.epochs + 1):
                metrics, stopped = self._epoch(epoch, progress=progress)
                self.d.barrier()
                log.info("epoch %d: %s", epoch, json.dumps(metrics))
                if on_epoch is not None and self.d.main:
                    on_epoch(metrics)
                if stopped:
                    break
                if self.stop.requested and epoch < self.cfg.epochs:  # came during the evaluation: last.ckpt is
                    self.stop.stop()                                  # this epoch's, written just now
        if self.writer is not None:
            self.writer.close()
        return self._finish(stopped=stopped, metrics=metrics)

    def _epoch(self, epoch: int, *, progress: bool) -> tuple[dict, dict | None]:
        """Train one epoch, evaluate, track the best epoch, write the metrics line and ``last.ckpt``. Returns
        the epoch's metrics and, when the overfitting guard fired, what it saw."""
        if self.o.eps_ramp > 0:
            self.objective = self._objective_at(epoch)
        t0 = time.perf_counter()
        loss_sum, correct, seen = self._train_epoch(epoch, progress=progress)
        train_time = time.perf_counter() - t0
        t1 = time.perf_counter()
        clean_acc, robust_acc, guard_acc = self._evaluate()
        metrics = {"epoch": epoch, "train_loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1),
                   "clean_acc": clean_acc, "robust_acc": robust_acc, "eval_eps": self.eval_eps,
                   "guard_robust_acc": guard_acc, "lr": self.opt.param_groups[0]["lr"],
                   "train_eps": self.o.eps * self._ramp(epoch),
                   "epoch_time_s": round(train_time, 3), "eval_time_s": round(time.perf_counter() - t1, 3)}
        # guard_acc is set exactly when the guard is on
        score = guard_acc if guard_acc is not None else (robust_acc if robust_acc is not None else clean_acc)
        stopped = self._guard(epoch, score, metrics)
        metrics["best_epoch"] = self.best_epoch
        self.folder.append_metrics(metrics)
        if self.folder.writes:
            if self.writer is not None:
                for k, v in metrics.items():
                    if isinstance(v, (int, float)) and k != "epoch":
                        self.writer.add_scalar(k, v, epoch)
            self.folder.save_checkpoint(self._state(epoch))
        return metrics, stopped

    def _train_epoch(self, epoch: int, *, progress: bool) -> list[float]:
        """One pass over the training indices; returns (loss sum, correct, seen) summed over ranks."""
        cfg, d = self.cfg, self.d
        self.raw.train()
        sums = [0.0, 0.0, 0.0]  # loss*n, correct, n
        mid, self.mid = self.mid, None
        epoch_rng = epoch_order_state(self.shuffle_gen, mid)
        if isinstance(self.train_all, StreamDataset):
            # the order an in-memory run draws; a resumed epoch skips its done steps by index, without decoding
            order = iter(batch_order(self.train_idx, cfg.batch_size, shuffle=True, generator=self.shuffle_gen,
                                     drop_last=self.drop_last))
            step = skip_done_steps(order, self.shuffle_gen, mid)
            batches = self._streamed_batches(list(order))
        else:
            batches = _shard(self.train_all.batches(cfg.batch_size, shuffle=True, generator=self.shuffle_gen,
                                                    drop_last=self.drop_last, indices=self.train_idx), d)
            step = skip_done_steps(batches, self.shuffle_gen, mid)
        if mid is not None:
            sums = list(mid["sums"])
        bar = progress_bar(batches, total=self.steps_per_epoch - step, desc=f"epoch {epoch}/{cfg.epochs}",
                           show=progress and d.main)
        for x, y in bar:
            if len(y):  # (a streamed batch whose files were all unreadable and skipped has nothing to train)
                for i, v in enumerate(self._step(x, y, epoch=epoch)):
                    sums[i] += v
            step += 1
            bar.set_postfix(loss=f"{sums[0] / max(sums[2], 1):.4f}")
            faults.point(f"step:{(epoch - 1) * self.steps_per_epoch + step}")
            if self.stop.requested:
                bar.close()
                self._save_mid_epoch(epoch, step, sums, epoch_rng)
                self.stop.stop()
        return d.all_sum(sums, self.device)

    def _streamed_batches(self, order: list[torch.Tensor]):
        """The batches ``order`` (file indices) of streamed data as ``(x, y)``, decoded ahead in DataLoader
        workers. Unreadable files: with ``data.skip_bad`` left out of their batch (a warning at the epoch's end);
        without it the training stops at the first, reading on through the epoch to list them all in one error.
        """
        d, data = self.d, cast(StreamDataset, self.train_all)
        # each rank decodes only its slice of every global batch (as _shard takes from in-memory batches)
        mine = [b[d.rank::d.world] for b in order] if d.enabled else order
        bad: list[tuple[str, str]] = []
        for b in iter_index_batches(data, mine, pin_memory=self.device.type == "cuda"):
            bad += b.bad
            if bad and not data.skip_bad:
                continue  # read on to list every bad file; train no more
            if d.enabled and not len(b.y):  # the other ranks would wait for this one's gradients forever
                raise AdvkitError(f"{data.name}: every file of a batch is unreadable; under torchrun each rank "
                                  f"needs at least one image per step")
            yield _float(b)
        if bad and not data.skip_bad:
            raise bad_files_error(sorted(bad), data.name)
        if bad:
            log.warning("%s: skipped %d unreadable file(s) this epoch: %s", data.name, len(bad),
                        ", ".join(p for p, _ in sorted(bad)[:3]) + (", ..." if len(bad) > 3 else ""))

    def _save_mid_epoch(self, epoch: int, step: int, sums: list[float], epoch_rng: torch.Tensor) -> None:
        """``last.ckpt`` after ``step`` steps of ``epoch``: what a resumed run needs to take the next step as an
        uninterrupted run would (the epoch's first shuffle state re-draws its order; the sums go on)."""
        if not self.folder.writes:
            return
        state = self._state(epoch - 1)
        state[MID_EPOCH] = {"step": step, "sums": sums, "epoch_shuffle_rng": epoch_rng,
                            "shuffle_rng": self.shuffle_gen.get_state()}
        self.folder.save_checkpoint(state)
        log.warning("stopped in epoch %d after step %d: %s can resume from here", epoch, step,
                    self.folder.checkpoint)

    def _step(self, x: torch.Tensor, y: torch.Tensor, *, epoch: int) -> tuple[float, float, int]:
        """One optimizer step on a batch; returns (loss * n, correct, n)."""
        cfg = self.cfg
        if self.batch_transform is not None:
            x = self.batch_transform(x, self.transform_gen)
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        if cfg.data.augment:
            x = crop_flip(x, self.shuffle_gen)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self.autocast():
            loss, logits = self.objective(self.net, x, y, attack_model=self.raw, generator=self.attack_gen)
        if not torch.isfinite(loss):
            raise AdvkitError(f"training diverged at epoch {epoch}: loss is {loss.item()}")
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.optim.grad_clip:
            self.scaler.unscale_(self.opt)
            nn.utils.clip_grad_norm_(self.raw.parameters(), cfg.optim.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sched.step()
        if self.ema is not None and cfg.ema is not None:  # (an EMA copy exists exactly when cfg.ema is set)
            ema_update(self.ema, self.raw, cfg.ema)
        return loss.item() * len(y), (logits.argmax(1) == y).sum().item(), len(y)

    def _evaluate(self) -> tuple[float, float | None, float | None]:
        """Clean and PGD accuracy on the eval subset, and the guard's PGD accuracy on its held-out training
        images (``None`` without the guard)."""
        cfg, model = self.cfg, self.model_eval
        clean_acc, robust_acc = _accuracies(model, self.test, self.eval_idx, self.eval_eps, cfg.eval.steps,
                                            cfg.eval.restarts, cfg.eval_batch_size, self.device, self.autocast,
                                            cfg.seed + 2, self.d)
        guard_acc = None
        if self.guard_on:
            guard = cast(ArrayDataset, self.guard_data)  # (streamed: its materialized slice)
            _, guard_acc = _accuracies(model, guard, self.guard_idx, self.o.eps, cfg.guard.steps, 1,
                                       cfg.eval_batch_size, self.device, self.autocast, cfg.seed + 3, self.d)
        return clean_acc, robust_acc, guard_acc

    def _guard(self, epoch: int, score: float, metrics: dict) -> dict | None:
        """Keep the best epoch by ``score`` (its weights, and ``best.safetensors``); the catastrophic-overfitting
        guard stops the run when the score falls more than ``guard.drop`` below the best. Returns what the guard
        saw when it fired (also recorded in ``metrics``), else ``None``."""
        cfg = self.cfg
        if self.guard_on and self.best_epoch and score < self.best_metric - cfg.guard.drop:
            stopped = {"epoch": epoch, "guard_robust_acc": score, "best_epoch": self.best_epoch,
                       "best_guard_robust_acc": self.best_metric, "action": cfg.guard.action}
            metrics["catastrophic_overfitting"] = stopped
            log.warning("catastrophic overfitting at epoch %d: held-out PGD accuracy fell from %.3f (epoch %d) to "
                        "%.3f; %s", epoch, self.best_metric, self.best_epoch, score,
                        "rolling back to the best epoch and stopping" if cfg.guard.action == "rollback"
                        else "stopping")
            return stopped
        if score > self.best_metric:
            self.best_metric, self.best_epoch = score, epoch
            self.best_state = cpu_state(self.model_eval)
            if self.folder.writes and self.folder.out is not None:
                save(self.model_eval, self.folder.out / "best.safetensors", kind=self.kind, **self._metadata(metrics))
        return None

    def _metadata(self, metrics: dict) -> dict:
        return checkpoint_metadata(self.cfg_dict, self.data_name, self.train_all, metrics)

    def _state(self, epoch: int) -> dict:
        """What ``last.ckpt`` holds at the end of ``epoch``: enough to go on as if never stopped."""
        return {"config": self.cfg_dict, "epoch": epoch, "model": cpu_state(self.raw),
                "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                "scaler": self.scaler.state_dict(), "ema": cpu_state(self.ema) if self.ema is not None else None,
                **rng_state(self._generators()), "best_metric": self.best_metric, "best_epoch": self.best_epoch,
                "best_model": self.best_state, "metrics_lines": self.folder.lines}

    def _finish(self, *, stopped: dict | None, metrics: dict) -> tuple[Normalized, dict]:
        """The model to return: the best epoch's after a guard rollback or with ``guard.keep: best``, else the
        last; written as ``model.safetensors``."""
        cfg, final, lines = self.cfg, self.model_eval, self.folder.lines
        if stopped and cfg.guard.action == "rollback" and self.best_state is not None:
            final.load_state_dict(self.best_state)
            metrics = {**json.loads(lines[self.best_epoch - 1]), "catastrophic_overfitting": stopped}
        elif (self.guard_on and cfg.guard.keep == "best" and self.best_state is not None
              and self.best_epoch != len(lines)):
            # the epoch the guard rates best (held-out training images, never the test set) is the model
            final.load_state_dict(self.best_state)
            metrics = {**json.loads(lines[self.best_epoch - 1]), "kept": "best", "last_epoch": len(lines)}
            log.info("keeping epoch %d, the best by held-out PGD accuracy (guard.keep: best)", self.best_epoch)
        final.eval()
        if self.folder.writes and self.folder.out is not None:
            save(final, self.folder.out / RUN_CHECKPOINT, kind=self.kind, **self._metadata(metrics))
        return final, metrics


def _smoothed_loss(label_smoothing: float):
    """The per-sample loss the objectives use with label smoothing; ``None`` (their default) without it."""
    if not label_smoothing:
        return None
    return lambda logits, y: F.cross_entropy(logits.float(), y, reduction="none", label_smoothing=label_smoothing)


def checkpoint_metadata(cfg_dict: dict, data_name: str, data: ArrayDataset | StreamDataset, metrics: dict) -> dict:
    """What a trained model's checkpoint records besides its architecture (see :func:`advkit.models.save`).

    Args:
        cfg_dict: the resolved training config (``to_dict``).
        data_name: the training data's name.
        data: the training data (for its classes and image shape).
        metrics: the metrics to record.

    Returns:
        The metadata keyword arguments for :func:`advkit.models.save`.
    """
    return {"dataset": data_name, "classes": data.classes, "input_shape": list(data.image_shape),
            "config": cfg_dict, "metrics": metrics}


def crop_flip(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop after zero padding and random horizontal flip, per sample, in one gather.

    Args:
        x: images [B, C, H, W].
        gen: a CPU random stream for the offsets and flips.
        pad: zero padding on each side, in pixels (the largest shift).

    Returns:
        The augmented batch, same shape, on ``x``'s device.
    """
    b, c, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    # the draw order (oy, ox, flip) is part of what a seed means: keep it
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    flip = torch.rand(b, generator=gen) < 0.5
    rows = (oy[:, None] + torch.arange(h)).to(x.device)
    cols = ox[:, None] + torch.arange(w)
    cols = torch.where(flip[:, None], cols.flip(1), cols).to(x.device)
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return xp[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]


def _materialize(data: StreamDataset) -> ArrayDataset:
    """``data`` read into memory, the global random stream left as it was (a DataLoader draws its workers' seed
    from it, and the model's initialisation comes next: a streamed run must start as an in-memory one)."""
    with torch.random.fork_rng(devices=[]):
        return data.materialize()


def _float(b: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """A decoded batch as the in-memory batches come: float images in [0,1] (the same arithmetic) and labels."""
    return b.x.float().div_(255), b.y


def _shard(batches, d: Dist):
    """Each rank takes its slice of every global batch, so a DDP step averages the same samples a
    single-process step would."""
    for x, y in batches:
        yield (x[d.rank::d.world], y[d.rank::d.world]) if d.enabled else (x, y)
