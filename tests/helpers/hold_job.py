"""A Hydra callback for sweep stop tests: chosen jobs hold still at a chosen moment, so that a test can stop or
kill the sweep with its jobs in known states. Add it with ``+hydra.callbacks.hold_job._target_=hold_job.HoldJob``
and this folder on ``PYTHONPATH`` (launchers import it in their worker processes).

The environment chooses: ``HOLD_JOBS`` is ``<job>:<moment>,...``, where ``<job>`` is the job dir's name and
``<moment>`` one of

- ``start``: when the job starts, before it looks at its dir; it sleeps until killed;
- ``kill<n>``: once epoch ``n`` (counted from 1 over the run) is logged and checkpointed; it sleeps until killed;
- ``stop<n>``: there too, but only until the sweep is asked to stop (``training.sweep_stop``), then it goes on;

and ``HOLD_MARKERS`` is a dir where each job writes the file ``<job>`` once it holds. Without ``HOLD_JOBS`` no
job holds.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from training import sweep_stop
from training.checkpoint import Checkpointer
from training.runner import Runner

ON_EPOCH_END = Checkpointer.on_epoch_end  # (worker processes run job after job: each job starts from it)


def holding(job: str) -> None:
    (Path(os.environ["HOLD_MARKERS"]) / job).write_text(str(os.getpid()))


def hold_after_epoch(job: str, epochs: int, sweep_dir: Path | None) -> None:
    """Make this process's checkpointer hold once ``epochs`` epochs are done and checkpointed: until killed, or
    with ``sweep_dir`` until that sweep is asked to stop."""

    def on_epoch_end_then_hold(self: Checkpointer, runner: Runner, record: Any) -> None:
        ON_EPOCH_END(self, runner, record)
        if runner.epoch == epochs:
            holding(job)
            while sweep_dir is None or not sweep_stop.stop_requested(sweep_dir):
                time.sleep(0.02)

    Checkpointer.on_epoch_end = on_epoch_end_then_hold  # type: ignore[method-assign]


class HoldJob(Callback):
    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        Checkpointer.on_epoch_end = ON_EPOCH_END  # type: ignore[method-assign]
        job = Path(config.hydra.runtime.output_dir).name
        chosen = dict(item.split(":") for item in filter(None, os.environ.get("HOLD_JOBS", "").split(",")))
        moment = chosen.get(job)
        if moment == "start":
            holding(job)
            time.sleep(3600)
        elif moment is not None:
            sweep_dir = Path(config.hydra.sweep.dir) if moment.startswith("stop") else None
            hold_after_epoch(job, int(moment[4:]), sweep_dir)
