"""One run per output folder: ``OUT/.advkit.lock`` holds the writer's pid, host and start time under an
``fcntl.flock`` that lives as long as the process, so a second run into the same ``--out`` refuses at once
and a crashed run (even a SIGKILL) never leaves the folder locked: the kernel drops the lock with the process.
"""

from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from advkit.errors import AdvkitError
from advkit.runtime.distributed import is_main_process

LOCK = ".advkit.lock"

try:  # POSIX; elsewhere the pid in the file is checked instead
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

_HELD: dict[Path, int] = {}  # folders this process holds -> nesting depth (a command may lock what it calls)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        return f"pid {info['pid']} on {info['host']} (started {info['started']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another run"


@contextmanager
def out_lock(out: str | os.PathLike, *, file: bool = False) -> Iterator[Path]:
    """Hold the output folder ``out`` for the body: create it when missing and lock it against other runs.

    Args:
        out: the run's output folder.
        file: ``out`` is one output file (a CSV, an npz): the lock is ``.NAME.advkit.lock`` beside it, and
            only its folder is created.

    Yields:
        The output (folder or file), resolved.

    Raises:
        AdvkitError: another live process holds the folder (the message names its pid, host and start time),
            or the folder cannot be created.
    """
    target = Path(out).resolve()
    folder = target.parent if file else target
    key = target
    if key in _HELD or not is_main_process():  # held by this process already; or a torchrun rank > 0
        _HELD[key] = _HELD.get(key, 0) + 1
        try:
            yield target
        finally:
            _HELD[key] -= 1
            if not _HELD[key]:
                del _HELD[key]
        return
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise AdvkitError(f"--out {out}: {folder} is a file, not a folder") from None
    path = folder / (f".{target.name}{LOCK}" if file else LOCK)
    try:
        fd = _acquire(path, out)
    except BaseException:
        _remove_if_empty(folder, created)
        raise
    try:
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        _HELD[key] = 1
        try:
            yield target
        finally:
            del _HELD[key]
            path.unlink(missing_ok=True)  # before the unlock: a waiting run then sees a new file (see _acquire)
    finally:
        os.close(fd)  # closing drops the flock
        _remove_if_empty(folder, created)


def _remove_if_empty(folder: Path, created: bool) -> None:
    """A run that wrote nothing (bad input, an interrupt) leaves no empty folder it made behind."""
    if created:
        try:
            folder.rmdir()
        except OSError:
            pass


def _acquire(path: Path, out: str | os.PathLike) -> int:
    """Open and lock ``path``; retry when the holder removed it between our open and our lock."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise AdvkitError(f"--out {out} is in use by {_holder(path)}; wait for it to finish or "
                                      f"choose another --out") from None
            else:  # pragma: no cover - no flock: trust a live pid in the file
                try:
                    pid = int(json.loads(path.read_text() or "{}").get("pid", 0))
                except ValueError:
                    pid = 0
                if pid and pid != os.getpid() and _alive(pid):
                    raise AdvkitError(f"--out {out} is in use by {_holder(path)}; choose another --out")
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            return fd
        os.close(fd)  # we locked a file its holder had just removed: take the new one
