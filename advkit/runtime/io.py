"""Atomic file writes: a temp file in the same folder, then a rename, so no reader ever sees half a file; and
output names confined to their folder."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

from advkit.errors import AdvkitError
from advkit.runtime import faults

_UMASK = os.umask(0)
os.umask(_UMASK)


def write_all(f: BinaryIO, data: bytes, path: Path) -> None:
    """The one primitive every output write goes through: ``data`` into the open temp file ``f``.

    The fault tests replace it to simulate a full disk (an ``OSError(ENOSPC)``) for a chosen ``path``.

    Args:
        f: the temp file, open for binary writing.
        data: the whole content.
        path: the file the content is for (the temp file is renamed onto it afterwards).
    """
    f.write(data)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and a rename.

    Readers never see a half-written file, and a failed write leaves the previous file intact.

    Args:
        path: the file; its folder is created when missing.
        data: the whole content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write_all(f, data, path)
            f.flush()
            os.fsync(f.fileno())
        faults.point(f"mid_write:{path.name}")  # the fault tests stop here: temp file written, not renamed
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically, as :func:`atomic_write_bytes`.

    Args:
        path: the file; its folder is created when missing.
        text: the whole content.
    """
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, keys in their order, to ``path`` atomically.

    Args:
        path: the file; its folder is created when missing.
        obj: anything ``json.dumps`` takes.
    """
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete the temp files a killed :func:`atomic_write_bytes` left in ``folder`` (``.NAME.XXXX.tmp``).

    Only for a folder this process owns (a locked run folder): another writer's temp file would go too.

    Args:
        folder: the folder to clean; missing is fine.

    Returns:
        The files removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.glob(".*.tmp") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


_UNSAFE = re.compile(r"[^A-Za-z0-9._+=@,-]+")


def safe_name(name: str, *, max_len: int = 120) -> str:
    """A file name made from data (a class name, an image's file name, an attack name) that stays one plain
    name: separators, ``..``, control and shell characters become ``_``; never empty, hidden or too long.

    Args:
        name: the text the name comes from.
        max_len: the longest result, in characters.

    Returns:
        A name with no path separator that is neither ``.``, ``..`` nor starts with a dot.
    """
    out = _UNSAFE.sub("_", str(name)).strip("._") or "_"
    return out[:max_len]


def confined(out: str | os.PathLike, name: str) -> Path:
    """The path of ``name`` (possibly ``a/b``) inside the folder ``out``, refusing one that escapes it.

    Args:
        out: the output folder.
        name: a relative name, possibly built from data.

    Returns:
        ``out / name``, resolved.

    Raises:
        AdvkitError: ``name`` is absolute or leads outside ``out`` (``..``, or a link out of it).
    """
    base = Path(out).resolve()
    path = (base / name).resolve()
    if Path(name).is_absolute() or (path != base and base not in path.parents):
        raise AdvkitError(f"output name {name!r} leads outside the output folder {out}")
    return path


def ensure_writable_dir(path: str | os.PathLike, what: str = "--out") -> Path:
    """Check, before any work, that outputs can go into the folder ``path`` (created later when missing).

    Nothing is left behind: a temp file is made and removed in the nearest existing folder on the way.

    Args:
        path: the output folder.
        what: names the option in the error.

    Returns:
        ``path`` as a Path.

    Raises:
        AdvkitError: ``path`` (or a parent on the way) is a file, or the folder is not writable.
    """
    path = Path(path)
    probe = path
    while not probe.exists():
        if probe.is_symlink():  # a dangling link: mkdir would fail there
            raise AdvkitError(f"{what} {path}: {probe} is a broken link")
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise AdvkitError(f"{what} {path}: {probe} is a file, not a folder")
    try:  # a real probe: permission bits say nothing for root, nor on a read-only file system
        with tempfile.TemporaryFile(dir=probe, prefix=".advkit-probe-"):
            pass
    except OSError as e:
        raise AdvkitError(f"{what} {path}: cannot write in {probe} ({e.strerror or e})") from None
    return path
