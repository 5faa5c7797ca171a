"""One row per job of a sweep: ``python scripts/summarize.py runs/multirun/<date>_<time>``.

Each row shows the overrides that differ between the jobs and the final epoch's metrics; an Optuna sweep's
best parameters follow the table (``training.sweep``, which also prints it at the end of every ``-m`` run).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from training.sweep import summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun folder, e.g. runs/multirun/2026-01-01_12-00-00")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        parser.error(f"sweep_dir={str(args.sweep_dir)!r} is not a folder")
    print(summary(args.sweep_dir))


if __name__ == "__main__":
    main()
