"""The runner's loop: a SyncVectorEnv's envs stepped directly give the same episodes as gymnasium's own step;
``learn`` draws a cycle's batches at once; a ``Discrete`` env's actions travel as float indices."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from conftest import compose_config

from envs import make_vector_env
from training.build import build_runner
from training.collect import collect_episodes


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


def test_learn_draws_a_cycles_batches_at_once_and_slices_them():
    """``Runner.learn(n)``: one buffer draw of ``n * batch_size`` transitions, ``n`` updates on consecutive
    ``batch_size`` slices of it, then one target update."""
    cfg = compose_config("env=PointReach", "buffer.batch_size=16", "torch_threads=1", "progress=false")
    runner, _ = build_runner(cfg, run_dir=None)
    runner.collect()
    draws: list[int] = []
    sample = runner.buffer.sample
    runner.buffer.sample = lambda size, rng: draws.append(size) or sample(size, rng)  # type: ignore[method-assign]
    seen, targets = [], []
    update = runner.agent.update
    runner.agent.update = lambda batch: seen.append(batch) or update(batch)  # type: ignore[method-assign]
    runner.agent.update_targets = lambda: targets.append(True)  # type: ignore[method-assign]

    stats = runner.learn(5)
    assert draws == [5 * 16] and len(stats) == 5 and targets == [True]
    assert all(b.obs.shape == (16, runner.agent.obs_dim) and b.reward.shape == (16,) for b in seen)
    whole = np.concatenate([b.obs.numpy() for b in seen])
    assert len({row.tobytes() for row in whole}) > 16  # five different slices, not one batch five times
    assert runner.learn(0) == [] and draws == [80] and targets == [True, True]
    runner.close()


def test_discrete_actions_are_stored_as_float_indices_and_step_the_envs_as_integers():
    """A ``Discrete`` env's episodes hold each action as a ``[1]`` float index, the bit that flipped, with the sync
    (direct) and async (subprocess) vector envs alike."""
    rng = np.random.default_rng(0)

    def policy(obs: np.ndarray, goal: np.ndarray) -> np.ndarray:
        return rng.integers(0, 6, (len(obs), 1)).astype(np.float32)

    rollouts = []
    for vectorization in ("sync", "async"):
        rng = np.random.default_rng(0)
        envs = make_vector_env("BitFlipping-v0", 2, vectorization, {"n_bits": 6})
        rollouts.append(collect_episodes(envs, policy, 4, 6, seed=3))
        envs.close()
    sync, batched = rollouts
    for key in ("obs", "ag", "g", "action"):
        np.testing.assert_array_equal(sync.episodes[key], batched.episodes[key])
    obs, action = sync.episodes["obs"], sync.episodes["action"]
    assert action.shape == (4, 6, 1) and action.dtype == np.float32
    flipped = np.argmax(obs[:, 1:] != obs[:, :-1], axis=-1)  # [4, 6]: the one bit each step changed
    assert np.all((obs[:, 1:] != obs[:, :-1]).sum(-1) == 1)
    np.testing.assert_array_equal(flipped, action[..., 0])


def test_the_random_steps_of_a_discrete_env_draw_every_index():
    cfg = compose_config("env=BitFlipping", "env.n_bits=5", "agent=dqn", "runner.random_steps=10", "torch_threads=1",
                         "progress=false")  # fmt: skip
    runner, _ = build_runner(cfg, run_dir=None)
    policy = runner.collecting_policy()
    actions = policy(np.zeros((2000, 5), np.float32), np.zeros((2000, 5), np.float32), True, np.random.default_rng(0))
    assert actions.shape == (2000, 1) and actions.dtype == np.float32
    assert np.all(np.bincount(actions[:, 0].astype(int), minlength=5) > 300)
    runner.close()
