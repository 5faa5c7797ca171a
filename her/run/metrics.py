"""Per-epoch metrics to TensorBoard (x-axis: total env steps) and to ``metrics.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from her.checkpoint_file import append_atomic, write_atomic

# metrics.jsonl key -> TensorBoard tag
TB_TAGS = {
    "eval_success_rate": "eval/success_rate",
    "eval_mean_return": "eval/mean_return",
    "train_success_rate": "train/success_rate",
    "actor_loss": "losses/actor",
    "critic_loss": "losses/critic",
    "q_mean": "charts/q_mean",
    "alpha": "charts/alpha",  # SAC's entropy coefficient
    "entropy": "charts/entropy",  # SAC's policy entropy estimate, -mean(log pi)
    "env_steps_per_s": "charts/env_steps_per_s",
    "updates_per_s": "charts/updates_per_s",
    "buffer_transitions": "charts/buffer_transitions",
}


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The complete JSON lines of a metrics.jsonl (a line cut short by a kill is skipped)."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class MetricsLogger:
    """Appends one JSON object per epoch to ``run_dir/metrics.jsonl`` and writes TensorBoard scalars.

    Args:
        run_dir: output directory (created if missing).
        tensorboard: write TensorBoard event files to ``run_dir/tb``.
        resume_step: continue a run whose checkpoint was written after the epoch logged at ``resume_step``
            env steps (of all ranks): records logged after that checkpoint are dropped from metrics.jsonl and
            purged from TensorBoard, so the resumed run's curves continue without a gap or a duplicate step.
    """

    def __init__(self, run_dir: str | Path, tensorboard: bool = True, resume_step: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl_path = self.run_dir / "metrics.jsonl"
        if resume_step is not None and self.jsonl_path.exists():
            kept = [r for r in read_records(self.jsonl_path) if r["env_steps"] <= resume_step]
            write_atomic(self.jsonl_path, "".join(json.dumps(r) + "\n" for r in kept).encode())
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # imported here: slow, and optional

            purge_step = None if resume_step is None else resume_step + 1
            self.writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=purge_step)

    def log_epoch(self, record: dict[str, Any]) -> None:
        """Write ``record`` (must hold ``env_steps``) as a JSON line and its known scalars to TensorBoard.

        A line that cannot be written (a full disk) raises ``her.checkpoint_file.WriteError`` and leaves no
        partial line."""
        append_atomic(self.jsonl_path, (json.dumps(record) + "\n").encode())
        if self.writer is not None:
            step = int(record["env_steps"])
            for key, tag in TB_TAGS.items():
                if key in record and record[key] is not None:
                    self.writer.add_scalar(tag, record[key], step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
