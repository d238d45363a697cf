"""The training loop: one for every model kind; the objective decides what a step optimizes.

Per epoch: train, then clean and PGD accuracy on a fixed held-out subset, the catastrophic-overfitting
guard for one-step objectives, a metrics line (JSON lines, always; TensorBoard when installed) and an
atomic resume checkpoint. Runs on CPU or CUDA (AMP, channels_last, torch.compile) and under torchrun (DDP).
"""

from __future__ import annotations

import copy
import io
import json
import logging
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from advkit.attacks import pgd
from advkit.config import to_dict, to_yaml
from advkit.data import ArrayDataset, load_dataset
from advkit.errors import AdvkitError
from advkit.models import RUN_CHECKPOINT, Normalized, create_model, save
from advkit.train.config import TrainConfig
from advkit.runtime.distributed import Dist, init_distributed, shutdown
from advkit.train.objectives import get_objective
from advkit.train.schedules import make_scheduler
from advkit.runtime.device import resolve_device, seed_everything
from advkit.runtime.io import atomic_write_bytes, atomic_write_text

# ``batch_transform(x, generator) -> x'``: float [B,C,H,W] in [0,1] on the CPU, same shape and range out
BatchTransform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

log = logging.getLogger(__name__)
CKPT = "last.ckpt"
ONE_STEP = ("fgsm", "fgsm_rs")
# keys that may change between a run and its resumption
RESUMABLE_CHANGES = {"device", "data.root", "tensorboard", "eval_batch_size"}


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, data: ArrayDataset, batch_size: int = 1000,
                      device: torch.device | str = "cpu") -> float:
    """Clean top-1 accuracy of ``model`` on ``data``; the model's mode is restored afterwards."""
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


def build_model(cfg: TrainConfig, data: ArrayDataset) -> Normalized:
    c, h, w = data.image_shape
    if h != w:
        raise AdvkitError(f"{data.name}: square images expected, got {h}x{w}")
    norm = cfg.model.normalize and data.mean is not None
    model = create_model(cfg.model.name, num_classes=data.num_classes, in_chans=c, input_size=h,
                         mean=data.mean if norm else None, std=data.std if norm else None, **cfg.model.kwargs)
    if norm and getattr(model.net, "raw_pixels", False):
        raise AdvkitError(f"model {cfg.model.name!r} scales its [0,1] input itself; set normalize: false under "
                          f"model (train.model in a detector config)")
    return model


def load_init(model: Normalized, path: str | Path) -> None:
    """Copy the weights of the classifier checkpoint at ``path`` (a ``.safetensors``, or a run folder holding
    ``model.safetensors``) into ``model``: every tensor name and shape must match (one error names the first
    that does not). A normalization that differs from the checkpoint's only warns (the data may differ)."""
    from safetensors.torch import load_file

    from advkit.models import checkpoint_file, read_metadata

    p = checkpoint_file(path)
    if not p.is_file():
        raise AdvkitError(f"train.init: checkpoint not found: {p}")
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


def _flat_diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        key = f"{prefix}{k}"
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict) and key != "model.kwargs":
            out += _flat_diff(va, vb, key + ".")
        elif va != vb and key not in RESUMABLE_CHANGES:
            out.append(f"{key}: {va!r} -> {vb!r}")
    return out


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def train_classifier(cfg: TrainConfig, out_dir: str | Path | None = None, *, progress: bool = False,
                     resume: bool = False, on_epoch: Callable[[dict], None] | None = None,
                     datasets: tuple[ArrayDataset, ArrayDataset] | None = None,
                     batch_transform: BatchTransform | None = None) -> tuple[Normalized, dict]:
    """Train per ``cfg``. With ``out_dir``, rank 0 writes ``config.yaml``, ``metrics.jsonl``, the resume
    checkpoint ``last.ckpt`` every epoch, ``best.safetensors`` and the final ``model.safetensors``
    (+ ``.json``). ``resume=True`` continues from ``out_dir/last.ckpt`` when it exists. Returns the final
    model (eval mode, on the training device) and the last epoch's metrics.

    Hooks for trainers built on this one (the detector trainer): ``datasets=(train, eval)`` replaces loading
    ``cfg.data`` (only ``data.augment`` still applies; the checkpoints' ``dataset`` is ``train.name``), and
    ``batch_transform(x, generator)`` maps every training batch (float [0,1], on the CPU, before the move to
    the device). Its generator is seeded from ``cfg.seed`` and saved in ``last.ckpt``, so a resumed run draws
    what an uninterrupted one would."""
    from tqdm.auto import tqdm

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
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True)
        return _train(cfg, out_dir, progress, resume, on_epoch, device, d, tqdm, datasets, batch_transform)
    finally:
        shutdown(d)


