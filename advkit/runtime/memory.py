"""Out of memory on a batch: run it again in halves, down to one sample, instead of dying.

A CUDA ``torch.OutOfMemoryError`` and the CPU's ``MemoryError`` are caught; the batch's random stream is put
back before each retry, and once a size failed later batches start at the size that worked. For an attack
that treats each sample on its own (no random start, or a per-sample stream) the results equal the unsplit
batch's.
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence, TypeVar

import torch

log = logging.getLogger(__name__)
T = TypeVar("T", torch.Tensor, tuple)
OOM_ERRORS: tuple[type[BaseException], ...] = (torch.OutOfMemoryError, MemoryError)


class HalvingBatches:
    """Calls ``fn`` on a batch, splitting it in halves (recursively) when it runs out of memory.

    Args:
        what: names the work in the one message it logs ("the PGD attack").
        say: where that message goes besides the log (e.g. the CLI's echo); None: the log only.
    """

    def __init__(self, what: str, say: Callable[[str], None] | None = None):
        self.what, self.say = what, say
        self.limit: int | None = None  # the largest size that worked after a failure
        self.said = False

    def __call__(self, fn: Callable[..., T], *tensors: torch.Tensor,
                 generators: Sequence[torch.Generator] = ()) -> T:
        """``fn(*tensors)`` for the whole batch, or the concatenation (dim 0) of its results on the halves.

        Args:
            fn: takes the batch's tensors (equal first dimension), returns a tensor or a tuple of tensors with
                one row per sample.
            *tensors: the batch.
            generators: random streams ``fn`` draws from: put back to their state before each retry.

        Returns:
            What ``fn`` returns for the whole batch.

        Raises:
            MemoryError, torch.OutOfMemoryError: a single sample does not fit.
        """
        n = len(tensors[0])
        size = n if self.limit is None else min(n, self.limit)
        if size < n:
            return _cat([self(fn, *(t[s:s + size] for t in tensors), generators=generators)
                         for s in range(0, n, size)])
        states = [g.get_state() for g in generators]
        try:
            return fn(*tensors)
        except OOM_ERRORS:
            if n == 1:
                raise
        # out of the except block: the exception (and the tensors its frames hold) is freed before the retry
        for g, st in zip(generators, states):
            g.set_state(st)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        half = (n + 1) // 2
        self.limit = half
        if not self.said:
            self.said = True
            message = f"out of memory on a batch of {n} in {self.what}: retrying in batches of {half} (down to 1)"
            log.warning(message)
            if self.say is not None:
                self.say(message)
        return _cat([self(fn, *(t[:half] for t in tensors), generators=generators),
                     self(fn, *(t[half:] for t in tensors), generators=generators)])


def _cat(parts: list):
    if isinstance(parts[0], tuple):
        return tuple(torch.cat([p[i] for p in parts]) for i in range(len(parts[0])))
    return torch.cat(parts)
