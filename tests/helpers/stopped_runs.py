"""A small point-env run for stop-and-resume tests, what its metrics are compared without (timings), and a way to
stop it with SIGINT during chosen cycles."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from training.metrics import read_records
from training.runner import Runner

TIMING = ("wall_s", "env_steps_per_s", "updates_per_s", "collect_s", "update_s", "eval_s")
# A small point-env run: 4 epochs x 3 cycles x 1 episode of 50 steps (600 env steps), 5 updates per cycle.
SMALL = (
    "env=PointReach",
    "seed=5",
    "runner.epochs=4",
    "runner.cycles_per_epoch=3",
    "runner.updates_per_cycle=5",
    "runner.eval_episodes=2",
    "buffer.batch_size=32",
    "torch_threads=1",
    "progress=false",
    "agent.precision=fp32",  # runs compared with each other train in one precision
)


def without_timing(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in read_records(run_dir / "metrics.jsonl")]


def interrupt_at_cycles(monkeypatch, cycles: set[int]) -> None:
    """Send this process SIGINT during the given (0-based, counted over the run) training cycles."""
    original = Runner.train_cycle

    def train_cycle(self: Runner):
        n = self.epoch * self.cycles_per_epoch + self.partial.cycles
        if n in cycles:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self)

    monkeypatch.setattr(Runner, "train_cycle", train_cycle)