def _train(cfg, out_dir, progress, resume, on_epoch, device, d: Dist, tqdm, datasets=None,
           batch_transform=None):
    o = cfg.objective
    if datasets is not None:
        train_all, test = datasets
        data_name = train_all.name
    else:
        train_all = load_dataset(cfg.data.dataset, "train", root=cfg.data.root, download=cfg.data.download)
        test = load_dataset(cfg.data.dataset, "test", root=cfg.data.root, download=cfg.data.download)
        train_all, test = train_all.subset(cfg.data.train_limit), test.subset(cfg.data.test_limit)
        data_name = cfg.data.dataset
    guard_on = cfg.guard.enabled and o.name in ONE_STEP and o.eps > 0
    n_guard = min(cfg.guard.n, len(train_all) // 5) if guard_on else 0
    train_idx = torch.arange(len(train_all) - n_guard)
    guard_idx = torch.arange(len(train_all) - n_guard, len(train_all))
    eval_idx = torch.arange(min(cfg.eval.n, len(test)))
    eval_eps = o.eps if cfg.eval.eps is None else cfg.eval.eps

    loss_fn = None
    if cfg.label_smoothing:
        ls = cfg.label_smoothing
        loss_fn = lambda logits, y: F.cross_entropy(logits.float(), y, reduction="none", label_smoothing=ls)  # noqa: E731
    def objective_at(epoch: int):
        """The objective at ``epoch``: with ``eps_ramp`` the radius grows linearly over the first epochs (a
        strong adversary on an untrained net can pin it at the class prior, as PGD training at eps 0.3 does)."""
        frac = min(1.0, epoch / o.eps_ramp) if o.eps_ramp > 0 else 1.0
        return get_objective(o.name, eps=o.eps * frac, alpha=None if o.alpha is None else o.alpha * frac,
                             steps=o.steps, norm=o.norm, mix=o.mix, beta=o.beta, loss_fn=loss_fn,
                             classes=o.classes)

    objective = objective_at(cfg.epochs)  # validates the config before any work
    out = Path(out_dir) if out_dir is not None else None
    resuming = out is not None and resume and (out / CKPT).is_file()
    if o.classes is not None and max(o.classes) >= train_all.num_classes:
        raise AdvkitError(f"objective.classes: label {max(o.classes)} does not exist in {train_all.name} "
                          f"({train_all.num_classes} classes)")
    raw = build_model(cfg, train_all)
    if cfg.init is not None and not resuming:  # a resumed run takes its weights from last.ckpt
        load_init(raw, cfg.init)
        log.info("initialised from %s", cfg.init)
    raw = raw.to(device)
    if cfg.channels_last:
        raw = raw.to(memory_format=torch.channels_last)
    ema = copy.deepcopy(raw).eval() if cfg.ema else None
    net: nn.Module = raw
    if d.enabled:
        net = nn.parallel.DistributedDataParallel(raw, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        net = torch.compile(net)
    opt = _optimizer(cfg, raw)
    drop_last = d.enabled  # every rank must see the same number of equal-size steps
    steps_per_epoch = len(train_idx) // cfg.batch_size + (0 if drop_last else bool(len(train_idx) % cfg.batch_size))
    if steps_per_epoch == 0:
        raise AdvkitError(f"{len(train_idx)} training images are fewer than one batch of {cfg.batch_size}")
    sched = make_scheduler(opt, cfg.schedule, cfg.epochs * steps_per_epoch, steps_per_epoch)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
    autocast = lambda: torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None)  # noqa: E731
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16")
    shuffle_gen = torch.Generator().manual_seed(cfg.seed)
    attack_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    transform_gen = torch.Generator().manual_seed(cfg.seed + 4 + d.rank)  # ranks see different batches

    cfg_dict = to_dict(cfg)
    start_epoch, best_metric, best_epoch, best_state, lines = 1, -1.0, 0, None, []
    if resuming:
        st = _load_checkpoint(out / CKPT)
        diff = _flat_diff(st["config"], cfg_dict)
        if diff:
            raise AdvkitError(f"cannot resume {out / CKPT}: it was written with another config ({'; '.join(diff)})")
        raw.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        scaler.load_state_dict(st["scaler"])
        if ema is not None:
            ema.load_state_dict(st["ema"])
        shuffle_gen.set_state(st["shuffle_rng"])
        attack_gen.set_state(st["attack_rng"].to(attack_gen.get_state().device))
        if "transform_rng" in st:  # absent from checkpoints written before batch_transform existed
            transform_gen.set_state(st["transform_rng"])
        torch.set_rng_state(st["torch_rng"])
        start_epoch, best_metric, best_epoch = st["epoch"] + 1, st["best_metric"], st["best_epoch"]
        best_state, lines = st.get("best_model"), list(st["metrics_lines"])
        log.info("resumed from %s at epoch %d", out / CKPT, st["epoch"])
    elif out is not None and resume:
        log.warning("nothing to resume in %s: starting from scratch", out)
    writer = None
    if out is not None and d.main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.yaml", to_yaml(cfg))
        if cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                writer = SummaryWriter(str(out / "tb"))
            except ImportError:
                log.info("tensorboard not installed: metrics go to metrics.jsonl only")

    metrics: dict = json.loads(lines[-1]) if lines else {}
    stopped = None
    for epoch in range(start_epoch, cfg.epochs + 1):
        if o.eps_ramp > 0:
            objective = objective_at(epoch)
        raw.train()
        t0 = time.perf_counter()
        sums = [0.0, 0.0, 0.0]  # loss*n, correct, n
        batches = _shard(train_all.batches(cfg.batch_size, shuffle=True, generator=shuffle_gen,
                                           drop_last=drop_last, indices=train_idx), d)
        bar = tqdm(batches, total=steps_per_epoch, desc=f"epoch {epoch}/{cfg.epochs}", leave=False,
                   disable=None if (progress and d.main) else True)
        for x, y in bar:
            if batch_transform is not None:
                x = batch_transform(x, transform_gen)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if cfg.data.augment:
                x = crop_flip(x, shuffle_gen)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast():
                loss, logits = objective(net, x, y, attack_model=raw, generator=attack_gen)
            if not torch.isfinite(loss):
                raise AdvkitError(f"training diverged at epoch {epoch}: loss is {loss.item()}")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.optim.grad_clip:
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(raw.parameters(), cfg.optim.grad_clip)
            scaler.step(opt)
            scaler.update()
            sched.step()
            if ema is not None:
                _ema_update(ema, raw, cfg.ema)
            sums[0] += loss.item() * len(y)
            sums[1] += (logits.argmax(1) == y).sum().item()
            sums[2] += len(y)
            bar.set_postfix(loss=f"{sums[0] / sums[2]:.4f}")
        loss_sum, correct, seen = d.all_sum(sums, device)
        train_time = time.perf_counter() - t0

        t1 = time.perf_counter()
        model_eval = ema if ema is not None else raw
        clean_acc, robust_acc = _accuracies(model_eval, test, eval_idx, eval_eps, cfg.eval.steps,
                                            cfg.eval.restarts, cfg.eval_batch_size, device, autocast,
                                            cfg.seed + 2, d)
        guard_acc = None
        if guard_on:
            _, guard_acc = _accuracies(model_eval, train_all, guard_idx, o.eps, cfg.guard.steps, 1,
                                       cfg.eval_batch_size, device, autocast, cfg.seed + 3, d)
        metrics = {"epoch": epoch, "train_loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1),
                   "clean_acc": clean_acc, "robust_acc": robust_acc, "eval_eps": eval_eps,
                   "guard_robust_acc": guard_acc, "lr": opt.param_groups[0]["lr"],
                   "train_eps": o.eps * (min(1.0, epoch / o.eps_ramp) if o.eps_ramp > 0 else 1.0),
                   "epoch_time_s": round(train_time, 3), "eval_time_s": round(time.perf_counter() - t1, 3)}
        score = guard_acc if guard_on else (robust_acc if robust_acc is not None else clean_acc)
        if guard_on and best_epoch and score < best_metric - cfg.guard.drop:
            stopped = {"epoch": epoch, "guard_robust_acc": score, "best_epoch": best_epoch,
                       "best_guard_robust_acc": best_metric, "action": cfg.guard.action}
            metrics["catastrophic_overfitting"] = stopped
            log.warning("catastrophic overfitting at epoch %d: held-out PGD accuracy fell from %.3f (epoch %d) to "
                        "%.3f; %s", epoch, best_metric, best_epoch, score,
                        "rolling back to the best epoch and stopping" if cfg.guard.action == "rollback"
                        else "stopping")
        elif score > best_metric:
            best_metric, best_epoch = score, epoch
            best_state = _cpu_state(model_eval)
            if out is not None and d.main:
                save(model_eval, out / "best.safetensors",
                     **checkpoint_metadata(cfg_dict, data_name, train_all, metrics))
        metrics["best_epoch"] = best_epoch
        lines.append(json.dumps(metrics))
        if out is not None and d.main:
            atomic_write_text(out / "metrics.jsonl", "\n".join(lines) + "\n")
            if writer is not None:
                for k, v in metrics.items():
                    if isinstance(v, (int, float)) and k != "epoch":
                        writer.add_scalar(k, v, epoch)
            _save_checkpoint(out / CKPT, {
                "config": cfg_dict, "epoch": epoch, "model": _cpu_state(raw), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "scaler": scaler.state_dict(),
                "ema": _cpu_state(ema) if ema is not None else None,
                "shuffle_rng": shuffle_gen.get_state(), "attack_rng": attack_gen.get_state().cpu(),
                "transform_rng": transform_gen.get_state(),
                "torch_rng": torch.get_rng_state(), "best_metric": best_metric, "best_epoch": best_epoch,
                "best_model": best_state, "metrics_lines": lines})
        d.barrier()
        log.info("epoch %d: %s", epoch, json.dumps(metrics))
        if on_epoch is not None and d.main:
            on_epoch(metrics)
        if stopped:
            break
    if writer is not None:
        writer.close()
    final = ema if ema is not None else raw
    if stopped and cfg.guard.action == "rollback" and best_state is not None:
        final.load_state_dict(best_state)
        metrics = {**json.loads(lines[best_epoch - 1]), "catastrophic_overfitting": stopped}
    elif guard_on and cfg.guard.keep == "best" and best_state is not None and best_epoch != len(lines):
        # the epoch the guard rates best (held-out training images, never the test set) is the model
        final.load_state_dict(best_state)
        metrics = {**json.loads(lines[best_epoch - 1]), "kept": "best", "last_epoch": len(lines)}
        log.info("keeping epoch %d, the best by held-out PGD accuracy (guard.keep: best)", best_epoch)
    final.eval()
    if out is not None and d.main:
        save(final, out / RUN_CHECKPOINT, **checkpoint_metadata(cfg_dict, data_name, train_all, metrics))
    return final, metrics


def checkpoint_metadata(cfg_dict: dict, data_name: str, data: ArrayDataset, metrics: dict) -> dict:
    """What a trained model's checkpoint records besides its architecture (see :func:`advkit.models.save`)."""
    return {"dataset": data_name, "classes": data.classes, "input_shape": list(data.image_shape),
            "config": cfg_dict, "metrics": metrics}


def crop_flip(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop after zero padding and random horizontal flip, per sample, in one gather."""
    b, c, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    oy, ox, flip = (torch.randint(0, 2 * pad + 1, (b,), generator=gen), torch.randint(0, 2 * pad + 1, (b,), generator=gen),
                    torch.rand(b, generator=gen) < 0.5)
    rows = (oy[:, None] + torch.arange(h)).to(x.device)
    cols = ox[:, None] + torch.arange(w)
    cols = torch.where(flip[:, None], cols.flip(1), cols).to(x.device)
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return xp[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]


def _shard(batches, d: Dist):
    """Each rank takes its slice of every global batch, so a DDP step averages the same samples a
    single-process step would."""
    for x, y in batches:
        yield (x[d.rank::d.world], y[d.rank::d.world]) if d.enabled else (x, y)


@torch.no_grad()
def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p, 1 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


def _save_checkpoint(path: Path, state: dict) -> None:
    """Atomic: a crash or a full disk mid-write leaves the previous checkpoint intact."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def _load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)  # never runs pickled code
    except Exception as e:  # torch raises several types for corrupt or foreign files
        raise AdvkitError(f"cannot resume from {path}: not a readable advkit training checkpoint ({e})") from None
