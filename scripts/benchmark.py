"""Measure how close training runs to this machine's limits; print a table and write JSON.

    python scripts/benchmark.py [--out benchmark.json] [--quick] [--skip-solve] [--memory-only] [train overrides ...]

Overrides are the same ``key=value`` options as scripts/train.py (e.g. ``env=FetchPush env.num_envs=2``).
What each item measures: ``training.benchmark``.
"""

from __future__ import annotations

import argparse
import sys

from training.benchmark import BenchmarkOptions, run_benchmark, write_results
from training.options import ConfigError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmark.json", help="where to write the JSON results")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run, not a measurement)")
    parser.add_argument("--skip-solve", action="store_true", help="skip the time-to-success run (item 5)")
    parser.add_argument("--solve-env", default="FetchReach", help="env config for item 5")
    parser.add_argument("--sampler-size", type=int, default=1_000_000, help="buffer transitions for item 4")
    parser.add_argument("--parallel", type=int, default=2, help="async envs for the parallel collection rate")
    parser.add_argument("--rounds", type=int, default=40, help="alternating one-episode rounds of items 1 and 2")
    parser.add_argument("--solve-seeds", default="0", help="comma-separated seeds of the item-5 runs")
    parser.add_argument("--memory-buffer", type=int, default=1000, help="buffer transitions for item 7")
    parser.add_argument("--memory-wraps", type=int, default=50, help="times item 7 overwrites its full buffer")
    parser.add_argument("--memory-only", action="store_true", help="measure item 7 only")
    parser.add_argument("--update-only", action="store_true", help="measure item 3 only (update rates, precision)")
    parser.add_argument("overrides", nargs="*", help="train.py overrides, e.g. env=FetchPush env.num_envs=2")
    args = parser.parse_args()
    if args.sampler_size < 50_000:
        parser.error(f"--sampler-size={args.sampler_size}: expected at least 50000 transitions (1,000 episodes)")
    for name in ("parallel", "rounds", "memory_buffer", "memory_wraps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}={getattr(args, name)}: expected a positive integer")
    try:
        solve_seeds = [int(seed) for seed in args.solve_seeds.split(",")]
    except ValueError:
        parser.error(f"--solve-seeds={args.solve_seeds}: expected comma-separated integers, e.g. 0,1,2")

    options = BenchmarkOptions(
        quick=args.quick,
        skip_solve=args.skip_solve,
        solve_env=args.solve_env,
        solve_seeds=tuple(solve_seeds),
        sampler_size=args.sampler_size,
        parallel=args.parallel,
        rounds=args.rounds,
        memory_buffer=args.memory_buffer,
        memory_wraps=args.memory_wraps,
        memory_only=args.memory_only,
        update_only=args.update_only,
    )
    write_results(run_benchmark(args.overrides, options), args.out)


if __name__ == "__main__":
    try:
        main()
    except ConfigError as err:
        sys.exit(f"error: {err}")
