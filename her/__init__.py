"""Hindsight Experience Replay: episode storage, goal relabeling, the training runner."""

from __future__ import annotations

from her.buffer import EpisodeBuffer
from her.relabel import (
    GoalStrategy,
    HerReplayBuffer,
    MixtureStrategy,
    Transitions,
    relabel_goals,
    relabel_probability,
    sample_her_transitions,
    sparse_reward,
)
from her.transition_api import HindsightExperienceReplay
from her.validation import OptionError

__all__ = [
    "EpisodeBuffer",
    "GoalStrategy",
    "HerReplayBuffer",
    "HindsightExperienceReplay",
    "MixtureStrategy",
    "OptionError",
    "Transitions",
    "relabel_goals",
    "relabel_probability",
    "sample_her_transitions",
    "sparse_reward",
]
