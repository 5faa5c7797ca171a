"""Every config group option composes, and instantiates into the object train.py builds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import CONFIG_DIR, compose_config
from hydra.utils import instantiate

from agents import ActorCriticAgent
from envs import env_info, make_env, make_vector_env
from her import HerReplayBuffer
from her.runner import Runner


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


def test_every_group_has_options():
    for group in ("env", "agent", "buffer", "runner", "logger", "hydra"):
        assert options(group), group


@pytest.mark.parametrize("env", options("env"))
def test_env_configs_compose_and_build(env):
    cfg = compose_config(f"env={env}")
    e = make_env(cfg.env.id)
    info = env_info(e)
    assert info.horizon == 50 and info.obs_dim > 0 and info.goal_dim > 0
    obs, _ = e.reset(seed=0)
    reward = info.compute_reward(np.stack([obs["achieved_goal"]] * 4), np.stack([obs["desired_goal"]] * 4), {})
    assert reward.shape == (4,)
    e.close()


@pytest.mark.parametrize("agent", options("agent"))
@pytest.mark.parametrize("buffer", options("buffer"))
@pytest.mark.parametrize("runner", options("runner"))
def test_agent_buffer_runner_configs_instantiate(agent, buffer, runner):
    cfg = compose_config("env=PointReach", f"agent={agent}", f"buffer={buffer}", f"runner={runner}", "buffer.size=1000")
    e = make_env(cfg.env.id)
    info = env_info(e)
    buf = instantiate(cfg.buffer)(
        horizon=info.horizon,
        obs_dim=info.obs_dim,
        goal_dim=info.goal_dim,
        action_dim=info.action_dim,
        reward_fn=info.compute_reward,
    )
    assert isinstance(buf, HerReplayBuffer)
    ag = instantiate(cfg.agent)(info.obs_dim, info.goal_dim, info.action_dim, info.action_max, device="cpu")
    assert isinstance(ag, ActorCriticAgent) and ag.batch_size == cfg.agent.batch_size
    venv = make_vector_env(cfg.env.id, cfg.env.num_envs, cfg.env.vectorization)
    run = instantiate(cfg.runner)(ag, buf, venv, venv, info.horizon, seed=0, logger=None, progress=False)
    assert isinstance(run, Runner) and run.epochs == cfg.runner.epochs
    venv.close()


def test_custom_strategy_from_a_target():
    cfg = compose_config("env=PointReach")
    cfg.buffer.strategy = {"_target_": "her.relabel.final_goals", "_partial_": True}
    buf = instantiate(cfg.buffer)(
        horizon=50, obs_dim=2, goal_dim=2, action_dim=2, reward_fn=lambda a, g, i: -np.ones(len(a))
    )
    ag = np.arange(2 * 51 * 2, dtype=np.float32).reshape(2, 51, 2)
    out = buf.strategy(ag, np.array([0, 1]), np.array([3, 4]), np.random.default_rng(0))
    np.testing.assert_array_equal(out, ag[[0, 1], -1])


@pytest.mark.parametrize("experiment", options("experiment"))
def test_experiment_presets_compose(experiment):
    cfg = compose_config(f"experiment={experiment}")
    assert make_env(cfg.env.id) is not None
    assert cfg.runner.epochs > 0


@pytest.mark.parametrize("agent", options("agent"))
def test_every_agent_option_in_the_yaml_is_a_constructor_argument(agent):
    from hydra.utils import get_object

    from her.validation import keyword_options

    node = compose_config(f"agent={agent}").agent
    taken = keyword_options(get_object(node._target_))
    assert taken is not None and {k for k in node if not k.startswith("_")} == taken - {
        "obs_dim",
        "goal_dim",
        "action_dim",
        "action_max",
        "device",
    }
