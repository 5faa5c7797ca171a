"""Hindsight Experience Replay: the replay core, which everything else builds on. Episode storage and the
replay buffer (``her.buffer``), goal relabeling (``her.relabel``), goal-env observation keys and rewards
(``her.goals``), the transition-level buffer API (``HindsightExperienceReplay``), checkpoint files and
option validation. It imports nothing of the project's other packages."""

from __future__ import annotations

from her.buffer import EpisodeBuffer, HerReplayBuffer
from her.goals import GOAL_KEYS, RewardFn, sparse_reward, success_reward
from her.relabel import (
    GoalStrategy,
    MixtureStrategy,
    Transitions,
    relabel_goals,
    relabel_probability,
    sample_her_transitions,
)
from her.transition_api import HindsightExperienceReplay
from her.validation import OptionError

__all__ = [
    "GOAL_KEYS",
    "EpisodeBuffer",
    "GoalStrategy",
    "HerReplayBuffer",
    "HindsightExperienceReplay",
    "MixtureStrategy",
    "OptionError",
    "RewardFn",
    "Transitions",
    "relabel_goals",
    "relabel_probability",
    "sample_her_transitions",
    "sparse_reward",
    "success_reward",
]
