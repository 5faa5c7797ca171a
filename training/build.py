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
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from threadpoolctl import threadpool_limits

from agents.precision import PrecisionChoice, choose_precision
from envs import EnvInfo, env_info, env_kwargs, make_env, make_vector_env
from envs.make import VECTORIZATION_MODES
from her import validation
from training import checkpoint
from training.checkpoint import RunInfo
from training.collect import EpisodeWorker
from training.distributed import Distributed, rank_seed
from training.hparams import hparams
from training.metrics import MetricsLogger
from training.options import ConfigError, check_agent_fits_env, check_options, checked, resolve_device
from training.runner import Runner


def usable_cores() -> int:
    """CPU cores this process may run on: its affinity mask (``taskset``) where the OS has one, else all."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def torch_threads(requested: int | None, num_envs: int, vectorization: str, processes: int = 1) -> int:
    """Threads for torch: ``requested``, or (``None``) this process's share of the cores (``processes``
    training processes on this machine) less its async env workers.

    Oversubscribing a small CPU (torch threads + env worker processes > cores) makes torch many times slower.
    """
    if requested is not None:
        return checked("", validation.positive_int, "torch_threads", requested)
    workers = num_envs if vectorization == "async" else 0
    return max(1, usable_cores() // processes - workers)


def overlap(cfg: DictConfig, processes: int = 1) -> bool:
    """``runner.overlap`` resolved. ``auto`` overlaps where the env can run in worker processes and this process
    has a core for them: ``env.vectorization=async``, or ``auto`` with 2 or more cores for each of the
    ``processes`` training processes on this machine (not with ``sync``)."""
    value = checked("runner", validation.boolean_or_auto, "overlap", cfg.runner.get("overlap", False))
    mode = checked("env", validation.choice, "vectorization", cfg.env.vectorization, ("auto", *VECTORIZATION_MODES))
    if value == "auto":
        return mode == "async" or (mode == "auto" and usable_cores() // processes >= 2)
    return value


def vectorization(cfg: DictConfig, processes: int = 1) -> str:
    """``env.vectorization`` resolved: ``auto`` is ``async`` (env worker processes) when ``runner.overlap``
    (resolved by ``overlap``) needs them, else ``sync``; ``runner.overlap=true`` with ``sync`` is refused."""
    mode, wanted = cfg.env.vectorization, overlap(cfg, processes)
    if mode == "auto":
        return "async" if wanted else "sync"
    if wanted and mode != "async":
        raise ConfigError(
            f"env.vectorization={mode!r} is invalid with runner.overlap=true: the episodes run in env worker "
            "processes while the learner updates (env.vectorization=async or auto)"
        )
    return mode


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


def choose_run_precision(cfg: DictConfig, agent: Any, batch_size: int, distributed: Distributed) -> PrecisionChoice:
    """Resolve ``agent.precision`` (``auto``: by a probe of ``agent``'s update at ``batch_size``, the run's own),
    set it on the agent, record the choice in ``cfg.precision_probe`` (saved with the run) and print it (rank 0).
    The choice sets nothing else: a recipe trains with the options its config gives, in either precision. Ranks
    train in one precision: bf16 only where every rank chose it."""
    # Only a resumed run's saved choice counts (its config is the saved one), never a value given to a new run.
    previous = cfg.get("precision_probe") if cfg.get("resume") is not None else None
    if OmegaConf.is_config(previous):
        previous = OmegaConf.to_container(previous, resolve=True)
    choice = checked("agent", choose_precision, agent.precision, agent, batch_size, previous=previous)
    (someone_fp32,) = distributed.any_rank(choice.chosen != "bf16")
    if someone_fp32 and choice.chosen == "bf16":
        choice = dataclasses.replace(choice, chosen="fp32")
    agent.precision = choice.chosen
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
    mode = vectorization(cfg, distributed.local_world_size)
    torch.set_num_threads(torch_threads(cfg.torch_threads, cfg.env.num_envs, mode, distributed.local_world_size))
    # NumPy's BLAS does only the small matmuls of acting (agents.acting): its extra threads slow those ~3x
    # at batch 8 while torch's threads are busy.
    threadpool_limits(1, user_api="blas")
    torch.manual_seed(seed)  # network initialization (rank 0's is copied to the other ranks)

    env_cfg, kwargs = cfg.env, env_options(cfg)
    # With runner.overlap each env runs whole episodes in its worker process (training.collect.EpisodeWorker).
    wrapper = EpisodeWorker if overlap(cfg, distributed.local_world_size) else None
    train_env = checked(
        "env",
        make_vector_env,
        env_cfg.id,
        env_cfg.num_envs,
        mode,
        kwargs,
        object_in_gripper=env_cfg.get("object_in_gripper", 0.0),  # training episodes only, never the eval env's
        wrapper=wrapper,
    )
    eval_env = make_vector_env(env_cfg.id, env_cfg.num_envs, mode, kwargs, wrapper=wrapper)
    if wrapper is not None:
        for env in (train_env, eval_env):
            env.set_attr("index", list(range(env.num_envs)))
    # Sizes and the batched reward function come from a local instance: a sync env's own first env, else a
    # new one (async envs live in their workers). Loading a Fetch model takes ~0.2 s of start-up.
    local = train_env.envs[0] if isinstance(train_env, gym.vector.SyncVectorEnv) else make_env(env_cfg.id, **kwargs)
    info = env_info(local)

    # The agent's size arguments (``env_sizes``) come from the env's record, as when a checkpoint rebuilds it.
    record = checkpoint.env_record(env_cfg.id, info, kwargs)
    check_agent_fits_env(cfg.agent._target_, record)  # first: an env's tuning holds options of its kind of agent
    check_options("agent", cfg.agent)
    agent = checked("agent", instantiate(cfg.agent), *get_object(cfg.agent._target_).env_sizes(record), device=device)
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
