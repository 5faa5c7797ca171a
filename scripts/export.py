"""Export a trained policy to one file: ``python scripts/export.py policy=<run dir or .pt> format=onnx|torchscript``.

Options (``key=value``): ``policy`` (a run dir, its checkpoints/last.pt, or a checkpoint file), ``format``
(``onnx``, the default, or ``torchscript``), ``output`` (default: ``<run dir>/<checkpoint>.onnx`` or
``.torchscript.pt``), ``actor`` (``online``, the default, or ``averaged``: the Polyak-averaged actor of a run
trained with ``agent.eval_polyak``).
The logic is ``agents.export``.
"""

from __future__ import annotations

import sys

from agents.export import ExportError, export_policy
from her.checkpoint_file import CheckpointError

OPTIONS = ("policy", "format", "output", "actor")


def parse(argv: list[str]) -> dict[str, str]:
    """``key=value`` arguments as a dict; an argument of another form or key raises ``ExportError``."""
    options: dict[str, str] = {}
    for arg in argv:
        key, eq, value = arg.partition("=")
        if not eq or key not in OPTIONS:
            raise ExportError(f"{arg}: expected key=value with a key of {', '.join(OPTIONS)}")
        options[key] = value
    if not options.get("policy"):
        raise ExportError("policy= is required: a run dir or a checkpoint file, e.g. policy=runs/FetchReach/<time>")
    return options


def main(argv: list[str]) -> int:
    try:
        options = parse(argv)
        fmt, actor = options.get("format", "onnx"), options.get("actor", "online")
        path = export_policy(options["policy"], fmt, options.get("output") or None, actor)
    except (ExportError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"exported {options['policy']} -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
