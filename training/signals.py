"""Ctrl-C / SIGTERM as a request to stop at the next safe point instead of an exception mid-update, and Ctrl-C
outside training (start-up) as a one-line exit."""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType
from typing import Any


class GracefulStop:
    """While entered, the first SIGINT or SIGTERM sets ``requested`` (the runner stops after the current
    cycle); a second SIGINT raises ``KeyboardInterrupt`` as usual. Calling the object returns ``requested``.

    Handlers can only be installed from the main thread; elsewhere the object does nothing.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __call__(self) -> bool:
        return self.requested

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if not self.requested:
            print(
                f"\n{signal.Signals(signum).name}: stopping after this cycle to save a checkpoint "
                "(Ctrl-C again aborts)",
                file=sys.stderr,
                flush=True,
            )
        self.requested = True

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}


def exit_on_interrupt(message: str) -> None:
    """Make SIGINT (Ctrl-C) end the process at once: ``message`` on one line of stderr, exit status 130. For the
    command line's start-up (imports, composing the config, building the envs), where there is nothing to save
    and a ``KeyboardInterrupt`` raised deep inside an import or a library would end in a traceback, or be
    reported as another error (a failed import). ``GracefulStop`` takes over while training runs.

    Only the main thread can install the handler; elsewhere this does nothing."""

    def exit_now(signum: int, frame: FrameType | None) -> None:
        sys.stdout.flush()
        print(f"\n{message}", file=sys.stderr, flush=True)
        os._exit(130)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, exit_now)
