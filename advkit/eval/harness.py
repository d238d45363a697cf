"""``run_eval``: models x threat models x attack suites -> one report dict (schema in :mod:`advkit.report`).

The samples are sharded over ``torchrun`` ranks by batch; rank 0 gathers the per-batch results, runs the
sanity checks and builds the report, which matches a single-process run except for timings.
"""

from __future__ import annotations

import base64
import datetime as _dt
import logging
import platform
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from advkit import __version__
from advkit.data import ArrayDataset, load_dataset
from advkit.errors import AdvkitError
from advkit.eval.checks import attack_checks, merge, model_checks
from advkit.eval.config import EvalConfig, ModelSpec, config_dict
from advkit.eval.gates import evaluate_gates
from advkit.eval.suite import run_suite, summarize
from advkit.runtime.distributed import Dist

log = logging.getLogger(__name__)


class Ensemble(nn.Module):
    """Averages the logits of several ``f(x in [0,1]) -> logits`` models."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x).float() for m in self.members]).mean(0)


def _load_one(src: str, data: ArrayDataset, device: torch.device, say: Callable[[str], None]) -> nn.Module:
    from advkit.models import checkpoint_file, create_model, list_models, load

    if src == "default":
        from advkit.train.default import default_model_path, get_default_model
        if not default_model_path().is_file():
            say("training advkit's default MNIST model once (about a minute on a laptop CPU)")
        model, _, _ = get_default_model()
        return model.to(device).eval()
    path = Path(src)
    if path.suffix in (".safetensors", ".ckpt", ".pt") or path.exists() or "/" in src:
        path = checkpoint_file(path)
        if not path.is_file():
            raise AdvkitError(f"checkpoint not found: {path}")
        return load(path, device=device).eval()
    if not (src.startswith("timm:") or src in list_models()):
        import difflib
        close = difflib.get_close_matches(src, list_models() + ["default"], n=1)
        raise AdvkitError(f"model {src!r} is neither a checkpoint file nor a registered model" +
                          (f"; did you mean {close[0]!r}?" if close else ""))
    c, h, _ = data.image_shape
    say(f"model {src}: random initialisation (no checkpoint), numbers are only a smoke test")
    return create_model(src, num_classes=data.num_classes, in_chans=c, input_size=h, mean=data.mean,
                        std=data.std).to(device).eval()


def load_model(spec: ModelSpec, data: ArrayDataset, device: torch.device,
               say: Callable[[str], None] = log.warning) -> nn.Module:
    if spec.ensemble:
        return Ensemble([_load_one(s, data, device, say) for s in spec.ensemble]).eval()
    return _load_one(spec.model, data, device, say)


def _check_model_fits(model: nn.Module, data: ArrayDataset, name: str, device: torch.device) -> None:
    x, _ = data.subset(2).tensors()
    try:
        with torch.no_grad():
            out = model(x.to(device))
    except RuntimeError as e:
        raise AdvkitError(f"model {name!r} cannot take {data.name} images of shape {data.image_shape}: "
                          f"{str(e).splitlines()[0]}") from None
    if out.ndim != 2 or out.shape[1] != data.num_classes:
        raise AdvkitError(f"model {name!r} gives outputs of shape {tuple(out.shape)} but {data.name} has "
                          f"{data.num_classes} classes")


def _png(ex, classes, title) -> str:
    from advkit.viz.grid import adversarial_grid_png
    return base64.b64encode(adversarial_grid_png(*ex, classes, n=ex[0].shape[0], title=title)).decode()


def environment(device: torch.device, world: int) -> dict:
    dev = str(device)
    if device.type == "cuda":
        dev += f" ({torch.cuda.get_device_name(device)})"
    return {"advkit": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "device": dev, "world_size": world}


def run_eval(cfg: EvalConfig, *, device: torch.device, dist: Dist = Dist(), baseline: dict | None = None,
             progress: bool = False, say: Callable[[str], None] = log.warning) -> dict | None:
    """Run the whole evaluation; the report on rank 0, None on the other ranks. With ``detection.data`` set
    the models are fake-image detectors, evaluated by :func:`advkit.detect.report.run_detection_eval`."""
    if cfg.detection.enabled:
        from advkit.detect.report import run_detection_eval
        return run_detection_eval(cfg, device=device, dist=dist, baseline=baseline, say=say)
    t_start = time.perf_counter()
    data = load_dataset(cfg.data.dataset, cfg.data.split, root=cfg.data.root).subset(cfg.data.n)
    if len(data) == 0:
        raise AdvkitError(f"{cfg.data.dataset} ({cfg.data.split}) has no samples")
    suites = [(tm, tm.suite()) for tm in cfg.threat_models]
    for tm, suite in suites:
        for spec in suite:
            if spec.targeted and data.num_classes < 3:
                raise AdvkitError(f"attack {spec.label!r} is targeted, but a {data.num_classes}-class model has "
                                  f"no other class to target than the one an untargeted attack already seeks")
    x_chk, y_chk = data.subset(cfg.checks.n).tensors()
    models_out, attack_s, saved_s = [], 0.0, 0.0
    for spec in cfg.models:
        model = load_model(spec, data, device, say)
        _check_model_fits(model, data, spec.label, device)
        entry = {"name": spec.label, "source": spec.model or list(spec.ensemble), "n": len(data),
                 "threat_models": [], "checks": [], "examples": []}
        per_tm_checks = []
        bar = None
        if progress and dist.main:
            from tqdm.auto import tqdm
            n_batches = -(-len(data) // cfg.batch_size)
            bar = tqdm(total=len(suites) * -(-n_batches // dist.world), desc=f"eval {spec.label}", unit="batch")
        for tm, suite in suites:
            batches = run_suite(model, data.images, data.labels, norm=tm.norm, eps_list=tm.eps, suite=suite, mode=cfg.mode,
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
            entry["clean_acc"] = summ.pop("clean_correct") / len(data)
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
    report = {
        "schema": "advkit.report", "schema_version": 1,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "environment": environment(device, dist.world), "config": config_dict(cfg),
        "data": {"dataset": cfg.data.dataset, "split": cfg.data.split, "n": len(data),
                 "num_classes": data.num_classes, "shape": list(data.image_shape)},
        "models": models_out,
    }
    report["gates"] = evaluate_gates(report, cfg.gates, baseline)
    report["passed"] = all(g["passed"] for g in report["gates"])
    report["timing"] = {"total_s": round(time.perf_counter() - t_start, 2), "attack_s": round(attack_s, 2),
                        "time_saved_s": round(saved_s, 2)}
    return report
