"""Goals and rewards of goal envs: the observation keys, the batched reward protocol, and the sparse reward
(what envs/ and the replay core both need, with nothing of relabeling)."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from her import validation

GOAL_KEYS = ("observation", "achieved_goal", "desired_goal")
"""The keys of a goal env's Dict observations (gymnasium-robotics' GoalEnv)."""


class RewardFn(Protocol):
    """``compute_reward(achieved_goal [B, g], desired_goal [B, g], info) -> rewards [B]`` (gymnasium GoalEnv)."""

    def __call__(self, achieved_goal: np.ndarray, desired_goal: np.ndarray, info: Any) -> np.ndarray: ...


def success_reward(reached: np.ndarray) -> np.ndarray:
    """``[...]`` bool -> ``[...]`` float32 sparse rewards: ``0`` where reached, else ``-1``. Callers pass
    ``d <= threshold`` (not ``-(d > threshold)``, which is ``0`` for a NaN distance): a NaN or inf distance fails."""
    return np.where(reached, np.float32(0.0), np.float32(-1.0))


def sparse_reward(threshold: float = 0.05) -> RewardFn:
    """Fetch's sparse reward: ``0`` when ``||achieved - desired|| <= threshold``, else ``-1``; a NaN or inf
    distance is a failure (``-1``), never a success."""
    threshold = validation.positive_real("threshold", threshold)

    def compute_reward(achieved_goal: np.ndarray, desired_goal: np.ndarray, info: Any = None) -> np.ndarray:
        d = np.linalg.norm(np.asarray(achieved_goal) - np.asarray(desired_goal), axis=-1)
        return success_reward(d <= threshold)

    return compute_reward
