"""Train a goal-conditioned agent with HER: ``python scripts/train.py env=FetchReach [key=value ...]``.

The config (configs/train.yaml) is composed by Hydra; ``training.cli`` trains (``training.build`` turns the config
into objects).
"""

from __future__ import annotations

import os
import sys

from training.signals import exit_on_interrupt

STARTUP_INTERRUPTED = "interrupted during start-up (Ctrl-C): nothing was trained"
if __name__ == "__main__":  # before the slow imports below (torch, gymnasium, MuJoCo): Ctrl-C there exits at once
    exit_on_interrupt(STARTUP_INTERRUPTED)

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from training.cli import other_rank_overrides, run  # noqa: E402
from training.options import CONFIG_DIR  # noqa: E402
from training.resume import check_resume_argument  # noqa: E402


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float:
    return run(cfg)


if __name__ == "__main__":
    check_resume_argument(sys.argv[1:])
    sys.argv += other_rank_overrides(dict(os.environ))
    main()
