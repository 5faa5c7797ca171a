"""Per-epoch metrics to TensorBoard (x-axis: total env steps) and to ``metrics.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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


class MetricsLogger:
    """Appends one JSON object per epoch to ``run_dir/metrics.jsonl`` and writes TensorBoard scalars.

    Args:
        run_dir: output directory (created if missing).
        tensorboard: write TensorBoard event files to ``run_dir/tb``.
    """

    def __init__(self, run_dir: str | Path, tensorboard: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl_path = self.run_dir / "metrics.jsonl"
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # imported here: slow, and optional

            self.writer = SummaryWriter(str(self.run_dir / "tb"))

    def log_epoch(self, record: dict[str, Any]) -> None:
        """Write ``record`` (must hold ``env_steps``) as a JSON line and its known scalars to TensorBoard."""
        with self.jsonl_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            step = int(record["env_steps"])
            for key, tag in TB_TAGS.items():
                if key in record and record[key] is not None:
                    self.writer.add_scalar(tag, record[key], step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
