"""Stopping a sweep as a whole, so that the same command started again continues it (``resume=auto``).

The first Ctrl-C or SIGTERM to the process that runs a sweep (``SweepStop``, a Hydra callback of
``configs/hydra/default.yaml``) makes ``<sweep dir>/stop_requested``: each running job sees it after its current
cycle and stops with a checkpoint, as a run does on Ctrl-C, and a job that starts after it does not train; the
process waits for its jobs and prints the sweep's summary. A second Ctrl-C exits at once. Being a file, the request
reaches jobs in worker processes (joblib) and on other machines (SLURM) alike, and can be made by hand to stop a
sweep from elsewhere; the next start of the sweep removes it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from training.resume import AUTO

STOP_FILE = "stop_requested"
"""In a sweep dir: the sweep is asked to stop."""


def stop_requested(sweep_dir: str | Path) -> bool:
    """Whether the sweep in ``sweep_dir`` is asked to stop (its ``STOP_FILE`` exists)."""
    return (Path(sweep_dir) / STOP_FILE).exists()


def request_stop(sweep_dir: str | Path) -> None:
    """Ask the sweep in ``sweep_dir`` to stop: its running jobs after their cycle, and no job starts training."""
    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    (Path(sweep_dir) / STOP_FILE).touch()


class _RunningSweep:
    """The sweep this process runs: its dir, how it continues once stopped, whether it was asked to stop, and the
    signal handlers it replaced."""

    def __init__(self, sweep_dir: Path, to_continue: str) -> None:
        self.dir = sweep_dir
        self.to_continue = to_continue
        self.requested = False
        self.previous: dict[int, Any] = {}

    def request(self, why: str) -> None:
        if not self.requested:
            print(
                f"\n{why}: the sweep stops: its running jobs stop after their cycle and save a checkpoint, and no "
                f"more jobs start; {self.to_continue} (Ctrl-C again exits at once)",
                file=sys.stderr,
                flush=True,
            )
        self.requested = True
        request_stop(self.dir)

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested and signum == signal.SIGINT:
            sys.stdout.flush()
            print(
                "\ninterrupted: the sweep exits at once (Ctrl-C again); a job stopped this way keeps its last "
                "complete checkpoint",
                file=sys.stderr,
                flush=True,
            )
            os._exit(130)
        self.request(signal.Signals(signum).name)


_running: _RunningSweep | None = None  # the sweep this process runs (between SweepStop's start and end)


def runs_here(sweep_dir: str | Path) -> bool:
    """Whether this process runs the sweep in ``sweep_dir`` (a job of Hydra's basic launcher runs in it)."""
    return _running is not None and _running.dir.resolve() == Path(sweep_dir).resolve()


def stop_here(sweep_dir: str | Path, why: str) -> None:
    """Ask the sweep that this process runs to stop (a job of it that ran here was stopped by ``why``)."""
    if _running is not None and runs_here(sweep_dir):
        _running.request(why)


class SweepStop(Callback):
    """Hydra callback: while a sweep runs, the first SIGINT or SIGTERM to its process asks it to stop
    (``request_stop``), and a second SIGINT exits at once. A start removes the stop request of the one before."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global _running
        sweep_dir = Path(config.hydra.sweep.dir)
        (sweep_dir / STOP_FILE).unlink(missing_ok=True)
        if config.get("resume") == AUTO:
            to_continue = "start the same command again to continue"
        else:
            to_continue = "continue a stopped job with python scripts/train.py resume=<its dir>"
        _running = _RunningSweep(sweep_dir, to_continue)
        if threading.current_thread() is threading.main_thread():
            _running.previous = {s: signal.signal(s, _running.handle) for s in (signal.SIGINT, signal.SIGTERM)}

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global _running
        if _running is None:
            return
        for s, handler in _running.previous.items():
            signal.signal(s, handler)
        if _running.requested:
            print(f"stopped: {_running.to_continue}", flush=True)
        _running = None
