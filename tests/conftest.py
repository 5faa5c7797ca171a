from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = str(ROOT / "configs")
sys.path.insert(0, str(ROOT / "scripts"))
os.environ.setdefault("MUJOCO_GL", "egl")


PINNED_PRECISION = "agent.precision=fp32"
"""Runs that tests compare with each other train in one precision: ``auto`` may choose differently from run to
run on a machine where fp32 and bf16 are about as fast. Tests of ``auto`` ask for it."""


def compose_config(*overrides: str) -> DictConfig:
    """The config ``scripts/train.py`` would see with these command-line overrides (after ``PINNED_PRECISION``)."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=[PINNED_PRECISION, *overrides], return_hydra_config=False)


@pytest.fixture
def cfg_factory():
    return compose_config
