"""Plot learning curves of runs: ``python scripts/plot.py 'runs/multirun/<time>' -o success.png``.

Each argument is a run dir, a directory holding run dirs (searched for ``metrics.jsonl``), or a glob of
them. Runs are grouped by env (from each run's ``.hydra/config.yaml``); each env gets one panel: the
metric (default ``eval_success_rate``) against env steps, thin lines per run (seed) and, at the env steps all
runs have reached, a bold line for their IQM with its 95% bootstrap band from 3 runs on (else their mean).
``--smooth N`` first replaces each run's value at every evaluation by the mean of its last N evaluations
(long runs with few eval episodes per epoch are noisy).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from training.curves import PlotError, find_runs, load_curve, plot, smoothed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run dirs, dirs of runs, or globs of them")
    parser.add_argument("-o", "--out", type=Path, default=Path("success_rate.png"), help="PNG file to write")
    parser.add_argument("--metric", default="eval_success_rate", help="a metrics.jsonl key (default: %(default)s)")
    parser.add_argument("--smooth", type=int, default=1, help="mean over the last N evaluations (default: 1, none)")
    args = parser.parse_args(argv)
    if args.smooth < 1:
        parser.error(f"--smooth={args.smooth}: expected a positive integer (1: no smoothing)")
    ylabel = args.metric.replace("_", " ") + (f", mean of last {args.smooth} evals" if args.smooth > 1 else "")
    try:
        curves = [smoothed(load_curve(r, args.metric), args.smooth) for r in find_runs(args.runs)]
        if short := [str(c.run_dir) for c in curves if len(c.steps) == 0]:
            raise PlotError(f"fewer than --smooth={args.smooth} evaluations in {', '.join(short)}")
        counts = plot(curves, args.metric, args.out, ylabel)
    except PlotError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: " + ", ".join(f"{env} ({n} runs)" for env, n in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
