"""Partial progress a long run can resume from: one small file per finished piece of work (an eval batch),
each written atomically, under a fingerprint of everything the results depend on.

A run killed after piece N leaves pieces 0..N on disk; the same run started again with ``resume`` takes them
back instead of recomputing them. A changed fingerprint (another config, model or data) starts afresh. Files
hold tensors, numbers, strings, lists and dicts only and are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from advkit.runtime import faults
from advkit.runtime.io import atomic_write_bytes, atomic_write_text, safe_name

log = logging.getLogger(__name__)
FINGERPRINT = "fingerprint.json"


def fingerprint_of(obj: Any) -> str:
    """A short hex digest of a JSON-able description (a config, a model's file digest, a data fingerprint).

    Args:
        obj: anything ``json.dumps`` takes (other values by their ``str``).

    Returns:
        16 hex digits.
    """
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class Journal:
    """A folder of finished pieces of work, valid for one fingerprint.

    Args:
        folder: where the pieces live (e.g. ``OUT/.eval_progress``).
        fingerprint: what the results depend on (:func:`fingerprint_of`).
        resume: take back pieces of an earlier run with the same fingerprint; ``False`` starts afresh.
        writes: write pieces (False on the ranks that do not write, or to only read).
    """

    def __init__(self, folder: str | Path, fingerprint: str, *, resume: bool, writes: bool = True):
        self.folder, self.fingerprint, self.writes = Path(folder), fingerprint, writes
        self.taken = self.put_count = 0
        stamp = self.folder / FINGERPRINT
        old = None
        if stamp.is_file():
            try:
                old = json.loads(stamp.read_text()).get("fingerprint")
            except (OSError, ValueError, AttributeError):
                old = None
        if resume and old is not None and old != fingerprint:
            log.warning("%s holds progress of another run (config, model or data changed): starting afresh",
                        self.folder)
        if writes and (not resume or old != fingerprint) and self.folder.exists():
            shutil.rmtree(self.folder)
        self.resumed = resume and old == fingerprint
        self.stamped = self.resumed  # the folder is made at the first piece: a run that fails earlier leaves none

    def _path(self, key: str) -> Path:
        return self.folder / (safe_name(key, max_len=200) + ".pt")

    def get(self, key: str) -> dict | None:
        """The piece stored under ``key`` by a resumed run, or None (not resuming, absent or unreadable).

        Args:
            key: the piece's name (e.g. ``model-tm0-batch12``).

        Returns:
            The stored dict, or None.
        """
        path = self._path(key)
        if not self.resumed or not path.is_file():
            return None
        try:
            st = torch.load(path, map_location="cpu", weights_only=True)  # never runs pickled code
        except Exception:  # a torn or foreign file: recompute the piece
            log.warning("cannot read %s: computing it again", path)
            return None
        if not isinstance(st, dict):
            return None
        self.taken += 1
        return st

    def put(self, key: str, state: dict) -> None:
        """Store a finished piece atomically (nothing when this journal does not write).

        Args:
            key: the piece's name.
            state: tensors, numbers, strings, lists and dicts only.
        """
        if not self.writes:
            return
        if not self.stamped:
            made = not self.folder.exists()
            self.folder.mkdir(parents=True, exist_ok=True)
            try:
                atomic_write_text(self.folder / FINGERPRINT, json.dumps({"fingerprint": self.fingerprint}) + "\n")
            except OSError:  # e.g. a full disk: leave no empty progress folder behind
                if made:
                    shutil.rmtree(self.folder, ignore_errors=True)
                raise
            self.stamped = True
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(self._path(key), buf.getvalue())
        self.put_count += 1
        faults.point(f"journal:{self.put_count}")  # the fault tests kill here

    def close(self) -> None:
        """The run is complete (its results written): remove the progress."""
        if self.writes:
            shutil.rmtree(self.folder, ignore_errors=True)
