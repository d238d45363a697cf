"""One attack over a dataset at several eps: accuracies, success rate, perturbation norms, speed."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from advkit.attacks import Attack, check_eps, per_sample_norm, pick_targets
from advkit.attacks.common import DISTANCES
from advkit.data import ArrayDataset
from advkit.errors import AdvkitError
from advkit.runtime.memory import HalvingBatches


@dataclass
class EpsResult:
    """One attack at one eps over a dataset.

    Attributes:
        eps: the radius, in pixel units of the attack's norm.
        clean_acc: accuracy on the clean samples.
        robust_acc: accuracy on the adversarial samples.
        success_rate: among samples the model got right, the fraction the attack fooled (targeted: the
            fraction it moved to their target class).
        mean_norm: mean perturbation size in the attack's norm, over all samples.
        max_norm: the largest perturbation size.
        time_s: seconds the attack took at this eps.
        images_per_s: samples attacked per second.
    """

    eps: float
    clean_acc: float
    robust_acc: float
    success_rate: float
    mean_norm: float
    max_norm: float
    time_s: float
    images_per_s: float


@dataclass
class SweepResult:
    """One attack over a dataset at several eps: the per-eps results and the tensors behind them.

    Attributes:
        attack: the attack's name.
        norm: the norm its eps are measured in.
        n: the number of samples.
        results: one :class:`EpsResult` per eps, in the order asked.
        x: the clean images ``[N, C, H, W]``.
        y: their labels ``[N]``.
        pred_clean: the model's predictions on ``x`` ``[N]``.
        x_adv: the adversarial images per eps ``[E, N, C, H, W]``.
        pred_adv: the predictions on them ``[E, N]``.
        targets: the target classes ``[N]`` of a targeted run, else None.
        target: how the targets were chosen (a ``TARGET_MODES`` name, or ``given``); None when untargeted.
    """

    attack: str
    norm: str
    n: int
    results: list[EpsResult]
    x: torch.Tensor = field(repr=False)
    y: torch.Tensor = field(repr=False)
    pred_clean: torch.Tensor = field(repr=False)
    x_adv: torch.Tensor = field(repr=False)
    pred_adv: torch.Tensor = field(repr=False)
    targets: torch.Tensor | None = field(default=None, repr=False)
    target: str | None = None

    def summary(self) -> dict[str, Any]:
        """The JSON-ready part: attack, norm, n, target and the per-eps results (no tensors)."""
        return {"attack": self.attack, "norm": self.norm, "n": self.n, "target": self.target,
                "results": [asdict(r) for r in self.results]}


def attack_sweep(model: nn.Module, data: ArrayDataset, attack: Attack, eps_list: list[float], *,
                 batch_size: int = 256, device: torch.device | str = "cpu", seed: int = 0,
                 targeted: bool = False, target: str | torch.Tensor = "random",
                 on_batch: Callable[[int], None] | None = None,
                 say: Callable[[str], None] | None = None) -> SweepResult:
    """Run ``attack`` on every sample of ``data`` at each eps (pixel units of ``attack.norm``).

    Seeded per eps from ``seed``, so a result does not depend on which other eps were asked for.

    Args:
        model: ``f(x in [0,1]) -> logits``.
        data: the samples to attack.
        attack: a configured attack (:func:`advkit.attacks.get_attack`).
        eps_list: the radii, pixel units of ``attack.norm``.
        batch_size: samples per attack call.
        device: where the model runs.
        seed: seeds the attack's randomness (per eps) and random targets.
        targeted: push each sample towards a target class; success then means reaching it.
        target: how targets are chosen when ``targeted``: a :data:`advkit.attacks.TARGET_MODES` name
            (``random``, ``least-likely``, ``next``; never the true class) or the targets ``[N]`` themselves.
        on_batch: called with the batch's sample count after each attacked batch (progress).
        say: where the one note goes when a batch ran out of memory and is retried in halves (besides the log).

    Returns:
        The per-eps results, the adversarial images and predictions, and the targets of a targeted run.

    Raises:
        AdvkitError: no eps, an unusable eps, no samples, a model and data that do not match, or bad targets.
    """
    if not eps_list:
        raise AdvkitError("give at least one eps")
    for e in eps_list:
        check_eps(e, attack.norm, norms=DISTANCES)
    if len(data) == 0:
        raise AdvkitError("no samples to attack")
    device = torch.device(device)
    x_all, y_all = data.tensors()
    # out of memory on a batch: the batch again in halves, down to 1 (said once)
    fit = HalvingBatches(f"{attack.name}", say=say)

    @torch.no_grad()
    def predict(xb: torch.Tensor) -> torch.Tensor:
        return model(xb.to(device)).float().cpu()

    logits = torch.cat([fit(predict, xb) for xb in x_all.split(batch_size)])
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise AdvkitError(f"model output must be logits [B, K>=2], got {tuple(logits.shape)}")
    if int(y_all.max()) >= logits.shape[1]:
        raise AdvkitError(f"labels go up to {int(y_all.max())} but the model has {logits.shape[1]} outputs; "
                          f"model and data do not match")
    pred_clean = logits.argmax(1)
    correct = pred_clean == y_all
    targets = _targets(target, y_all, logits, seed) if targeted else None
    goal_all = targets if targets is not None else y_all  # targets is set exactly when targeted
    results, advs, preds = [], [], []
    for i, eps in enumerate(eps_list):
        gen = torch.Generator(device=device).manual_seed(seed * 1000 + i)
        t0 = time.perf_counter()
        xa, pa = [], []
        def run(xb: torch.Tensor, yb: torch.Tensor, eps: float = eps,
                gen: torch.Generator = gen) -> tuple[torch.Tensor, torch.Tensor]:
            xb, yb = xb.to(device), yb.to(device)
            adv = attack(model, xb, yb, eps=eps, targeted=targeted, generator=gen)
            with torch.no_grad():
                return adv.cpu(), model(adv).argmax(1).cpu()

        for xb, yb in zip(x_all.split(batch_size), goal_all.split(batch_size)):
            adv, pred = fit(run, xb, yb, generators=(gen,))
            xa.append(adv)
            pa.append(pred)
            if on_batch:
                on_batch(len(yb))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        dt = time.perf_counter() - t0
        x_adv, pred_adv = torch.cat(xa), torch.cat(pa)
        fooled = (pred_adv == targets) if targeted else (pred_adv != y_all)
        norms = per_sample_norm(x_adv - x_all, attack.norm)
        results.append(EpsResult(
            eps=float(eps), clean_acc=correct.float().mean().item(),
            robust_acc=(pred_adv == y_all).float().mean().item(),
            success_rate=(fooled & correct).float().sum().item() / max(int(correct.sum()), 1),
            mean_norm=norms.mean().item(), max_norm=norms.max().item(), time_s=dt,
            images_per_s=len(y_all) / dt if dt > 0 else float("inf")))
        advs.append(x_adv)
        preds.append(pred_adv)
    mode = (target if isinstance(target, str) else "given") if targeted else None
    return SweepResult(attack.name, attack.norm, len(y_all), results, x_all, y_all, pred_clean,
                       torch.stack(advs), torch.stack(preds), targets, mode)


def _targets(target: str | torch.Tensor, y: torch.Tensor, logits: torch.Tensor, seed: int) -> torch.Tensor:
    """The target class of each sample: drawn by rule (the same for every eps), or given and checked."""
    if isinstance(target, str):
        return pick_targets(target, y, logits=logits, generator=torch.Generator().manual_seed(seed))
    t = torch.as_tensor(target)
    if t.shape != y.shape or t.is_floating_point():
        raise AdvkitError(f"targets must be {len(y)} integer classes, got {t.dtype} {tuple(t.shape)}")
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= logits.shape[1]):
        raise AdvkitError(f"targets must be in [0, {logits.shape[1] - 1}]")
    return t.long()
