"""One epoch's bookkeeping: what the epoch in progress has gathered (kept in checkpoints, so that a stop mid-epoch
resumes exactly) and the metrics.jsonl record it makes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from training.collect import Rollout


def evaluation_metrics(evaluation: Rollout | None, prefix: str = "eval") -> dict[str, float | None]:
    """``{prefix}_success_rate`` and ``{prefix}_mean_return`` of an evaluation's episodes (``None``: none ran)."""
    return {
        f"{prefix}_success_rate": None if evaluation is None else float(evaluation.success.mean()),
        f"{prefix}_mean_return": None if evaluation is None else float(evaluation.ret.mean()),
    }


@dataclass
class EpochProgress:
    """What the epoch in progress has gathered: kept in checkpoints, so a stop mid-epoch resumes exactly.

    ``successes``: final-step success of each training episode so far; ``stats``: one dict per update;
    ``elapsed_s``: wall time of the cycles so far.
    """

    steps_before: int = 0
    cycles: int = 0
    successes: list[float] = field(default_factory=list)
    stats: list[dict[str, float]] = field(default_factory=list)
    collect_s: float = 0.0
    update_s: float = 0.0
    elapsed_s: float = 0.0

    def record(
        self,
        *,
        epoch: int,
        env_steps: int,
        updates: int,
        wall_s: float,
        evaluation: Rollout | None,
        eval_s: float,
        buffer_transitions: int,
    ) -> dict[str, Any]:
        """The metrics.jsonl line of this epoch, ended by ``evaluation`` (``None``: an epoch without one); the
        counters are those at its end."""
        return {
            "epoch": epoch,
            "env_steps": env_steps,
            "updates": updates,
            "wall_s": wall_s,
            **evaluation_metrics(evaluation),
            "train_success_rate": float(np.mean(self.successes)),
            **{k: float(np.mean([s[k] for s in self.stats])) for k in (self.stats[0] if self.stats else {})},
            "env_steps_per_s": (env_steps - self.steps_before) / (self.elapsed_s + eval_s),
            "updates_per_s": len(self.stats) / self.update_s if self.update_s > 0 else None,
            "collect_s": self.collect_s,
            "update_s": self.update_s,
            "eval_s": eval_s,
            "buffer_transitions": buffer_transitions,
        }
