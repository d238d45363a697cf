"""Clean stops on SIGINT (Ctrl-C) and SIGTERM (what a scheduler sends before pre-emption).

Outside a training loop a signal raises :class:`Stopped` where the program is; every output goes through the
atomic writers of :mod:`advkit.runtime.io`, which discard their temp file on any exception, so no file is left
half written. Inside a training loop (:func:`graceful`) the signal only sets a flag; the trainer checks it
between steps, writes a resumable ``last.ckpt`` and then raises :class:`Stopped`. The CLI exits with
``128 + signal number``: 130 for SIGINT, 143 for SIGTERM.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(KeyboardInterrupt):
    """The run was stopped by a signal; ``exit_code`` is what the CLI exits with (130 or 143)."""

    def __init__(self, signum: int):
        self.signum = int(signum)
        super().__init__(f"stopped by {signal.Signals(self.signum).name}")

    @property
    def exit_code(self) -> int:
        """``128 + signal number``, the shell's convention."""
        return 128 + self.signum


def _raise(signum: int, frame: object) -> None:
    raise Stopped(signum)


@contextmanager
def exit_on_signals() -> Iterator[None]:
    """Within the body, SIGINT and SIGTERM raise :class:`Stopped` where the program is (the CLI's default);
    the previous handlers come back on exit. Outside the main thread it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, _raise) for s in SIGNALS}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class StopFlag:
    """Set by a signal inside :func:`graceful`: the loop checks ``requested`` between steps."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        """A stop was asked for."""
        return self.signum is not None

    def stop(self) -> None:
        """Raise :class:`Stopped` for the signal that was received (call once the state is saved).

        Raises:
            Stopped: always.
        """
        raise Stopped(self.signum if self.signum is not None else signal.SIGTERM)


@contextmanager
def graceful(enabled: bool = True) -> Iterator[StopFlag]:
    """Within the body, SIGINT and SIGTERM set a flag instead of interrupting (a second signal interrupts at
    once); the previous handlers come back on exit.

    Args:
        enabled: install the handlers; ``False`` (or outside the main thread) yields a flag that never sets.

    Yields:
        The flag to check between steps.
    """
    flag = StopFlag()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: object) -> None:
        if flag.signum is not None:  # asked twice: stop now
            raise Stopped(signum)
        flag.signum = signum

    old = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)
