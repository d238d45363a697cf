"""The training loop: one for every model kind; the objective decides what a step optimizes."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch
from torch import nn

from advkit.config import to_dict, to_yaml
from advkit.data import ArrayDataset, load_dataset
from advkit.errors import AdvkitError
from advkit.models import Normalized, create_model, save
from advkit.train.config import TrainConfig
from advkit.train.objectives import get_objective
from advkit.utils import atomic_write_text, resolve_device, seed_everything

log = logging.getLogger(__name__)


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


def _optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    cls = torch.optim.Adam if o.name == "adam" else torch.optim.AdamW
    return cls(model.parameters(), lr=o.lr, weight_decay=o.weight_decay)


def build_model(cfg: TrainConfig, data: ArrayDataset) -> Normalized:
    c, h, w = data.image_shape
    if h != w:
        raise AdvkitError(f"{data.name}: square images expected, got {h}x{w}")
    norm = cfg.model.normalize and data.mean is not None
    return create_model(cfg.model.name, num_classes=data.num_classes, in_chans=c, input_size=h,
                        mean=data.mean if norm else None, std=data.std if norm else None, **cfg.model.kwargs)


def train_classifier(cfg: TrainConfig, out_dir: str | Path | None = None, *,
                     progress: bool = False) -> tuple[Normalized, dict]:
    """Train per ``cfg``; with ``out_dir`` write ``config.yaml``, ``metrics.jsonl`` and
    ``model.safetensors`` (+ ``model.json``). Returns the model (eval mode) and final metrics."""
    from tqdm.auto import tqdm

    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    train = load_dataset(cfg.data.dataset, "train", root=cfg.data.root, download=cfg.data.download)
    test = load_dataset(cfg.data.dataset, "test", root=cfg.data.root, download=cfg.data.download)
    train, test = train.subset(cfg.data.train_limit), test.subset(cfg.data.test_limit)
    objective = get_objective(cfg.objective)
    model = build_model(cfg, train).to(device)
    opt = _optimizer(cfg, model)
    gen = torch.Generator().manual_seed(cfg.seed)

    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.yaml", to_yaml(cfg))
    lines: list[str] = []
    metrics: dict = {}
    steps_per_epoch = len(train) // cfg.batch_size + bool(len(train) % cfg.batch_size)
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        t0, total, seen = time.perf_counter(), 0.0, 0
        bar = tqdm(train.batches(cfg.batch_size, shuffle=True, generator=gen), total=steps_per_epoch,
                   desc=f"epoch {epoch}/{cfg.epochs}", leave=False,
                   disable=None if progress else True)  # None: bars only on a terminal
        for x, y in bar:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss, _ = objective(model, x, y)
            if not torch.isfinite(loss):
                raise AdvkitError(f"training diverged at epoch {epoch}: loss is {loss.item()}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(y)
            seen += len(y)
            bar.set_postfix(loss=f"{total / seen:.4f}")
        train_time = time.perf_counter() - t0
        acc = evaluate_accuracy(model, test, cfg.eval_batch_size, device)
        metrics = {"epoch": epoch, "train_loss": total / max(seen, 1), "test_acc": acc,
                   "epoch_time_s": round(train_time, 3)}
        log.info("epoch %d: loss %.4f, test acc %.4f, %.1fs", epoch, metrics["train_loss"], acc, train_time)
        lines.append(json.dumps(metrics))
        if out is not None:
            atomic_write_text(out / "metrics.jsonl", "\n".join(lines) + "\n")
    model.eval()
    if out is not None:
        save(model, out / "model.safetensors", dataset=cfg.data.dataset, classes=train.classes,
             input_shape=list(train.image_shape), config=to_dict(cfg), metrics=metrics)
    return model, metrics
