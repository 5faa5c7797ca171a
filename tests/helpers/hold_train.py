"""``scripts/train.py`` that can hold still at a chosen moment, for a kill test to SIGKILL it there.

Usage: ``python hold_train.py <marker file> <moment> <after> <train.py arguments>``. The process
holds (sleeps until killed) at the first ``moment`` that comes after its ``after``-th write of ``last.pt``
in this session, and writes what it holds in to ``<marker file>`` first:

- ``last.pt``, ``.pt``, ``metrics.jsonl``: inside an atomic write of a file whose name contains it (the data
  written and synced, not yet renamed into place); the marker holds the temporary file's name;
- ``cycle``: after a training cycle; the marker holds ``cycle``;
- ``build``: at start-up, before the envs, buffer and agent are built; the marker holds ``build``;
- ``none``: never.

Any moment after the ``after``-th ``last.pt`` write comes after its rename, so ``after >= 1`` means that the
session has made progress a resumed run keeps.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import BinaryIO

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import train  # noqa: E402

from her import checkpoint_file  # noqa: E402
from training import cli  # noqa: E402
from training.runner import Runner  # noqa: E402

marker, moment, after = Path(sys.argv.pop(1)), sys.argv.pop(1), int(sys.argv.pop(1))
last_writes = 0


def hold_if_chosen(name: str, what: str) -> None:
    if moment != "none" and moment in what and last_writes >= after:
        marker.write_text(name)
        time.sleep(3600)


_sync = checkpoint_file._sync


def holding_sync(f: BinaryIO) -> None:
    global last_writes
    _sync(f)
    name = Path(f.name).name  # .<file>.<pid>.tmp
    hold_if_chosen(name, name.removesuffix(".tmp"))
    if f".{checkpoint_file.LAST}." in name:
        last_writes += 1


_train_cycle = Runner.train_cycle


def holding_train_cycle(self: Runner):
    result = _train_cycle(self)
    hold_if_chosen("cycle", "cycle")
    return result


_build_runner = cli.build_runner


def holding_build_runner(*args, **kwargs):
    hold_if_chosen("build", "build")
    return _build_runner(*args, **kwargs)


checkpoint_file._sync = holding_sync
cli.build_runner = holding_build_runner
Runner.train_cycle = holding_train_cycle
train.exit_on_interrupt(train.STARTUP_INTERRUPTED)  # as scripts/train.py run as a script
train.check_resume_argument(sys.argv[1:])
train.main()
