"""The run folder every trainer stands on, and the small jobs every training loop shares.

A run folder holds ``config.yaml`` (the resolved config), ``metrics.jsonl`` (one JSON line per epoch) and
``last.ckpt`` (the resume checkpoint, written atomically). Rank 0 alone writes; every rank keeps the
metrics lines, so a resumed run continues the same file. Beside it: CPU copies of module states, the EMA
update, capture and restore of random streams, and a deterministic mode that is undone when the run ends.
"""

from __future__ import annotations

import io
import json
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import torch
from torch import nn

from advkit.config import to_yaml
from advkit.errors import AdvkitError
from advkit.runtime import faults
from advkit.runtime.io import atomic_write_bytes, atomic_write_text, remove_stale_temps

if TYPE_CHECKING:
    from tqdm.auto import tqdm

log = logging.getLogger(__name__)

CKPT = "last.ckpt"
CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
TORCH_RNG = "torch_rng"  # the key of the global torch stream in a checkpoint
MID_EPOCH = "mid_epoch"  # the key of a checkpoint written inside an epoch (on SIGINT/SIGTERM)


def cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of ``module``'s state dict (safe to keep while training goes on).

    Args:
        module: any module.

    Returns:
        Name -> tensor, copied to the CPU.
    """
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """One exponential-moving-average step, in place on ``ema``.

    Parameters: ``ema = decay * ema + (1 - decay) * model``; buffers (BatchNorm statistics) are copied as
    they are.

    Args:
        ema: the average, a copy of ``model``'s architecture.
        model: the trained module.
        decay: the weight of the old average, in [0, 1) (e.g. 0.999).
    """
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p, 1 - decay)
    for eb, b in zip(ema.buffers(), model.buffers()):
        eb.copy_(b)


@contextmanager
def deterministic(on: bool) -> Iterator[None]:
    """Run the body with ``torch.use_deterministic_algorithms(True)`` when ``on``.

    The previous mode (and its warn-only flag) comes back when the body exits, also on an exception.

    Args:
        on: switch deterministic algorithms on; ``False`` leaves the mode as it is.
    """
    was, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    if on:
        torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was, warn_only=warn_only)


def rng_state(generators: dict[str, torch.Generator]) -> dict[str, torch.Tensor]:
    """The state of each named generator and of the global torch stream, as :func:`restore_rng` takes it.

    Args:
        generators: the generators, by name.

    Returns:
        Name -> state (CPU tensors), plus ``torch_rng`` for the global stream.
    """
    state = {name: g.get_state().cpu() for name, g in generators.items()}
    state[TORCH_RNG] = torch.get_rng_state()
    return state


def restore_rng(state: dict[str, Any], generators: dict[str, torch.Generator], *,
                optional: Iterable[str] = ()) -> None:
    """Put each named generator and the global torch stream back to ``state`` (from :func:`rng_state`), so
    the draws that follow are the ones an uninterrupted run makes.

    Args:
        state: a mapping holding one state per generator name and ``torch_rng``.
        generators: the generators to restore, by name.
        optional: names that older checkpoints may lack; such a generator keeps its fresh seed.

    Raises:
        KeyError: a generator's state that is not optional is missing.
    """
    skip = set(optional)
    for name, g in generators.items():
        if name in state or name not in skip:
            g.set_state(state[name].to(g.get_state().device))
    torch.set_rng_state(state[TORCH_RNG])


def config_diff(old: dict, new: dict, *, allowed: Iterable[str] = (), whole: Iterable[str] = (),
                prefix: str = "") -> list[str]:
    """The changed keys between two config dicts, as ``"a.b: old -> new"`` lines sorted by key.

    Args:
        old, new: nested config dicts (``advkit.config.to_dict``).
        allowed: dotted keys that may change (a device, a data folder): left out.
        whole: dotted keys whose dict values are compared as one value (named once, not per sub-key).
        prefix: the dotted path of ``old`` and ``new`` inside the full config.

    Returns:
        One line per changed key; empty when the configs agree.
    """
    allowed, whole = set(allowed), set(whole)
    out = []
    for k in sorted(set(old) | set(new)):
        key = f"{prefix}{k}"
        va, vb = old.get(k), new.get(k)
        if isinstance(va, dict) and isinstance(vb, dict) and key not in whole:
            out += config_diff(va, vb, allowed=allowed, whole=whole, prefix=key + ".")
        elif va != vb and key not in allowed:
            out.append(f"{key}: {va!r} -> {vb!r}")
    return out


def epoch_order_state(gen: torch.Generator, mid: dict | None) -> torch.Tensor:
    """The shuffle state an epoch draws its order from, set on ``gen`` (a resumed mid-epoch run restores the
    interrupted epoch's, so its order is drawn again).

    Args:
        gen: the shuffle generator.
        mid: the checkpoint's ``MID_EPOCH`` entry, or None.

    Returns:
        The state, for a later mid-epoch checkpoint's ``epoch_shuffle_rng``.
    """
    if mid is not None:
        gen.set_state(mid["epoch_shuffle_rng"])
    return gen.get_state()


def skip_done_steps(batches: Iterator, gen: torch.Generator, mid: dict | None) -> int:
    """Consume the steps a mid-epoch checkpoint had done (the order is drawn at the first batch), then restore
    the shuffle state it saved.

    Args:
        batches: the epoch's batch iterator (consumed up to the step reached).
        gen: the shuffle generator.
        mid: the checkpoint's ``MID_EPOCH`` entry, or None (nothing skipped).

    Returns:
        The steps skipped.
    """
    if mid is None:
        return 0
    step = 0
    for step, _ in enumerate(batches, 1):
        if step == mid["step"]:
            break
    gen.set_state(mid["shuffle_rng"])
    return step


def progress_bar(iterable: Iterable, *, total: int, desc: str, show: bool) -> tqdm:
    """A tqdm bar over ``iterable`` that vanishes when done; ``show=False`` (or no terminal) hides it.

    Args:
        iterable: what the bar iterates over.
        total: the number of items, for the bar's length.
        desc: the bar's label.
        show: draw the bar (when there is a terminal).

    Returns:
        The bar: iterate it; ``set_postfix`` shows the latest numbers.
    """
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, disable=None if show else True)


class RunFolder:
    """A trainer's output folder: ``config.yaml``, ``metrics.jsonl`` and the resume checkpoint ``last.ckpt``.

    Without a folder (``out_dir=None``) or on a rank other than 0 nothing is written, but the metrics lines
    are still kept, so every rank sees the same history.
    """

    def __init__(self, out_dir: str | Path | None, *, main: bool = True):
        self.out = Path(out_dir) if out_dir is not None else None
        self.writes = self.out is not None and main
        self.lines: list[str] = []

    @property
    def checkpoint(self) -> Path | None:
        """The resume checkpoint's path (``last.ckpt``); ``None`` without a folder."""
        return self.out / CKPT if self.out is not None else None

    def resuming(self, resume: bool) -> bool:
        """Whether this run continues from ``last.ckpt``: asked for and present.

        Asked for but absent, it warns and the run starts from scratch.

        Args:
            resume: whether the caller asked to resume.

        Returns:
            True to resume.
        """
        if self.out is None or not resume:
            return False
        if (self.out / CKPT).is_file():
            return True
        log.warning("nothing to resume in %s: starting from scratch", self.out)
        return False

    def resume(self, cfg_dict: dict, *, kind: str = "training", needs: Iterable[str] = (),
               allowed: Iterable[str] = (), whole: Iterable[str] = ()) -> dict:
        """Read ``last.ckpt`` for a resumed run and take back its metrics lines.

        Args:
            cfg_dict: this run's resolved config (``to_dict``); the checkpoint's must equal it.
            kind: the checkpoint's kind in the error messages ("training", "GAN").
            needs: keys the checkpoint must hold to be of that kind.
            allowed, whole: as for :func:`config_diff`.

        Returns:
            The checkpoint's state dict (CPU tensors).

        Raises:
            AdvkitError: the file is unreadable or of another kind, or it was written with another config
                (the message names every changed key).
        """
        path = self.checkpoint
        if path is None:
            raise AdvkitError("nothing to resume: the run has no output folder")
        st = load_checkpoint(path, kind=kind, needs=needs)
        diff = config_diff(st["config"], cfg_dict, allowed=allowed, whole=whole)
        if diff:
            raise AdvkitError(f"cannot resume {path}: it was written with another config ({'; '.join(diff)})")
        self.lines = list(st["metrics_lines"])
        log.info("resumed from %s at epoch %d", path, st["epoch"])
        return st

    @property
    def last_metrics(self) -> dict:
        """The latest epoch's metrics (empty before the first epoch)."""
        return json.loads(self.lines[-1]) if self.lines else {}

    def write_config(self, cfg: Any) -> None:
        """Create the folder and write the resolved ``config.yaml`` (rank 0 only).

        Args:
            cfg: the run's config dataclass.
        """
        if self.writes and self.out is not None:  # (writes implies a folder)
            self.out.mkdir(parents=True, exist_ok=True)
            for p in remove_stale_temps(self.out):  # left by a run killed inside a write
                log.info("removed %s, a temp file a stopped run left", p)
            atomic_write_text(self.out / CONFIG, to_yaml(cfg))

    def append_metrics(self, metrics: dict) -> None:
        """Add an epoch's line and rewrite ``metrics.jsonl`` whole (atomic; rank 0 only).

        Args:
            metrics: the epoch's numbers, JSON-serializable.
        """
        self.lines.append(json.dumps(metrics))
        if self.writes and self.out is not None:
            atomic_write_text(self.out / METRICS, "\n".join(self.lines) + "\n")

    def save_checkpoint(self, state: dict) -> None:
        """Write ``last.ckpt`` atomically (rank 0 only): a crash mid-write leaves the previous one intact.

        Args:
            state: what ``torch.save`` writes: tensors, numbers, strings, lists and dicts only, so that
                :func:`load_checkpoint` reads it back without unpickling code.
        """
        if not self.writes or self.out is None:
            return
        if not (self.out / CKPT).exists():
            faults.point("before_first_ckpt")
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(self.out / CKPT, buf.getvalue())
        if MID_EPOCH not in state:
            faults.point(f"after_epoch:{len(self.lines)}")


def load_checkpoint(path: str | Path, *, kind: str = "training", needs: Iterable[str] = ()) -> dict:
    """Read a resume checkpoint on the CPU without running pickled code.

    Args:
        path: the checkpoint (``last.ckpt``).
        kind: what the checkpoint is, for the error messages ("training", "GAN").
        needs: keys the checkpoint must hold.

    Returns:
        The checkpoint's dict.

    Raises:
        AdvkitError: unreadable, or not a dict holding every key in ``needs``.
    """
    try:
        st = torch.load(path, map_location="cpu", weights_only=True)  # never runs pickled code
    except Exception as e:  # torch raises several types for corrupt or foreign files
        raise AdvkitError(f"cannot resume from {path}: not a readable advkit {kind} checkpoint ({e})") from None
    needs = tuple(needs)
    if not isinstance(st, dict) or any(k not in st for k in needs):  # a plain tensor is no checkpoint either
        what = kind if kind.endswith("training") else f"{kind} training"
        raise AdvkitError(f"cannot resume from {path}: not an advkit {what} checkpoint")
    return st
