"""The bit-flipping env: its registration and episode length, the goal-env API, its dynamics and rewards, and
what it refuses."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from envs import env_info, make_env, make_vector_env
from envs.bitflip import BitFlippingEnv
from her.validation import OptionError


def test_the_registered_id_takes_n_bits_and_lasts_n_bits_steps():
    env = make_env("BitFlipping-v0", n_bits=7)
    info = env_info(env)
    assert (info.obs_dim, info.goal_dim, info.horizon) == (7, 7, 7)
    assert (info.action_dim, info.n_actions, info.action_max, info.discrete) == (1, 7, 6.0, True)
    assert env.action_space == gym.spaces.Discrete(7) and env.unwrapped.n_bits == 7
    env.reset(seed=0)
    truncated = [env.step(0)[3] for _ in range(7)]
    assert truncated == [False] * 6 + [True]
    assert env_info(make_env("BitFlipping-v0", n_bits=7, max_episode_steps=9)).horizon == 9
    assert env_info(make_env("BitFlipping-v0")).horizon == 30  # the default n_bits


def test_reset_draws_state_and_goal_from_the_seed():
    env = make_env("BitFlipping-v0", n_bits=40)
    first, _ = env.reset(seed=3)
    again, _ = env.reset(seed=3)
    other, _ = env.reset(seed=4)
    for key in first:
        assert first[key].dtype == np.float32 and first[key].shape == (40,)
        assert set(np.unique(first[key])) <= {0.0, 1.0}
        np.testing.assert_array_equal(first[key], again[key])
    np.testing.assert_array_equal(first["observation"], first["achieved_goal"])
    assert not np.array_equal(first["desired_goal"], other["desired_goal"])
    assert not np.array_equal(first["observation"], first["desired_goal"])


def test_action_i_flips_bit_i_and_nothing_else():
    env = make_env("BitFlipping-v0", n_bits=5)
    obs, _ = env.reset(seed=0)
    for action in (3, np.int64(0), np.array([4.0], np.float32)):  # an int, a NumPy int, a stored float index
        before = obs["observation"].copy()
        obs, *_ = env.step(action)
        i = int(np.asarray(action).flat[0])
        changed = np.flatnonzero(obs["observation"] != before)
        assert changed.tolist() == [i] and obs["observation"][i] == 1.0 - before[i]
        np.testing.assert_array_equal(obs["achieved_goal"], obs["observation"])


def test_the_reward_is_zero_exactly_at_the_goal_and_success_holds_from_there_on():
    env = BitFlippingEnv(4)
    obs, _ = env.reset(seed=0)
    differing = np.flatnonzero(obs["observation"] != obs["desired_goal"]).tolist()
    assert len(differing) == 3  # seed 0: three steps to the goal
    rewards, successes = [], []
    for action in [*differing, differing[0], differing[0]]:  # to the goal, away from it, back
        _, reward, terminated, _, info = env.step(action)
        assert not terminated
        rewards.append(reward)
        successes.append(info["is_success"])
    assert rewards == [-1.0] * (len(differing) - 1) + [0.0, -1.0, 0.0]
    assert successes == [0.0] * (len(differing) - 1) + [1.0, 1.0, 1.0]
    env.reset(seed=0)
    assert env.step(differing[0])[4]["is_success"] == 0.0  # a new episode starts unsolved


def test_compute_reward_is_batched_over_leading_dims():
    env = BitFlippingEnv(6)
    rng = np.random.default_rng(0)
    achieved = rng.integers(0, 2, (3, 5, 6)).astype(np.float32)
    desired = achieved.copy()
    desired[:, ::2, 1] = 1.0 - desired[:, ::2, 1]  # rows 0, 2, 4 of each block differ in one bit
    reward = env.compute_reward(achieved, desired, {})
    assert reward.shape == (3, 5) and reward.dtype == np.float32
    np.testing.assert_array_equal(reward, np.tile([-1.0, 0.0, -1.0, 0.0, -1.0], (3, 1)))
    singles = [[float(env.compute_reward(achieved[i, j], desired[i, j], None)) for j in range(5)] for i in range(3)]
    np.testing.assert_array_equal(reward, singles)
    achieved[0, 1, 0] = np.nan
    assert env.compute_reward(achieved, desired, {})[0, 1] == -1.0  # a NaN bit is a failure


def test_vector_envs_step_with_the_stored_float_indices():
    envs = make_vector_env("BitFlipping-v0", 2, "async", {"n_bits": 5})
    try:
        obs, _ = envs.reset(seed=0)
        before = obs["observation"].copy()
        obs, *_ = envs.step(np.array([1, 3]))
        assert [np.flatnonzero(o != b).tolist() for o, b in zip(obs["observation"], before)] == [[1], [3]]
    finally:
        envs.close()


@pytest.mark.parametrize("n_bits", [0, -3, 2.5, True, "8"])
def test_a_bad_n_bits_is_named(n_bits):
    with pytest.raises(OptionError) as err:
        make_env("BitFlipping-v0", n_bits=n_bits)
    assert err.value.name == "kwargs.n_bits" and "n_bits" in err.value.problem and "integer > 0" in err.value.problem


@pytest.mark.parametrize("action", [5, -1, 1.5, np.array([0, 1]), "1"])
def test_an_action_outside_the_space_is_refused(action):
    env = BitFlippingEnv(5)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"expected an integer in \[0, 5\)"):
        env.step(action)


def test_rgb_array_renders_the_bits_over_the_goal():
    env = make_env("BitFlipping-v0", n_bits=5, render_mode="rgb_array", render_cell=4)
    obs, _ = env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (2 * 4 + 4, 5 * 4, 3) and frame.dtype == np.uint8
    matched = obs["observation"] == obs["desired_goal"]
    top = frame[0, ::4]  # the first pixel of each bit's cell, top row
    assert [bool(pixel[1] > pixel[0]) for pixel in top] == matched.tolist()  # green where the bit equals the goal
    bottom = frame[-1, ::4]
    assert [bool(pixel[0] < 128) for pixel in bottom] == (obs["desired_goal"] == 1.0).tolist()  # ones dark
    assert BitFlippingEnv(5).render() is None
    with pytest.raises(OptionError, match="render_mode='human' is invalid"):
        make_env("BitFlipping-v0", render_mode="human")
