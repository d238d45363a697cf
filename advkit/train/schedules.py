"""Learning-rate schedules as a multiplier of the peak lr, per optimizer step."""

from __future__ import annotations

import math

import torch

from advkit.train.config import ScheduleConfig


def lr_factor(cfg: ScheduleConfig, step: int, total: int, steps_per_epoch: int) -> float:
    """The learning-rate multiplier (of the peak lr) at optimizer step ``step``.

    Args:
        cfg: the schedule.
        step: the optimizer steps taken so far.
        total: all the run's optimizer steps (``t = step / total`` in [0, 1]).
        steps_per_epoch: optimizer steps per epoch, for the warm-up given in epochs.

    Returns:
        The multiplier, in [0, 1].
    """
    warm = cfg.warmup_epochs * steps_per_epoch
    if warm and step < warm:
        return (step + 1) / warm
    t = min(step / max(total, 1), 1.0)
    if cfg.name == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t))
    if cfg.name == "cyclic":  # triangle 0 -> 1 -> 0, as in fast adversarial training
        return t / cfg.peak if t < cfg.peak else max(0.0, (1 - t) / (1 - cfg.peak))
    if cfg.name == "step":
        return cfg.gamma ** sum(t >= m for m in cfg.milestones)
    return 1.0


def make_scheduler(opt: torch.optim.Optimizer, cfg: ScheduleConfig, total: int,
                   steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler stepping ``opt``'s learning rate by :func:`lr_factor`, once per optimizer step.

    Args:
        opt: the optimizer; its lr is the peak.
        cfg: the schedule.
        total: all the run's optimizer steps.
        steps_per_epoch: optimizer steps per epoch.

    Returns:
        The scheduler.
    """
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(cfg, s, total, steps_per_epoch))
