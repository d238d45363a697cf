"""One attack over a dataset at several eps: accuracies, success rate, perturbation norms, speed."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from advkit.attacks import Attack, check_eps, per_sample_norm
from advkit.data import ArrayDataset
from advkit.errors import AdvkitError


@dataclass
class EpsResult:
    eps: float
    clean_acc: float
    robust_acc: float
    success_rate: float       # among samples the model got right, the fraction the attack fooled
    mean_norm: float          # perturbation size in the attack's norm, over all samples
    max_norm: float
    time_s: float
    images_per_s: float


@dataclass
class SweepResult:
    attack: str
    norm: str
    n: int
    results: list[EpsResult]
    x: torch.Tensor = field(repr=False)          # clean images [N,C,H,W]
    y: torch.Tensor = field(repr=False)
    pred_clean: torch.Tensor = field(repr=False)
    x_adv: torch.Tensor = field(repr=False)      # [E,N,C,H,W]
    pred_adv: torch.Tensor = field(repr=False)   # [E,N]

    def summary(self) -> dict:
        return {"attack": self.attack, "norm": self.norm, "n": self.n,
                "results": [asdict(r) for r in self.results]}


def attack_sweep(model: nn.Module, data: ArrayDataset, attack: Attack, eps_list: list[float], *,
                 batch_size: int = 256, device: torch.device | str = "cpu", seed: int = 0,
                 targeted: bool = False) -> SweepResult:
    """Run ``attack`` on every sample of ``data`` at each eps (pixel units of ``attack.norm``).

    Seeded per eps from ``seed``, so a result does not depend on which other eps were asked for.
    """
    if not eps_list:
        raise AdvkitError("give at least one eps")
    for e in eps_list:
        if attack.norm in ("linf", "l2"):
            check_eps(e, attack.norm)
    if len(data) == 0:
        raise AdvkitError("no samples to attack")
    device = torch.device(device)
    x_all, y_all = data.tensors()
    with torch.no_grad():
        logits = torch.cat([model(xb.to(device)).float().cpu() for xb in x_all.split(batch_size)])
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise AdvkitError(f"model output must be logits [B, K>=2], got {tuple(logits.shape)}")
    if int(y_all.max()) >= logits.shape[1]:
        raise AdvkitError(f"labels go up to {int(y_all.max())} but the model has {logits.shape[1]} outputs; "
                          f"model and data do not match")
    pred_clean = logits.argmax(1)
    correct = pred_clean == y_all
    results, advs, preds = [], [], []
    for i, eps in enumerate(eps_list):
        gen = torch.Generator(device=device).manual_seed(seed * 1000 + i)
        t0 = time.perf_counter()
        xa, pa = [], []
        for xb, yb in zip(x_all.split(batch_size), y_all.split(batch_size)):
            xb, yb = xb.to(device), yb.to(device)
            adv = attack(model, xb, yb, eps=eps, targeted=targeted, generator=gen)
            with torch.no_grad():
                pa.append(model(adv).argmax(1).cpu())
            xa.append(adv.cpu())
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        dt = time.perf_counter() - t0
        x_adv, pred_adv = torch.cat(xa), torch.cat(pa)
        fooled = (pred_adv == y_all) if targeted else (pred_adv != y_all)
        norms = per_sample_norm(x_adv - x_all, attack.norm)
        results.append(EpsResult(
            eps=float(eps), clean_acc=correct.float().mean().item(),
            robust_acc=(pred_adv == y_all).float().mean().item(),
            success_rate=(fooled & correct).float().sum().item() / max(int(correct.sum()), 1),
            mean_norm=norms.mean().item(), max_norm=norms.max().item(), time_s=dt,
            images_per_s=len(y_all) / dt if dt > 0 else float("inf")))
        advs.append(x_adv)
        preds.append(pred_adv)
    return SweepResult(attack.name, attack.norm, len(y_all), results, x_all, y_all, pred_clean,
                       torch.stack(advs), torch.stack(preds))
