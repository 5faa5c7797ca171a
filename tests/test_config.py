"""Every config group option composes, and instantiates into the object train.py builds."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import CONFIG_DIR, compose_config
from hydra import compose, initialize_config_dir
from hydra.utils import get_object, instantiate
from omegaconf import OmegaConf

from agents import GoalAgent
from envs import env_info, make_env, make_vector_env
from her import HerReplayBuffer
from training.build import vectorization
from training.checkpoint import env_record
from training.distributed import Distributed
from training.runner import Runner


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


def test_every_group_has_options():
    for group in ("env", "agent", "buffer", "runner", "logger", "distributed", "checkpoint", "hydra", "hparams_search"):
        assert options(group), group
    for group in ("suite",):
        assert options(group), group


# (obs_dim, goal_dim, action_dim, episode steps) of each env config, as docs/envs.md gives them (the action_dim of
# a Discrete action space is 1: its index).
ENV_SIZES = {
    "BitFlipping": (30, 30, 1, 30),
    "FetchReach": (10, 3, 4, 50),
    "FetchPush": (25, 3, 4, 50),
    "FetchPickAndPlace": (25, 3, 4, 50),
    "FetchSlide": (25, 3, 4, 50),
    "PointReach": (2, 2, 2, 50),
    "HandReach": (63, 15, 20, 50),
    "HandManipulateBlock": (61, 7, 20, 100),
    "HandManipulateEgg": (61, 7, 20, 100),
    "HandManipulatePen": (61, 7, 20, 100),
    "PointMaze_UMaze": (4, 2, 2, 300),
}


def test_every_env_config_has_its_sizes_listed():
    assert sorted(ENV_SIZES) == options("env")


@pytest.mark.parametrize("env", options("env"))
def test_env_configs_compose_and_build(env):
    cfg = compose_config(f"env={env}")
    e = make_env(cfg.env.id, **cfg.env.kwargs)
    info = env_info(e)
    assert (info.obs_dim, info.goal_dim, info.action_dim, info.horizon) == ENV_SIZES[env]
    obs, _ = e.reset(seed=0)
    reward = info.compute_reward(np.stack([obs["achieved_goal"]] * 4), np.stack([obs["desired_goal"]] * 4), {})
    assert reward.shape == (4,)
    e.close()


# The agent each env trains with in these tests: DDPG, unless its action space is Discrete.
AGENT_OF_ENV = {"BitFlipping": "dqn"}
# An env each agent trains on in these tests.
ENV_OF_AGENT = {"dqn": "BitFlipping"}


@pytest.mark.parametrize("env", options("env"))
def test_env_configs_run_one_short_cycle(env, tmp_path):
    from training.cli import train

    cfg = compose_config(
        f"env={env}", f"agent={AGENT_OF_ENV.get(env, 'ddpg')}", "device=cpu", "torch_threads=1", "progress=false",
        "logger.tensorboard=false", "env.num_envs=1", "env.vectorization=sync", "runner.epochs=1",
        "runner.cycles_per_epoch=1", "runner.episodes_per_cycle=1", "runner.updates_per_cycle=1",
        "runner.eval_episodes=1", "buffer.size=1000",
    )  # fmt: skip
    metrics = train(cfg, tmp_path)
    assert metrics["env_steps"] == ENV_SIZES[env][3] and metrics["updates"] == 1
    assert metrics["buffer_transitions"] == ENV_SIZES[env][3]


@pytest.mark.parametrize("agent", options("agent"))
@pytest.mark.parametrize("buffer", options("buffer"))
@pytest.mark.parametrize("runner", options("runner"))
def test_agent_buffer_runner_configs_instantiate(agent, buffer, runner):
    env = ENV_OF_AGENT.get(agent, "PointReach")
    cfg = compose_config(f"env={env}", f"agent={agent}", f"buffer={buffer}", f"runner={runner}", "buffer.size=1000")
    e = make_env(cfg.env.id, **cfg.env.kwargs)
    info = env_info(e)
    buf = instantiate(cfg.buffer)(
        horizon=info.horizon,
        obs_dim=info.obs_dim,
        goal_dim=info.goal_dim,
        action_dim=info.action_dim,
        reward_fn=info.compute_reward,
    )
    assert isinstance(buf, HerReplayBuffer) and buf.batch_size == cfg.buffer.batch_size
    sizes = get_object(cfg.agent._target_).env_sizes(env_record(cfg.env.id, info))
    ag = instantiate(cfg.agent)(*sizes, device="cpu")
    assert isinstance(ag, GoalAgent) and ag.discrete_actions == info.discrete
    venv = make_vector_env(cfg.env.id, cfg.env.num_envs, vectorization(cfg), cfg.env.kwargs)
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
    out = buf.strategy({"ag": ag}, np.array([0, 1]), np.array([3, 4]), np.random.default_rng(0))
    np.testing.assert_array_equal(out, ag[[0, 1], -1])


def flatten(node: dict, prefix: str = "") -> dict[str, object]:
    """``{"a": {"b": 1}} -> {"a.b": 1}``."""
    flat: dict[str, object] = {}
    for key, value in node.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@pytest.mark.parametrize("experiment", options("experiment"))
def test_experiment_presets_compose_to_their_own_values(experiment):
    """Every value a preset sets is in the composed config, and each group it overrides is the one in effect."""
    text = (Path(CONFIG_DIR) / "experiment" / f"{experiment}.yaml").read_text()
    assert text.startswith("# @package _global_")
    preset = yaml.safe_load(text)
    cfg = compose_config(f"experiment={experiment}")
    for entry in preset.pop("defaults", []):
        for key, option in entry.items():
            group = key.removeprefix("override /")
            chosen = flatten(yaml.safe_load((Path(CONFIG_DIR) / group / f"{option}.yaml").read_text()))
            if group == "env":  # (env options are global packages: FetchReach also sets agent and runner values)
                assert cfg.env.id == chosen["env.id"], key
            else:
                assert cfg[group]._target_ == chosen["_target_"], key
    for key, value in flatten(preset).items():
        assert OmegaConf.select(cfg, key) == value, key


# Async envs (one subprocess each, runner.overlap=auto overlapping them) are under test in one preset; the others
# step their envs in-process.
ASYNC_PRESET = "fetch_pick_and_place"


@pytest.mark.parametrize("experiment", options("experiment"))
def test_experiment_presets_run_one_short_cycle(experiment, tmp_path):
    from training.cli import train

    vectorization = ["env.vectorization=" + ("async" if experiment == ASYNC_PRESET else "sync")]
    cfg = compose_config(
        f"experiment={experiment}", "device=cpu", "progress=false", "logger.tensorboard=false", "env.num_envs=2",
        "runner.epochs=1", "runner.cycles_per_epoch=1", "runner.episodes_per_cycle=2", "runner.updates_per_cycle=1",
        "runner.eval_episodes=2", "buffer.size=10000", "torch_threads=1", *vectorization,
    )  # fmt: skip
    metrics = train(cfg, tmp_path)
    assert metrics["env_steps"] == 100 and metrics["updates"] == 1 and metrics["buffer_transitions"] == 100


@pytest.mark.parametrize("distributed", options("distributed"))
def test_distributed_configs_instantiate(distributed, monkeypatch):
    for var in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    cfg = compose_config(f"distributed={distributed}")
    d = instantiate(cfg.distributed)(torch.device("cpu"))
    assert isinstance(d, Distributed) and d.world_size == 1 and d.grad_reduce.value == cfg.distributed.grad_reduce


def compose_with_hydra(*overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides), return_hydra_config=True)


@pytest.mark.parametrize(
    "launcher, target",
    [
        ("joblib", "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"),
        ("submitit_slurm", "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"),
        ("slurm", "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"),
    ],
)
def test_sweep_launchers_compose(launcher, target):
    cfg = compose_with_hydra(f"hydra/launcher={launcher}", "env=FetchPush")
    assert cfg.hydra.launcher._target_ == target
    if launcher == "slurm":  # our settings on top of the plugin's schema
        assert cfg.hydra.launcher.timeout_min == 720 and cfg.hydra.launcher.cpus_per_task == 4


@pytest.mark.parametrize("search", options("hparams_search"))
def test_hparams_searches_compose_into_an_optuna_sweep(search):
    cfg = compose_with_hydra(f"hparams_search={search}")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert sweeper.params and all(key.startswith("agent.") for key in sweeper.params)
    for key in sweeper.params:  # every tuned option exists in the agent config
        assert key.split(".", 1)[1] in cfg.agent


@pytest.mark.parametrize("agent", options("agent"))
def test_every_agent_option_in_the_yaml_is_a_constructor_argument(agent):
    from her.validation import keyword_options

    node = compose_config(f"env={ENV_OF_AGENT.get(agent, 'FetchReach')}", f"agent={agent}").agent
    taken = keyword_options(get_object(node._target_))
    assert taken is not None and {k for k in node if not k.startswith("_")} == taken - {
        "obs_dim",
        "goal_dim",
        "action_dim",
        "action_max",
        "n_actions",
        "device",
    }


# Preset groups set values on purpose (per env, per experiment, per search or suite); the option groups' files give
# the defaults, and those must be the defaults of the code they configure.
PRESET_DIRS = ("experiment", "tuning", "env", "hparams_search", "suite", "hydra")
# Groups without a ``_target_``: the callable train() hands their keys to.
UNTARGETED = {"checkpoint": "training.checkpoint.Checkpointer", "logger": "training.metrics.MetricsLogger"}
# Keys whose parameter has no default in Python: a caller must choose (the config gives the CLI's choice).
REQUIRED = {"buffer/her.yaml: size"}


def parameter_defaults(fn) -> dict[str, object]:
    """``fn``'s keyword parameters and their defaults (``inspect.Parameter.empty`` when required); for a class,
    its constructor's, following ``**kwargs`` up to the base classes that receive them (a subclass's own
    default wins)."""
    inits = [c.__dict__["__init__"] for c in fn.__mro__ if "__init__" in c.__dict__] if isinstance(fn, type) else [fn]
    defaults: dict[str, object] = {}
    for init in inits:
        params = list(inspect.signature(init).parameters.values())[1 if isinstance(fn, type) else 0 :]  # no self
        for p in params:
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                defaults.setdefault(p.name, p.default)
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return defaults


def targeted_nodes(node, where: str):
    """``(where, target, node)`` for ``node`` and every mapping below it that has a ``_target_``."""
    if isinstance(node, dict):
        if "_target_" in node:
            yield where, node["_target_"], node
        for key, value in node.items():
            yield from targeted_nodes(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from targeted_nodes(value, f"{where}[{i}]")


def same_value(yaml_value, default) -> bool:
    """YAML lists stand for tuples; a bool equals only a bool (``True == 1`` in Python)."""
    if isinstance(yaml_value, bool) or isinstance(default, bool):
        return type(yaml_value) is type(default) and yaml_value == default
    if isinstance(yaml_value, list) and isinstance(default, (list, tuple)):
        return len(yaml_value) == len(default) and all(map(same_value, yaml_value, default))
    return yaml_value == default


def option_files() -> list[Path]:
    root = Path(CONFIG_DIR)
    return sorted(p for p in root.rglob("*.yaml") if p.relative_to(root).parts[0] not in PRESET_DIRS)


def configured_targets() -> list[tuple[str, str, dict]]:
    found = []
    for path in option_files():
        name = str(path.relative_to(CONFIG_DIR))
        node = yaml.safe_load(path.read_text()) or {}
        found += list(targeted_nodes(node, name))
        if path.parent.name in UNTARGETED:
            found.append((name, UNTARGETED[path.parent.name], node))
    return found


def test_parameter_defaults_follow_kwargs_to_the_base_class():
    from agents import SAC

    defaults = parameter_defaults(SAC)
    assert defaults["n_critics"] == 2 and defaults["gamma"] == 0.98  # SAC's own default wins; the base's shows
    assert defaults["obs_dim"] is inspect.Parameter.empty and "self" not in defaults
    assert same_value([256, 256], (256, 256)) and not same_value(1, True) and not same_value(0.1, 1.0)


def test_the_default_check_covers_every_option_group():
    checked = {where.split("/")[0] for where, _, _ in configured_targets()}
    assert {"agent", "buffer", "runner", "distributed", "checkpoint", "logger"} <= checked


@pytest.mark.parametrize(("where", "target", "node"), [pytest.param(*t, id=t[0]) for t in configured_targets()])
def test_yaml_defaults_are_the_code_defaults(where, target, node):
    """Someone who builds a class in Python gets what the CLI gets: each key a group's yaml sets that its target
    takes as a keyword has the same value as the parameter's default."""
    defaults = parameter_defaults(get_object(target))
    keys = [key for key in node if not key.startswith("_")]
    assert [key for key in keys if key not in defaults] == [], f"{where}: keys {target} does not take"
    differ, required = [], []
    for key in keys:
        value = node[key]
        if defaults[key] is inspect.Parameter.empty:
            required.append(f"{where}: {key}")
        elif not same_value(value, defaults[key]):
            differ.append(f"{key}: yaml {value!r}, {target} {defaults[key]!r}")
    assert differ == [], where
    assert set(required) <= REQUIRED, f"{where}: keys without a default in {target}"
