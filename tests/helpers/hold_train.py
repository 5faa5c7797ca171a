"""``scripts/train.py`` whose atomic file writes pause between writing the data and renaming it into place.

Usage: ``python slow_checkpoint_train.py <marker file> <pause seconds> <train.py arguments>``. While a
write is paused, ``<marker file>`` exists and holds the temporary file's name, so a kill test can land a
SIGKILL inside a checkpoint write.
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

marker, pause_s = Path(sys.argv.pop(1)), float(sys.argv.pop(1))
_sync = checkpoint_file._sync


def paused_sync(f: BinaryIO) -> None:
    _sync(f)
    marker.write_text(f.name)
    time.sleep(pause_s)
    marker.unlink()


checkpoint_file._sync = paused_sync
train.check_resume_argument(sys.argv[1:])
train.main()
