"""``scripts/train.py`` on a disk that fills up: from the ``n``-th write of a file named ``<name>`` on (its
temporary files included), each write stores half its bytes and then fails with ``ENOSPC``.

Usage: ``python full_disk_train.py <name> <n> <train.py arguments>``, e.g. ``last.pt 3`` lets the first two
writes of ``checkpoints/last.pt`` through and fails the third.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import train  # noqa: E402

name, fail_from = sys.argv.pop(1), int(sys.argv.pop(1))
writes = 0
_open = Path.open


class FullDisk:
    """A file whose writes get half their bytes to the disk, then fail as on a full disk."""

    def __init__(self, f: Any) -> None:
        self._f = f

    def write(self, data: bytes) -> int:
        self._f.write(data[: len(data) // 2])
        self._f.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._f, attr)

    def __enter__(self) -> FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()


def full_disk_open(self: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
    global writes
    f = _open(self, mode, *args, **kwargs)
    if ("w" in mode or "a" in mode) and (self.name == name or self.name.startswith(f".{name}.")):
        writes += 1
        if writes >= fail_from:
            return FullDisk(f)
    return f


Path.open = full_disk_open  # type: ignore[method-assign]
train.exit_on_interrupt(train.STARTUP_INTERRUPTED)  # as scripts/train.py run as a script
train.check_resume_argument(sys.argv[1:])
train.main()
