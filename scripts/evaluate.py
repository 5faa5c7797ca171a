"""Evaluate a trained policy: ``python scripts/evaluate.py policy=<run dir or .pt> [episodes=100] [video=true]``.

Runs deterministic episodes (no exploration noise), prints the success rate and mean return, and writes
them as JSON next to the run; ``video=true`` also renders episodes headless to an mp4 (or a GIF) there and adds them to
the run's TensorBoard (``tensorboard=true``). Options: configs/evaluate.yaml.
"""

from __future__ import annotations

import os
import sys

if "DISPLAY" not in os.environ:  # before MuJoCo loads: render offscreen without a display
    os.environ.setdefault("MUJOCO_GL", "egl")

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from her.checkpoint_file import CheckpointError  # noqa: E402
from training.evaluate import evaluate  # noqa: E402
from training.options import CONFIG_DIR, ConfigError  # noqa: E402


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
def main(cfg: DictConfig) -> float:
    try:
        result = evaluate(cfg)
    except (ConfigError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(
        f"success_rate {result['success_rate']:.3f} mean_return {result['mean_return']:.2f} over "
        f"{result['episodes']} episodes of {result['env']} (checkpoint at env_steps {result.get('env_steps')}) "
        f"-> {result['output']}"
    )
    if "video" in result:
        video = result["video"]
        print(f"video: {video['path']} ({video['frames']} frames, {video['bytes'] / 1e6:.2f} MB)")
        if "tensorboard" in video:
            print(f"video: TensorBoard {video['tensorboard']['log_dir']}, tag {video['tensorboard']['tag']}")
    return result["success_rate"]


if __name__ == "__main__":
    main()
