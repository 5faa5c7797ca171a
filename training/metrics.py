"""Per-epoch metrics to TensorBoard (x-axis: total env steps) and to ``metrics.jsonl``; the run's
hyperparameters for TensorBoard's HParams view and its config as text."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from her.checkpoint_file import append_atomic, write_atomic

HParamValue = bool | int | float | str

# metrics.jsonl key -> TensorBoard tag. TensorBoard lists the sections (the part before the "/") in alphabetical
# order: the success rates first, then what the updates learn, the value estimates against the return, and last
# the rates per second of wall-clock time.
TB_TAGS = {
    "eval_success_rate": "success/eval",
    "eval_avg_success_rate": "success/eval_averaged_actor",
    "train_success_rate": "success/train",
    "actor_loss": "train/actor_loss",
    "critic_loss": "train/critic_loss",
    "q_loss": "train/q_loss",  # DQN's TD loss
    "alpha": "train/alpha",  # SAC's entropy coefficient
    "entropy": "train/entropy",  # SAC's policy entropy estimate, -mean(log pi)
    "buffer_transitions": "train/buffer_transitions",
    "eval_mean_return": "values/eval_mean_return",
    "eval_avg_mean_return": "values/eval_averaged_actor_mean_return",
    "q_mean": "values/q_mean",
    "env_steps_per_s": "wall/env_steps_per_s",
    "updates_per_s": "wall/updates_per_s",
}


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The complete JSON lines of a metrics.jsonl (a line cut short by a kill is skipped)."""
    return read_log(path)[0]


def read_log(path: str | Path) -> tuple[list[dict[str, Any]], str | None]:
    """The complete JSON lines of a metrics.jsonl, and its last line when that one is cut short (a crash of the
    machine while it was written; a line is written whole or not at all otherwise), else ``None``."""
    records, torn = [], None
    lines = Path(path).read_text(errors="replace").splitlines()
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            torn = line if i == len(lines) - 1 else torn
    return records, torn


def hparams_summary(
    hparams: Mapping[str, HParamValue], run_name: str | None = None, start_time_s: float | None = None
) -> Any:
    """The HParams plugin's session-start summary of one run (a ``Summary`` protobuf): its ``hparams``, and its
    ``run_name`` as the name of its row (TensorBoard's "trial ID"; ``None``: a hash of the hparams).

    No experiment summary is written: TensorBoard then builds the HParams table from the session starts of
    all runs under its logdir (the union of their hparams) and takes each run's metrics from the last value
    of each of its scalars, so the table shows the end of a run, however often it was resumed.
    """
    from tensorboard.plugins.hparams import summary_v2  # imported here: slow, and optional

    return summary_v2.hparams_pb(dict(hparams), trial_id=run_name, start_time_secs=start_time_s)


def session_end_summary(end_time_s: float | None = None) -> Any:
    """The HParams plugin's session-end summary (status: success), written when a run completes."""
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    end = plugin_data_pb2.SessionEndInfo(
        status=api_pb2.STATUS_SUCCESS, end_time_secs=time.time() if end_time_s is None else end_time_s
    )
    content = plugin_data_pb2.HParamsPluginData(session_end_info=end, version=metadata.PLUGIN_DATA_VERSION)
    value = summary_pb2.Summary.Value(
        tag=metadata.SESSION_END_INFO_TAG, metadata=metadata.create_summary_metadata(content)
    )
    return summary_pb2.Summary(value=[value])


def row_name(run_dir: Path) -> str:
    """A run's name in TensorBoard's HParams table: its dir, then the dir above, which tells runs of the same name
    under one logdir apart (``0_PointReach_seed0 (2025-01-01_12-00-00)`` for a sweep's job,
    ``2025-01-01_12-00-00_seed0 (PointReach)`` for a run). The table shows the first characters of a long name."""
    return f"{run_dir.name} ({run_dir.resolve().parent.name})"


class MetricsLogger:
    """Appends one JSON object per epoch to ``run_dir/metrics.jsonl`` and writes TensorBoard scalars.

    Args:
        run_dir: output directory (created if missing).
        tensorboard: write TensorBoard event files to ``run_dir/tb``.
        resume_step: continue a run whose checkpoint was written after the epoch logged at ``resume_step``
            env steps (of all ranks): records logged after that checkpoint are dropped from metrics.jsonl and
            purged from TensorBoard, so the resumed run's curves continue without a gap or a duplicate step.
        hparams: the run's hyperparameters (name -> bool, number or string) for TensorBoard's HParams view,
            and ``config_text``: its resolved config (YAML), shown as text. Both are written when a run
            starts, not when it resumes: a run has one HParams entry, the one of its first start.
    """

    def __init__(
        self,
        run_dir: str | Path,
        tensorboard: bool = True,
        resume_step: int | None = None,
        hparams: Mapping[str, HParamValue] | None = None,
        config_text: str | None = None,
    ) -> None:
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
            if resume_step is None:
                # At step 0, which a resumed run's purge (from resume_step + 1 on) never removes.
                if hparams is not None:
                    self.writer.file_writer.add_summary(hparams_summary(hparams, row_name(self.run_dir)))
                if config_text is not None:
                    self.writer.add_text("config", f"```yaml\n{config_text.rstrip()}\n```", 0)
                self.writer.flush()

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

    def log_completed(self) -> None:
        """Mark the run's HParams entry as finished (a run stopped to be resumed stays unmarked)."""
        if self.writer is not None:
            self.writer.file_writer.add_summary(session_end_summary())
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
