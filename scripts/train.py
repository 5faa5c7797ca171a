"""Train a goal-conditioned agent with HER: ``python scripts/train.py env=FetchReach [key=value ...]``.

The config (configs/train.yaml) is composed by Hydra; ``training.cli`` turns it into objects and trains.
"""

from __future__ import annotations

import os
import sys

import hydra
from omegaconf import DictConfig

from training.cli import CONFIG_DIR, check_resume_argument, other_rank_overrides, run


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float:
    return run(cfg)


if __name__ == "__main__":
    check_resume_argument(sys.argv[1:])
    sys.argv += other_rank_overrides(dict(os.environ))
    main()
