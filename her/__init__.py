"""Hindsight Experience Replay: the replay core. Episode storage, goal relabeling, the replay buffers, the
seed API (`HindsightExperienceReplay`), checkpoint files and option validation. Everything else builds on
it; the run machinery is the subpackage `her.run`, which this package never imports."""

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
