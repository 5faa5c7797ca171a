"""collect_episodes: a SyncVectorEnv's envs stepped directly give the same episodes as gymnasium's own step."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from envs import make_vector_env
from her.runner import collect_episodes


def noisy_policy(seed: int):
    """Actions that depend on the observations and on a generator: ``[n, o], [n, g] -> [n, a]``."""
    rng = np.random.default_rng(seed)

    def policy(obs: np.ndarray, goal: np.ndarray) -> np.ndarray:
        to_goal = goal - obs[:, : goal.shape[1]]
        action = np.zeros((len(obs), 4 if goal.shape[1] == 3 else 2), np.float32)
        action[:, : goal.shape[1]] = np.clip(5.0 * to_goal, -1.0, 1.0)
        return np.clip(action + rng.normal(0.0, 0.3, action.shape), -1.0, 1.0).astype(np.float32)

    return policy


@pytest.mark.parametrize("env_id", ["PointReach-v0", "FetchReach-v4"])
def test_direct_stepping_matches_the_vector_env_step(env_id: str):
    rollouts = []
    for vectorization in ("sync", "async"):
        envs = make_vector_env(env_id, 2, vectorization)
        assert isinstance(envs, gym.vector.SyncVectorEnv) == (vectorization == "sync")
        rollouts.append(collect_episodes(envs, noisy_policy(0), 4, 50, seed=3))
        envs.close()
    sync, batched = rollouts
    for key in ("obs", "ag", "g", "action"):
        np.testing.assert_array_equal(sync.episodes[key], batched.episodes[key])
    np.testing.assert_array_equal(sync.ret, batched.ret)
    np.testing.assert_array_equal(sync.success, batched.success)
    assert sync.episodes["obs"].shape == (4, 51, sync.episodes["obs"].shape[-1])
    assert sync.episodes["g"].shape == (4, 50, sync.episodes["ag"].shape[-1])
    assert np.all(sync.ret <= 0) and np.any(sync.ret < 0)  # sparse rewards were summed
    assert not np.array_equal(sync.episodes["obs"][0], sync.episodes["obs"][1])  # the envs moved differently
