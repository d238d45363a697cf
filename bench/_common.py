"""Shared by the benchmarks: the machine description and the one envelope every result file is written in.

A result file is ``{"bench", "command", "commit", "machine", "date", "results"}``: what ran (the module and its
exact arguments), on which code (git commit, ``+dirty`` when tracked files differ from it), where (platform,
cores, torch and its threads, device, GPU), when (UTC), and the benchmark's own figures under ``results``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from advkit.runtime.io import atomic_write_json, atomic_write_text

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
ENVELOPE_KEYS = ("bench", "command", "commit", "machine", "date", "results")

if TYPE_CHECKING:
    import torch


def machine(device: torch.device | str = "cpu") -> dict:
    """Where a benchmark ran: platform, processor, cores, torch and its thread count, device, GPU name on CUDA.

    Args:
        device: the device the benchmark measured on.

    Returns:
        A JSON-ready dict.
    """
    import torch  # here, so reading results (bench.tables) needs no torch

    device = torch.device(device)
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def git_commit(repo: Path = REPO) -> str:
    """The checked-out commit of ``repo``, with ``+dirty`` when tracked files have changes; ``unknown`` without
    git or outside a repository. Untracked files (run folders, fresh result files) do not count as changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=30)
        if head.returncode != 0:
            return "unknown"
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                                capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    dirty = status.returncode != 0 or bool(status.stdout.strip())
    return head.stdout.strip() + ("+dirty" if dirty else "")


def command_line(bench: str, argv: list[str] | None = None) -> str:
    """The command that reruns this benchmark: ``python -m bench.NAME`` and the arguments it was given."""
    args = sys.argv[1:] if argv is None else argv
    return " ".join(["python", "-m", f"bench.{bench}", *(shlex.quote(a) for a in args)])


def envelope(bench: str, results: Any, device: torch.device | str = "cpu",
             machine_extra: dict | None = None) -> dict:
    """The result envelope of a benchmark run now, in this process.

    Args:
        bench: the benchmark's module name under ``bench`` (``attack_speed``).
        results: its figures, JSON-ready.
        device: the device it measured on.
        machine_extra: facts about the machine's state this benchmark records besides the usual ones
            (e.g. how busy the CPU was).

    Returns:
        ``{"bench", "command", "commit", "machine", "date", "results"}``.
    """
    return {"bench": bench, "command": command_line(bench), "commit": git_commit(),
            "machine": {**machine(device), **(machine_extra or {})},
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "results": results}


def write_result(path: str | os.PathLike, bench: str, results: Any, *, device: torch.device | str = "cpu",
                 machine_extra: dict | None = None, table: bool = False) -> dict:
    """Write ``results`` to ``path`` in the envelope (atomically), and its table next to it when ``table``.

    Args:
        path: the JSON file (``bench/results/NAME.json`` for a run worth keeping).
        bench: the benchmark's module name.
        results: its figures, JSON-ready.
        device: the device it measured on.
        machine_extra: see :func:`envelope`.
        table: also write ``path`` with ``.md``: the table ``python -m bench.tables`` regenerates from the JSON.

    Returns:
        The envelope written.
    """
    env = envelope(bench, results, device, machine_extra)
    path = Path(path)
    atomic_write_json(path, env)
    if table:
        from bench._render import render_file  # the renderer reads envelopes; it needs no torch

        text = render_file(env)
        if text is not None:
            atomic_write_text(path.with_suffix(".md"), text)
    return env


def read_result(path: str | os.PathLike) -> dict:
    """A result file's envelope; raises ``ValueError`` naming the file when it is not one."""
    env = json.loads(Path(path).read_text())
    missing = [k for k in ENVELOPE_KEYS if not isinstance(env, dict) or k not in env]
    if missing:
        raise ValueError(f"{path}: not a bench result envelope (missing {', '.join(missing)})")
    return env
