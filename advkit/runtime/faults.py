"""Fault injection for the fault tests: ``ADVKIT_FAULT=kill@POINT`` makes the process signal itself at a named
point, so a test can stop a real ``python -m advkit`` run exactly where it wants.

The only reader of ``ADVKIT_FAULT``. Unset (always, outside the tests) every :func:`point` is a dictionary
look-up and nothing else. Points: ``before_first_ckpt`` (a run folder's first ``last.ckpt`` is about to be
written), ``mid_write:NAME`` (an atomic write of the file NAME is on disk as its temp file, not yet renamed),
``after_epoch:N`` (``last.ckpt`` of epoch N is written), ``step:N`` (a trainer finished its N-th step of the
run). Actions: ``kill`` (SIGKILL), ``term`` (SIGTERM), ``int`` (SIGINT); several faults are comma-separated.
"""

from __future__ import annotations

import os
import signal

ENV = "ADVKIT_FAULT"
_ACTIONS = {"kill": signal.SIGKILL, "term": signal.SIGTERM, "int": signal.SIGINT}


def point(name: str) -> None:
    """Mark a fault point: signal this process when ``ADVKIT_FAULT`` names ``name``.

    Args:
        name: the point, e.g. ``"before_first_ckpt"``, ``"mid_write:last.ckpt"``, ``"after_epoch:2"``.
    """
    spec = os.environ.get(ENV)
    if not spec:
        return
    for item in spec.split(","):
        action, _, where = item.strip().partition("@")
        if where == name and action in _ACTIONS:
            os.kill(os.getpid(), _ACTIONS[action])
