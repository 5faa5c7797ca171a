"""The divergence guard: training stops with ``DivergenceError`` once a loss, a Q estimate or a parameter is NaN
or inf, before anything non-finite reaches a checkpoint.

The checks are cheap: the update statistics are the Python floats the agent's ``update`` already returns (one
NumPy check per cycle), and the parameters are checked once per epoch and before each checkpoint write, with one
device sync for all tensors together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch


class DivergenceError(RuntimeError):
    """Training produced NaN or inf values; the message names the epoch, the update and what went non-finite."""


def first_non_finite_update(stats: Sequence[Mapping[str, float]]) -> tuple[int, list[str]] | None:
    """The index of the first of a cycle's ``stats`` (one dict per update) holding a NaN or inf value, and
    ``"key=value"`` for each such value of it; ``None`` when all are finite."""
    if not stats:
        return None
    values = np.array([list(s.values()) for s in stats], dtype=np.float64)  # [updates, stats]
    finite = np.isfinite(values)
    if finite.all():
        return None
    row = int(np.argmin(finite.all(axis=1)))
    return row, [f"{key}={value}" for (key, value), ok in zip(stats[row].items(), finite[row]) if not ok]


def cycle_divergence(bad: tuple[int, list[str]] | None, epoch: int, updates_before: int, n: int) -> DivergenceError:
    """The error for a cycle of ``n`` updates after ``updates_before`` that diverged on some rank: ``bad`` is this
    rank's ``first_non_finite_update`` (``None``: the update that diverged was another rank's)."""
    if bad is None:
        return DivergenceError(
            f"training diverged: epoch {epoch}, updates {updates_before + 1}-{updates_before + n}: another rank's "
            "update returned NaN or inf"
        )
    update, values = updates_before + 1 + bad[0], ", ".join(bad[1])
    return DivergenceError(f"training diverged: epoch {epoch}, update {update} returned {values}")


def non_finite_tensors(state: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the floating-point tensors and arrays in a (nested) ``state_dict`` holding NaN or inf."""
    named: list[tuple[str, torch.Tensor]] = []
    _collect(state, prefix, named)
    by_device: dict[torch.device, list[int]] = {}
    for i, (_, tensor) in enumerate(named):
        by_device.setdefault(tensor.device, []).append(i)
    bad: list[int] = []
    for indices in by_device.values():  # one transfer (one sync) per device
        finite = torch.stack([torch.isfinite(named[i][1]).all() for i in indices]).cpu().tolist()
        bad += [i for i, ok in zip(indices, finite) if not ok]
    return [named[i][0] for i in sorted(bad)]


def _collect(obj: Any, name: str, out: list[tuple[str, torch.Tensor]]) -> None:
    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point():
            out.append((name, obj.detach()))
    elif isinstance(obj, np.ndarray):
        if np.issubdtype(obj.dtype, np.floating):
            out.append((name, torch.from_numpy(obj)))
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            _collect(value, f"{name}.{key}" if name else str(key), out)
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            _collect(value, f"{name}.{i}" if name else str(i), out)


def check_parameters(state: Mapping[str, Any], epoch: int, updates: int, where: str) -> None:
    """Raise ``DivergenceError`` if the agent ``state`` (its ``state_dict``) holds NaN or inf values; ``where``
    says what was about to happen (``"at the end of the epoch"``, ``"before writing checkpoints/last.pt"``)."""
    bad = non_finite_tensors(state)
    if bad:
        shown = ", ".join(bad[:6]) + (f" and {len(bad) - 6} more" if len(bad) > 6 else "")
        raise DivergenceError(
            f"training diverged: epoch {epoch}, after update {updates}: NaN or inf in {shown} ({where})"
        )
