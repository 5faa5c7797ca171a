"""``scripts/train.py`` in a subprocess, and the overrides of a run of a few seconds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "runner.epochs=2",
    "runner.cycles_per_epoch=2",
    "runner.episodes_per_cycle=2",
    "runner.updates_per_cycle=2",
    "runner.eval_episodes=2",
    "progress=false",
    "agent.precision=fp32",  # runs compared with each other train in one precision
]


def run_train(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python scripts/train.py *args`` in ``cwd``, its output captured as text."""
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
