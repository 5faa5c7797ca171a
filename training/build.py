"""Config to objects: the envs, buffer, agent (in the precision chosen for this machine) and runner of a run, built
from its composed config. The only place where a ``DictConfig`` turns into library objects."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from threadpoolctl import threadpool_limits

from agents.precision import PrecisionChoice, choose_precision
from envs import EnvInfo, env_info, env_kwargs, make_env, make_vector_env
from her import validation
from training import checkpoint
from training.checkpoint import RunInfo
from training.distributed import Distributed, rank_seed
from training.hparams import hparams
from training.metrics import MetricsLogger
from training.options import ConfigError, check_options, checked, resolve_device
from training.runner import Runner


def torch_threads(requested: int | None, num_envs: int, vectorization: str, processes: int = 1) -> int:
    """Threads for torch: ``requested``, or (``None``) this process's share of the cores (``processes``
    training processes on this machine) less its async env workers.

    Oversubscribing a small CPU (torch threads + env worker processes > cores) makes torch many times slower.
    """
    if requested is not None:
        return checked("", validation.positive_int, "torch_threads", requested)
    workers = num_envs if vectorization == "async" else 0
    return max(1, (os.cpu_count() or 1) // processes - workers)


def env_options(cfg: DictConfig) -> dict[str, Any]:
    """``env.kwargs`` as a plain dict of ``gym.make`` keyword arguments (none when the config has no such key)."""
    kwargs = cfg.env.get("kwargs")
    if OmegaConf.is_config(kwargs):
        kwargs = OmegaConf.to_container(kwargs, resolve=True)
    return checked("env", env_kwargs, kwargs)


def run_info(cfg: DictConfig, info: Any) -> RunInfo:
    """What checkpoints record besides the states: env sizes, how to rebuild the agent, the resolved config."""
    agent_cfg = OmegaConf.to_container(cfg.agent, resolve=True)
    assert isinstance(agent_cfg, dict)
    kwargs = {k: v for k, v in agent_cfg.items() if k not in ("_target_", "_partial_")}
    config = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(config, dict)
    env = checkpoint.env_record(cfg.env.id, info, env_options(cfg))
    return RunInfo(env, str(agent_cfg["_target_"]), kwargs, config)


_ABSENT = object()

BY_PRECISION_GROUPS = ("buffer", "runner")
"""The config groups whose options ``by_precision`` may set (built after the precision is chosen)."""


def precision_options(cfg: DictConfig) -> dict[str, dict[str, Any]]:
    """``cfg.by_precision`` checked: ``{fp32|bf16: {"buffer.key" or "runner.key": value}}`` for existing keys."""
    node = cfg.get("by_precision") or {}
    table = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    if not isinstance(table, dict):
        raise ConfigError(f"by_precision={table!r} is invalid: expected a mapping of fp32/bf16 to options")
    for precision, options in table.items():
        if precision not in ("fp32", "bf16"):
            raise ConfigError(f"by_precision.{precision} is invalid: expected fp32 or bf16")
        if not isinstance(options, dict):
            raise ConfigError(f"by_precision.{precision}={options!r} is invalid: expected a mapping of options")
        for key in options:
            group = str(key).split(".", 1)[0]
            if group not in BY_PRECISION_GROUPS or OmegaConf.select(cfg, str(key), default=_ABSENT) is _ABSENT:
                raise ConfigError(
                    f"by_precision.{precision}: {key} is not an option it can set "
                    f"(an existing option of {' or '.join(BY_PRECISION_GROUPS)})"
                )
    return table


def choose_run_precision(cfg: DictConfig, agent: Any, batch_size: int, distributed: Distributed) -> PrecisionChoice:
    """Resolve ``agent.precision`` (``auto``: by a probe of ``agent``'s update at ``batch_size``), set it on the
    agent, apply the chosen precision's ``by_precision`` options to ``cfg``, record the choice in
    ``cfg.precision_probe`` (saved with the run, shown in HParams) and print it (rank 0). Ranks train in one
    precision: bf16 only where every rank chose it."""
    options = precision_options(cfg)
    # Only a resumed run's saved choice counts (its config is the saved one), never a value given to a new run.
    previous = cfg.get("precision_probe") if cfg.get("resume") is not None else None
    if OmegaConf.is_config(previous):
        previous = OmegaConf.to_container(previous, resolve=True)
    choice = checked("agent", choose_precision, agent.precision, agent, batch_size, previous=previous)
    (someone_fp32,) = distributed.any_rank(choice.chosen != "bf16")
    if someone_fp32 and choice.chosen == "bf16":
        choice = dataclasses.replace(choice, chosen="fp32")
    agent.precision = choice.chosen
    for key, value in options.get(choice.chosen, {}).items():
        OmegaConf.update(cfg, key, value)
    with open_dict(cfg):
        cfg.precision_probe = choice.record()
    if distributed.is_main:
        print(choice.describe(), flush=True)
        if (warning := choice.warning()) is not None:
            print(f"warning: {warning}", file=sys.stderr, flush=True)
    return choice


def build_runner(
    cfg: DictConfig, run_dir: Path | None, resume_step: int | None = None, overrides: Sequence[str] = ()
) -> tuple[Runner, EnvInfo]:
    """Envs, buffer, agent and runner from ``cfg`` (also sets torch threads and the torch seed).

    Metrics go to ``run_dir`` (on rank 0 only; ``None``: nowhere), continuing after ``resume_step`` (the env steps
    of all ranks of the last epoch logged before the checkpoint resumed from); a new run's TensorBoard gets its
    hparams (``overrides``: the command line's) and its config as text."""
    seed = checked("", validation.non_negative_int, "seed", cfg.seed)
    distributed = checked("distributed", instantiate(cfg.distributed), checked("", resolve_device, cfg.device))
    device = distributed.device  # under torchrun with cuda: this rank's GPU
    torch.set_num_threads(
        torch_threads(cfg.torch_threads, cfg.env.num_envs, cfg.env.vectorization, distributed.local_world_size)
    )
    # NumPy's BLAS does only the small matmuls of acting (agents.acting): its extra threads slow those ~3x
    # at batch 8 while torch's threads are busy.
    threadpool_limits(1, user_api="blas")
    torch.manual_seed(seed)  # network initialization (rank 0's is copied to the other ranks)

    check_options("agent", cfg.agent)
    env_cfg, kwargs = cfg.env, env_options(cfg)
    train_env = checked(
        "env",
        make_vector_env,
        env_cfg.id,
        env_cfg.num_envs,
        env_cfg.vectorization,
        kwargs,
        object_in_gripper=env_cfg.get("object_in_gripper", 0.0),  # training episodes only, never the eval env's
    )
    eval_env = make_vector_env(env_cfg.id, env_cfg.num_envs, env_cfg.vectorization, kwargs)
    # Sizes and the batched reward function come from a local instance: a sync env's own first env, else a
    # new one (async envs live in their workers). Loading a Fetch model takes ~0.2 s of start-up.
    local = train_env.envs[0] if isinstance(train_env, gym.vector.SyncVectorEnv) else make_env(env_cfg.id, **kwargs)
    info = env_info(local)

    agent = checked(
        "agent", instantiate(cfg.agent), info.obs_dim, info.goal_dim, info.action_dim, info.action_max, device=device
    )
    # The precision is chosen before the buffer and runner are built: by_precision may set their options.
    choose_run_precision(cfg, agent, checked("buffer", validation.positive_int, "batch_size", cfg.buffer.batch_size),
                         distributed)  # fmt: skip
    buffer = checked(
        "buffer",
        instantiate(cfg.buffer),
        horizon=info.horizon,
        obs_dim=info.obs_dim,
        goal_dim=info.goal_dim,
        action_dim=info.action_dim,
        reward_fn=info.compute_reward,
        gamma=agent.gamma,
    )
    distributed.attach(agent)
    # Only rank 0 writes files and shows progress; every rank trains on its own envs and buffer.
    writes = run_dir is not None and distributed.is_main
    logger = None
    if writes:
        logger = MetricsLogger(
            run_dir,
            bool(cfg.logger.tensorboard),
            resume_step=resume_step,
            hparams=hparams(cfg, overrides, distributed.world_size),
            config_text=OmegaConf.to_yaml(cfg, resolve=True),
        )
    runner = checked(
        "runner",
        instantiate(cfg.runner),
        agent,
        buffer,
        train_env,
        eval_env,
        info.horizon,
        seed=rank_seed(seed, distributed.rank),
        device=device,
        logger=logger,
        progress=bool(cfg.progress) and distributed.is_main,
        distributed=distributed,
    )
    return runner, info
