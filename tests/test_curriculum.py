"""``env.object_in_gripper``: PickAndPlace training episodes that start with the object held in the gripper."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import compose_config

from envs import ObjectInGripper, make_env, make_vector_env
from her import OptionError
from training.build import build_runner
from training.options import ConfigError

ENV = "FetchPickAndPlace-v4"


def object_to_grip(obs: dict[str, np.ndarray]) -> float:
    """Distance from the object to the grip site: Fetch observations hold ``object_pos - grip_pos`` at 6:9."""
    return float(np.linalg.norm(obs["observation"][6:9]))


def test_with_probability_one_the_object_starts_in_the_gripper_and_stays_there_when_lifted():
    env = ObjectInGripper(make_env(ENV), 1.0)
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        assert object_to_grip(obs) < 0.02
        np.testing.assert_allclose(obs["achieved_goal"], obs["observation"][3:6])
        start = obs["achieved_goal"].copy()
        for _ in range(5):  # move up (z) with the gripper closing
            obs, *_ = env.step(np.array([0.0, 0.0, 1.0, -1.0], np.float32))
        assert obs["achieved_goal"][2] > start[2] + 0.1  # carried up ~3 cm a step
        assert object_to_grip(obs) < 0.02
    obs, _ = env.reset(seed=0)
    for _ in range(5):  # an opening gripper drops it
        obs, *_ = env.step(np.array([0.0, 0.0, 1.0, 1.0], np.float32))
    assert object_to_grip(obs) > 0.05
    env.close()


def rollout(env, seed: int, episodes: int = 3, steps: int = 10) -> list[np.ndarray]:
    """Observations of ``episodes`` short episodes of fixed actions, the first reset seeded."""
    rng, out = np.random.default_rng(0), []
    for e in range(episodes):
        obs, _ = env.reset(seed=seed if e == 0 else None)
        out.append(np.concatenate([obs[k] for k in ("observation", "achieved_goal", "desired_goal")]))
        for _ in range(steps):
            obs, *_ = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
            out.append(np.concatenate([obs[k] for k in ("observation", "achieved_goal", "desired_goal")]))
    return out


def test_with_probability_zero_the_episodes_are_the_plain_envs():
    plain, wrapped = make_env(ENV), ObjectInGripper(make_env(ENV), 0.0)
    for a, b in zip(rollout(plain, 5), rollout(wrapped, 5)):
        np.testing.assert_array_equal(a, b)
    plain.close(), wrapped.close()


def test_the_share_of_held_starts_follows_the_probability_and_repeats_per_seed():
    def held(seed: int) -> list[bool]:
        env = ObjectInGripper(make_env(ENV), 0.5)
        starts = [object_to_grip(env.reset(seed=seed if i == 0 else None)[0]) < 0.02 for i in range(40)]
        env.close()
        return starts

    first = held(1)
    assert first == held(1)
    assert 8 <= sum(first) <= 32  # Binomial(40, 0.5): outside [8, 32] with probability < 1e-4
    plain = make_env(ENV)
    assert all(object_to_grip(plain.reset(seed=i)[0]) > 0.05 for i in range(5))  # (the plain env's never are)
    plain.close()


@pytest.mark.parametrize(
    "env_id, value, expected",
    [
        (ENV, 1.5, r"object_in_gripper=1.5 is invalid: expected a number in \[0.0, 1.0\]"),
        (ENV, -0.1, r"object_in_gripper=-0.1 is invalid: expected a number in \[0.0, 1.0\]"),
        (ENV, "half", r"object_in_gripper='half' is invalid: expected a number in \[0.0, 1.0\]"),
        ("FetchReach-v4", 0.5, "object_in_gripper=0.5 is invalid: FetchReach-v4 has no object to hold"),
        ("FetchPush-v4", 0.5, "object_in_gripper=0.5 is invalid: FetchPush-v4's gripper is blocked"),
        ("PointReach-v0", 1.0, "object_in_gripper=1.0 is invalid: PointReach-v0 has no object to hold"),
    ],
)
def test_bad_values_and_envs_without_an_object_to_hold_are_refused(env_id, value, expected):
    with pytest.raises(OptionError, match=expected):
        make_vector_env(env_id, 1, "sync", object_in_gripper=value)


def test_zero_is_accepted_for_any_env():
    env = make_vector_env("FetchReach-v4", 1, "sync", object_in_gripper=0.0)
    assert not isinstance(env.envs[0], ObjectInGripper)
    env.close()


def fetch_runner(*overrides: str):
    cfg = compose_config(
        "env=FetchPickAndPlace", "buffer.batch_size=16", "buffer.size=10000", "torch_threads=1", "progress=false",
        "agent.hidden=[16]", *overrides,
    )  # fmt: skip
    return build_runner(cfg, run_dir=None)[0]


@pytest.mark.parametrize("vectorization", ["sync", "async"])
def test_the_config_option_reaches_the_training_env_only(vectorization):
    runner = fetch_runner("env.object_in_gripper=1.0", "env.num_envs=2", f"env.vectorization={vectorization}")
    train_obs, _ = runner.train_env.reset(seed=0)
    eval_obs, _ = runner.eval_env.reset(seed=0)
    offsets = np.linalg.norm(train_obs["observation"][:, 6:9], axis=1)
    assert np.all(offsets < 0.02)
    assert np.all(np.linalg.norm(eval_obs["observation"][:, 6:9], axis=1) > 0.05)
    rollout = runner.collect()  # a training cycle's episodes start held
    assert np.all(np.linalg.norm(rollout.episodes["obs"][:, 0, 6:9], axis=1) < 0.02)
    runner.close()


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["env=FetchPickAndPlace", "env.object_in_gripper=2"], "env.object_in_gripper=2 is invalid: expected a number"),
        (["env=FetchPickAndPlace", "env.object_in_gripper=abc"], "env.object_in_gripper='abc' is invalid"),
        (["env=FetchReach", "+env.object_in_gripper=0.5"], "env.object_in_gripper=0.5 is invalid: FetchReach-v4 has"),
    ],
)
def test_the_config_refuses_bad_values_naming_the_option(overrides, expected):
    with pytest.raises(ConfigError, match=expected):
        build_runner(compose_config(*overrides, "torch_threads=1", "progress=false"), run_dir=None)
