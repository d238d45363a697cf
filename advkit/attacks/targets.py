"""Target classes for targeted attacks: one rule per name, shared by ``advkit attack`` and the eval harness."""

from __future__ import annotations

import torch

from advkit.errors import AdvkitError

TARGET_MODES = ("random", "least-likely", "next")


def pick_targets(mode: str, y: torch.Tensor, *, num_classes: int | None = None, logits: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """One target class per sample, never the true one.

    Args:
        mode: ``random`` (a wrong class drawn uniformly), ``least-likely`` (the wrong class the model scores
            lowest on the clean image: the hardest target) or ``next`` (``(y + 1) mod K``).
        y: the true labels ``[B]``.
        num_classes: ``K``; read from ``logits`` when they are given.
        logits: the model's clean logits ``[B, K]``; needed for ``least-likely``.
        generator: drives ``random`` (on ``y``'s device): the same seed, the same targets.

    Returns:
        Integer targets ``[B]`` on ``y``'s device, each different from its ``y``.

    Raises:
        AdvkitError: an unknown mode, fewer than 2 classes, or ``least-likely`` without logits.
    """
    if mode not in TARGET_MODES:
        raise AdvkitError(f"unknown target mode {mode!r}; valid: {', '.join(TARGET_MODES)}")
    k = logits.shape[-1] if logits is not None else num_classes
    if k is None:
        raise AdvkitError("pick_targets needs num_classes or logits")
    if k < 2:
        raise AdvkitError(f"a targeted attack needs at least 2 classes, got {k}")
    if mode == "random":
        # a shift in [1, K-1] lands uniformly on the K-1 wrong classes
        shift = torch.randint(1, k, y.shape, generator=generator, device=y.device)
        return (y + shift) % k
    if mode == "next":
        return (y + 1) % k
    if logits is None:
        raise AdvkitError("least-likely targets need the model's clean logits")
    z = logits.detach().float().scatter(1, y.long()[:, None].to(logits.device), float("inf"))
    return z.argmin(1).to(y.device, y.dtype)
