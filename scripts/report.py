"""Build the measured tables and curves of docs/results.md and docs/results_beyond_fetch.md, and README.md's
figures, from the committed run data in docs/results/.

    python scripts/report.py            # rewrite the generated blocks of the results docs and README.md, and the curves
    python scripts/report.py --check    # exit 1 if a doc differs from what the data gives

What the sections hold and how the tables are made: ``training.report``; README.md's figures:
``training.report_readme``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from training.report import DATA, DOC, README, ReportError, build, doc_paths
from training.report_readme import build_readme


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a doc is not up to date with the data")
    doc_help = "the results doc to fill; the other docs that sections name lie beside it (default: %(default)s)"
    parser.add_argument("--doc", type=Path, default=DOC, help=doc_help)
    parser.add_argument("--readme", type=Path, default=README, help="the README to fill (default: %(default)s)")
    parser.add_argument("--data", type=Path, default=DATA, help="the run data and report.yaml (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        docs = [(path, *build(path, args.data, not args.check, args.doc)) for path in doc_paths(args.doc, args.data)]
        readme = build_readme(args.readme, args.doc, args.data)
    except ReportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    docs += [(args.readme, *readme)] if readme else []
    if args.check:
        stale = [path for path, old, new in docs if old != new]
        for path in stale:
            print(f"{path} is out of date: run python scripts/report.py", file=sys.stderr)
        if not stale:
            print(" and ".join(str(path) for path, _, _ in docs) + " match the data")
        return 1 if stale else 0
    for path, _, new in docs:
        path.write_text(new)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
