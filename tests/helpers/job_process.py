"""A Hydra callback for sweep tests: each job writes its process id and its start and end times (epoch
seconds) to ``<job dir>/job_process.json``. Add it with ``+hydra.callbacks.job_process._target_=
job_process.JobProcess`` and this folder on ``PYTHONPATH`` (launchers import it in their worker processes)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def _path(config: DictConfig) -> Path:
    return Path(config.hydra.runtime.output_dir) / "job_process.json"


class JobProcess(Callback):
    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        _path(config).write_text(json.dumps({"pid": os.getpid(), "start": time.time()}))

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        path = _path(config)
        path.write_text(json.dumps({**json.loads(path.read_text()), "end": time.time()}))
