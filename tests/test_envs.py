"""Env creation: registered ids, gymnasium's ``module:EnvId`` form, ``gym.make`` keyword arguments, and what
``make_env`` refuses or adapts."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from conftest import CONFIG_DIR, compose_config

from envs import EpisodeTerminated, env_info, make_env, make_vector_env
from her.validation import OptionError

GOAL_ENV_MODULE = """
import gymnasium as gym
import numpy as np
from gymnasium import spaces


class LineReach(gym.Env):
    def __init__(self, terminate_at=None, success_key="is_success"):
        box = spaces.Box(-2.0, 2.0, (1,), np.float32)
        self.observation_space = spaces.Dict(observation=box, achieved_goal=box, desired_goal=box)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.terminate_at, self.success_key = terminate_at, success_key

    def compute_reward(self, achieved_goal, desired_goal, info):
        return -(np.abs(achieved_goal - desired_goal)[..., 0] > 0.1).astype(np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.x, self.goal = 0, np.zeros(1, np.float32), np.zeros(1, np.float32)
        return {"observation": self.x, "achieved_goal": self.x, "desired_goal": self.goal}, {}

    def step(self, action):
        self.t += 1
        obs = {"observation": self.x, "achieved_goal": self.x, "desired_goal": self.goal}
        return obs, 0.0, self.t == self.terminate_at, False, {self.success_key: True}


gym.register("{env_id}", entry_point=LineReach, max_episode_steps=10)
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """Write a module to ``tmp_path`` (on ``sys.path``) and return its name; it is forgotten afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    written: list[str] = []

    def write(name: str, source: str) -> str:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        written.append(name)
        return name

    yield write
    for name in written:
        sys.modules.pop(name, None)
    for env_id in [i for i in gym.registry if i.startswith("UserLine")]:
        del gym.registry[env_id]


def test_module_colon_id_imports_the_module_that_registers_the_env(user_module):
    module = user_module("user_line_env", GOAL_ENV_MODULE.replace("{env_id}", "UserLine-v0"))
    assert "UserLine-v0" not in gym.registry
    env = make_env(f"{module}:UserLine-v0")
    assert env_info(env).horizon == 10 and env_info(env).goal_dim == 1
    env.close()
    make_env("UserLine-v0").close()  # once imported, the plain id is registered too


def test_module_form_works_in_async_workers(user_module):
    module = user_module("user_line_env_async", GOAL_ENV_MODULE.replace("{env_id}", "UserLineAsync-v0"))
    envs = make_vector_env(f"{module}:UserLineAsync-v0", 2, "async")
    try:
        obs, _ = envs.reset(seed=0)
        assert obs["desired_goal"].shape == (2, 1)
    finally:
        envs.close()


def test_a_module_that_fails_to_import_is_named_with_its_error(user_module):
    module = user_module("user_broken_env", "raise RuntimeError('no licence for the simulator')\n")
    with pytest.raises(OptionError) as err:
        make_env(f"{module}:Whatever-v0")
    assert err.value.name == "id"
    assert err.value.problem == "importing module 'user_broken_env' failed: RuntimeError: no licence for the simulator"
    with pytest.raises(OptionError, match="importing module 'no_such_module_17' failed: ModuleNotFoundError"):
        make_env("no_such_module_17:X-v0")


def test_a_module_that_registers_no_such_env_is_refused(user_module):
    module = user_module("user_empty_module", "X = 1\n")
    with pytest.raises(OptionError, match="module 'user_empty_module' was imported but registered no env 'Nope-v0'"):
        make_env(f"{module}:Nope-v0")


@pytest.mark.parametrize("env_id", ["Nope-v0", "a:b:c", 5])
def test_an_unknown_id_is_refused(env_id):
    with pytest.raises(OptionError) as err:
        make_env(env_id)
    assert err.value.name == "id" and "a registered env id" in str(err.value)


def test_an_env_that_is_not_a_goal_env_keeps_its_message():
    with pytest.raises(OptionError, match="CartPole-v1 is not a goal env: observation space must be a Dict"):
        make_env("CartPole-v1")


def test_kwargs_reach_the_env_constructor_and_the_time_limit():
    env = make_env("PointReach-v0", distance_threshold=0.3, max_episode_steps=7)
    assert env.unwrapped.distance_threshold == 0.3 and env_info(env).horizon == 7
    venv = make_vector_env("PointReach-v0", 2, kwargs={"step_size": 0.05})
    assert venv.get_attr("step_size") == (0.05, 0.05)
    venv.close()


@pytest.mark.parametrize(
    "kwargs, name, problem",
    [
        ({"bogus": 1}, "kwargs.bogus", "unexpected keyword argument 'bogus'"),
        ({"step_size": 0.1, "render_mode": "x"}, "kwargs.render_mode", "render_mode='x' is invalid"),
        ({"max_episode_steps": 0}, "kwargs.max_episode_steps", "expected an integer > 0"),
    ],
)
def test_refused_kwargs_are_named(kwargs, name, problem):
    with pytest.raises(OptionError) as err:
        make_env("PointReach-v0", **kwargs)
    assert err.value.name == name and problem in err.value.problem


def test_kwargs_must_be_a_mapping():
    with pytest.raises(OptionError, match="kwargs=.* is invalid: expected a mapping"):
        make_vector_env("PointReach-v0", 1, kwargs=[1, 2])  # type: ignore[arg-type]


def test_an_episode_that_terminates_early_stops_with_an_error(user_module):
    module = user_module("user_term_env", GOAL_ENV_MODULE.replace("{env_id}", "UserLineTerm-v0"))
    env = make_env(f"{module}:UserLineTerm-v0", terminate_at=3)
    env.reset(seed=0)
    env.step(np.zeros(1))
    env.step(np.zeros(1))
    with pytest.raises(EpisodeTerminated, match="UserLineTerm-v0 ended an episode early"):
        env.step(np.zeros(1))


def test_success_reported_as_success_is_read_as_is_success(user_module):
    module = user_module("user_success_env", GOAL_ENV_MODULE.replace("{env_id}", "UserLineSuccess-v0"))
    env = make_env(f"{module}:UserLineSuccess-v0", success_key="success")
    env.reset(seed=0)
    assert env.step(np.zeros(1))[4]["is_success"] == 1.0


ENV_CONFIGS = sorted(p.stem for p in (Path(CONFIG_DIR) / "env").glob("*.yaml"))


@pytest.mark.parametrize("env", ENV_CONFIGS)
def test_batched_rewards_are_those_of_single_transitions(env):
    """The relabeler computes a batch's rewards in one call; each must be the env's reward for that row."""
    cfg = compose_config(f"env={env}")
    e = make_env(cfg.env.id, **cfg.env.kwargs)
    info = env_info(e)
    e.action_space.seed(0)
    achieved, desired = [], []
    e.reset(seed=0)
    for i in range(8):  # goals the env itself produces, the odd rows reached (desired = achieved)
        obs, *_ = e.step(e.action_space.sample())
        achieved.append(obs["achieved_goal"])
        desired.append(obs["achieved_goal"] if i % 2 else obs["desired_goal"])
    a, g = np.array(achieved), np.array(desired)
    batched = np.asarray(info.compute_reward(a, g, {}))
    single = np.array([float(info.compute_reward(a[i], g[i], {})) for i in range(len(a))])
    np.testing.assert_array_equal(batched, single)
    assert len(set(single.tolist())) == 2  # both rewards occur: the check can see a wrong one
    e.close()
