"""advkit from Python: :func:`evaluate` runs the eval harness on a model and data the caller already has.

``advkit eval`` resolves a model spec and loads a named dataset; here the model is any ``nn.Module`` with
advkit's contract (``f(x in [0,1]) -> logits``; normalization inside the model) and the data any
``Dataset``, ``DataLoader``, iterable of ``(x, y)`` batches or ``(x, y)`` tensor pair. The run is the same
harness (:func:`advkit.eval.harness.run_eval`: per-sample worst case over the suite, sanity checks, Wilson
intervals) and gives the same typed :class:`~advkit.report.Report` and, with ``out``, the same four files.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from advkit.data import ArrayDataset, StreamDataset, head, open_dataset
from advkit.errors import AdvkitError
from advkit.eval.config import ChecksConfig, DataSpec, EvalConfig, ModelSpec, ThreatModel
from advkit.eval.harness import run_eval
from advkit.report import Report, write_reports

__all__ = ["as_dataset", "evaluate"]

AttackArg = str | dict[str, Any] | Sequence[str | dict[str, Any]] | None


class _FloatImages(ArrayDataset):
    """An in-memory dataset whose images are float in [0,1] (values not on the 1/255 grid are kept as given,
    not rounded to uint8, so the harness sees exactly the caller's pixels)."""

    def __post_init__(self) -> None:
        if not self.images.is_floating_point() or self.images.ndim != 4:
            raise AdvkitError(f"{self.name}: images must be float [N,C,H,W], got {self.images.dtype} "
                              f"{tuple(self.images.shape)}")

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]

    def subset(self, n: int | None, offset: int = 0) -> ArrayDataset:
        end = len(self) if n is None else min(len(self), offset + n)
        return _FloatImages(self.images[offset:end], self.labels[offset:end], self.classes, self.name,
                            self.mean, self.std, self.source, dict(self.meta))

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images, self.labels

    def batches(self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None,
                drop_last: bool = False, indices: torch.Tensor | None = None
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        idx = indices if indices is not None else torch.arange(len(self))
        if shuffle:
            idx = idx[torch.randperm(len(idx), generator=generator)]
        stop = len(idx) - (len(idx) % batch_size if drop_last else 0)
        for s in range(0, stop, batch_size):
            yield self.images[idx[s:s + batch_size]], self.labels[idx[s:s + batch_size]]


def _tensor(v: Any, what: str) -> torch.Tensor:
    if isinstance(v, torch.Tensor):
        return v.detach().cpu()
    if isinstance(v, np.ndarray) or isinstance(v, (int, np.integer)):
        return torch.as_tensor(v)
    if isinstance(v, (list, tuple)) and v and all(isinstance(t, torch.Tensor) for t in v):
        return torch.stack([t.detach().cpu() for t in v])
    raise AdvkitError(f"data: {what} must be tensors or arrays (use transforms.ToTensor() for images), "
                      f"got {type(v).__name__}")


def _take(items: Iterable[Any], n: int | None, batched: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` samples of a stream of ``(x, y)`` items or batches, stacked."""
    xs, ys, got = [], [], 0
    for item in items:
        if not isinstance(item, (list, tuple)) or len(item) < 2:
            raise AdvkitError(f"data: each {'batch' if batched else 'item'} must be (images, labels), got "
                              f"{type(item).__name__}")
        x, y = _tensor(item[0], "images"), _tensor(item[1], "labels")
        if not batched:
            x, y = x.unsqueeze(0), y.reshape(1)
        xs.append(x)
        ys.append(y.reshape(-1))
        got += x.shape[0]
        if n is not None and got >= n:
            break
    if not xs:
        raise AdvkitError("data: no samples")
    return torch.cat(xs)[:n], torch.cat(ys)[:n]


def as_dataset(data: Any, n: int | None = None, *, name: str | None = None,
               classes: Sequence[str] | None = None) -> ArrayDataset | StreamDataset:
    """The first ``n`` samples of ``data`` as a dataset the harness takes (in memory, or streamed).

    Args:
        data: a dataset spec as ``advkit eval`` takes (``cifar10``, ``npz:FILE``, ``imagefolder:PATH``,
            ``csv:FILE``; its test split; streamed families stay streamed and the harness resizes them to the
            model's input); an ``ArrayDataset`` or ``StreamDataset``; an ``(images, labels)`` pair of tensors
            or arrays (images ``[N,C,H,W]``, float in [0,1] or uint8); a map-style ``Dataset`` of
            ``(image, label)`` items; a ``DataLoader`` or any iterable of ``(images, labels)`` batches.
            Images stay unnormalized: normalization belongs inside the model. Float images on the 1/255 grid
            are stored as uint8 (lossless, and the report's data fingerprint then matches ``advkit eval`` on
            the same images); others are kept as given.
        n: how many samples (the first ``n``, in the data's order; a shuffling ``DataLoader`` gives other
            samples each time); None: all.
        name: the data's name in reports; default the dataset's class name.
        classes: class names; default the data's ``classes`` attribute, else set by :func:`evaluate` from
            the model's number of outputs.

    Returns:
        The dataset (its ``classes`` empty when neither ``classes`` nor the data named them).

    Raises:
        AdvkitError: the data is empty, not image batches of shape ``[N,C,H,W]``, not in [0,1], or its
            labels are not integers.
    """
    if n is not None and n < 1:
        raise AdvkitError(f"n must be >= 1 (or None for all), got {n}")
    if isinstance(data, (str, os.PathLike)):
        data = open_dataset(os.fspath(data), "test")
    if isinstance(data, StreamDataset):
        return data.subset(n)
    if isinstance(data, ArrayDataset):
        ds = data.subset(n)
        if name or classes:
            ds = ds.subset(None)
            ds.name, ds.classes = name or ds.name, list(classes or ds.classes)
        return ds
    found = getattr(data, "dataset", data) if isinstance(data, torch.utils.data.DataLoader) else data
    label = name or type(found).__name__
    names = list(classes) if classes is not None else list(getattr(found, "classes", None) or [])
    pair = isinstance(data, (tuple, list)) and len(data) == 2 and not isinstance(data[0], (tuple, list))
    if isinstance(data, (tuple, list)) and not pair:  # a list of (images, labels) batches
        x, y = _take(data, n, batched=True)
    elif pair:
        x, y = _tensor(data[0], "images"), _tensor(data[1], "labels")
        x, y = x[:n], y.reshape(-1)[:n]
        label = name or "tensors"
    elif isinstance(data, torch.utils.data.DataLoader) or not hasattr(data, "__getitem__"):
        x, y = _take(data, n, batched=True)
    else:
        size = len(data)
        x, y = _take((data[i] for i in range(size if n is None else min(size, n))), n, batched=False)
    if x.ndim != 4 or x.shape[0] == 0:
        raise AdvkitError(f"data: images must be [N,C,H,W] with N >= 1, got shape {tuple(x.shape)}")
    if x.shape[0] != y.shape[0]:
        raise AdvkitError(f"data: {x.shape[0]} images but {y.shape[0]} labels")
    if y.is_floating_point() or y.dtype == torch.bool:
        raise AdvkitError(f"data: labels must be integers, got {y.dtype}")
    y = y.long()
    if x.dtype != torch.uint8:
        x = x.float()
        lo, hi = float(x.min()), float(x.max())
        if not (0.0 <= lo and hi <= 1.0):
            raise AdvkitError(f"data: images must be in [0,1] (normalization belongs inside the model), got "
                              f"values in [{lo:.3g}, {hi:.3g}]")
        q = x.mul(255).round_()
        if torch.equal(q.div(255), x):
            x = q.to(torch.uint8)
    if x.dtype == torch.uint8:
        return ArrayDataset(x.contiguous(), y, names, label, source="python")
    return _FloatImages(x.contiguous(), y, names, label, source="python")


def _model_device(model: nn.Module) -> torch.device:
    for t in itertools.chain(model.parameters(), model.buffers()):
        return t.device
    return torch.device("cpu")


def _threat_model(attacks: AttackArg, eps: float | Sequence[float], norm: str) -> ThreatModel:
    entries: tuple[Any, ...]
    if attacks is None:
        entries = ()
    elif isinstance(attacks, (str, dict)):
        entries = (attacks,)
    else:
        entries = tuple(attacks)
        if not entries:
            raise AdvkitError("attacks: give at least one attack (or None for the default suite)")
    eps_list = (eps,) if isinstance(eps, (int, float)) else tuple(eps)
    try:
        return ThreatModel(norm=norm, eps=tuple(float(e) for e in eps_list), attacks=entries)
    except ValueError as e:
        raise AdvkitError(str(e)) from None


def evaluate(model: nn.Module, data: Any, *, attacks: AttackArg = None, eps: float | Sequence[float] = 8 / 255,
             n: int | None = 1000, out: str | os.PathLike | None = None, norm: str = "linf", batch_size: int = 256,
             seed: int = 0, device: str | torch.device | None = None, mode: str = "cascade", checks: bool = True,
             examples: int = 8, name: str | None = None) -> Report:
    """Evaluate an in-memory model on in-memory data with the eval harness: the robust accuracy per eps under
    the per-sample worst case over ``attacks``, the sanity checks, 95% Wilson intervals, worst-case pictures.

    The run is :func:`advkit.eval.harness.run_eval`, the one behind ``advkit eval``: the same data, attacks,
    seed and batch size give the same numbers from either.

    Args:
        model: ``f(x in [0,1]) -> logits [B, K]`` (wrap a model that expects normalized input, e.g. with
            ``advkit.models.wrappers.Normalized``). Put in eval mode for the run; its mode is restored after.
        data: images and labels: see :func:`as_dataset` (a ``Dataset``, a ``DataLoader``, an iterable of
            batches, an ``(x, y)`` pair, or an ``ArrayDataset``).
        attacks: what eval configs take under ``attacks:``: a name or preset (``"pgd"``, ``"autoattack-fast"``),
            a mapping with parameters (``{"name": "pgd", "steps": 20}``), or a list of those; None: the
            default suite of ``advkit eval`` for ``norm``.
        eps: one radius or an ascending list, in pixel units of ``norm`` (``8/255``).
        n: evaluate the first ``n`` samples; None: all.
        out: also write ``report.json``, ``report.md``, ``report.html`` and ``junit.xml`` here (what
            ``advkit eval --out`` writes); None: write nothing.
        norm: ``linf`` or ``l2``.
        batch_size: samples per attack batch.
        seed: seeds every attack call (per batch, eps and attack).
        device: where to run; None: the model's device. Given, the model is moved there (``nn.Module.to``,
            in place).
        mode: ``cascade`` (each attack only on the samples still standing) or ``full`` (every attack on every
            sample: each attack's own accuracy).
        checks: run the sanity checks (gradient masking, determinism, monotone eps, ...) on the first 200
            samples; they cost a few extra attacks.
        examples: fooled samples per eps drawn in the report's pictures.
        name: the model's name in the report; default its class name.

    Returns:
        The typed report (``report.models[0].threat_models[0].worst_case[i].robust_acc`` is the robust
        accuracy at the i-th eps).

    Raises:
        AdvkitError: a bad argument (unknown attack or norm, unsorted eps, data not in [0,1]), or a model
            that cannot take the data or gives outputs of another shape than ``[B, K]``.
    """
    if not isinstance(model, nn.Module):
        raise AdvkitError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    label = name or type(model).__name__
    ds = as_dataset(data, n)
    dev = torch.device(device) if device is not None else _model_device(model)
    if device is not None:
        model.to(dev)
    was_training = model.training
    model.eval()
    try:
        if isinstance(ds, ArrayDataset) and not ds.classes:
            with torch.no_grad():
                probe = model(head(ds, 2)[0].to(dev))
            if probe.ndim != 2:
                raise AdvkitError(f"model {label!r} gives outputs of shape {tuple(probe.shape)}, not [B, K] logits")
            ds.classes = [str(k) for k in range(probe.shape[1])]
        if isinstance(ds, ArrayDataset) and (int(ds.labels.min()) < 0 or int(ds.labels.max()) >= ds.num_classes):
            raise AdvkitError(f"data: labels must be in [0, {ds.num_classes}), got {int(ds.labels.min())}.."
                              f"{int(ds.labels.max())}")
        try:
            cfg = EvalConfig(models=(ModelSpec(name=label, model=f"python:{type(model).__name__}"),),
                             data=DataSpec(dataset=ds.name, split="python", n=None),
                             threat_models=(_threat_model(attacks, eps, norm),), mode=mode, seed=seed,
                             device=str(dev), batch_size=batch_size, examples=examples,
                             checks=ChecksConfig(enabled=checks))
        except ValueError as e:
            raise AdvkitError(str(e)) from None
        report = run_eval(cfg, device=dev, models=[(label, model)], data=ds)
    finally:
        model.train(was_training)
    assert report is not None  # a single process is rank 0
    if out is not None:
        write_reports(report, out)
    return Report.from_dict(report)
