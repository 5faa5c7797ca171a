"""Train a goal-conditioned agent with HER: ``python scripts/train.py env=FetchReach [key=value ...]``.

The config (configs/train.yaml) is composed by Hydra; this file is the only place that turns it into
objects. ``train(cfg)`` returns the final epoch's metrics; ``main`` returns the value a sweep optimizes.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from envs import env_info, make_env, make_vector_env
from her import validation
from her.distributed import launched_by_torchrun, rank_seed
from her.metrics import MetricsLogger
from her.runner import Runner

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs")


class ConfigError(Exception):
    """A bad option, reported as ``group.key=value`` without a traceback."""


def _build(group: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn``; an ``OptionError`` becomes a ``ConfigError`` naming ``group.option``."""
    try:
        return fn(*args, **kwargs)
    except validation.OptionError as err:
        key = f"{group}.{err.name}" if group else err.name
        raise ConfigError(f"{key}={err.value!r} is invalid: expected {err.allowed}") from None


def resolve_device(device: str) -> torch.device:
    validation.choice("device", device, ["cpu", "cuda", "auto"])
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' but torch sees no CUDA device (use device=cpu or device=auto)")
    return torch.device(device)


def torch_threads(requested: int | None, num_envs: int, vectorization: str, processes: int = 1) -> int:
    """Threads for torch: ``requested``, or (``None``) this process's share of the cores (``processes``
    training processes on this machine) less its async env workers.

    Oversubscribing a small CPU (torch threads + env worker processes > cores) makes torch many times slower.
    """
    if requested is not None:
        return _build("", validation.positive_int, "torch_threads", requested)
    workers = num_envs if vectorization == "async" else 0
    return max(1, (os.cpu_count() or 1) // processes - workers)


def build_runner(cfg: DictConfig, run_dir: Path | None) -> Runner:
    """Envs, buffer, agent and runner from ``cfg`` (also sets torch threads and the torch seed).

    Metrics go to ``run_dir`` (on rank 0 only); ``None``: nowhere."""
    seed = _build("", validation.non_negative_int, "seed", cfg.seed)
    distributed = _build("distributed", instantiate(cfg.distributed), _build("", resolve_device, cfg.device))
    device = distributed.device  # under torchrun with cuda: this rank's GPU
    torch.set_num_threads(
        torch_threads(cfg.torch_threads, cfg.env.num_envs, cfg.env.vectorization, distributed.local_world_size)
    )
    torch.manual_seed(seed)  # network initialization (rank 0's is copied to the other ranks)

    env_cfg = cfg.env
    train_env = _build("env", make_vector_env, env_cfg.id, env_cfg.num_envs, env_cfg.vectorization)
    eval_env = make_vector_env(env_cfg.id, env_cfg.num_envs, env_cfg.vectorization)
    # Sizes and the batched reward function come from one local instance (async workers live elsewhere).
    info = env_info(make_env(env_cfg.id))

    buffer = _build(
        "buffer",
        instantiate(cfg.buffer),
        horizon=info.horizon,
        obs_dim=info.obs_dim,
        goal_dim=info.goal_dim,
        action_dim=info.action_dim,
        reward_fn=info.compute_reward,
    )
    agent = _build(
        "agent", instantiate(cfg.agent), info.obs_dim, info.goal_dim, info.action_dim, info.action_max, device=device
    )
    distributed.attach(agent)
    # Only rank 0 writes files and shows progress; every rank trains on its own envs and buffer.
    logger = (
        MetricsLogger(run_dir, bool(cfg.logger.tensorboard)) if run_dir is not None and distributed.is_main else None
    )
    return _build(
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


def train(cfg: DictConfig, run_dir: str | Path | None = None) -> dict[str, Any]:
    """Build everything from ``cfg``, train, save the policy, and return the last epoch's metrics."""
    if run_dir is None:
        run_dir = HydraConfig.get().runtime.output_dir
    runner = build_runner(cfg, Path(run_dir))
    try:
        metrics = runner.run()
        if runner.distributed.is_main:
            torch.save(
                {"agent": runner.agent.state_dict(), "config": OmegaConf.to_container(cfg, resolve=True)},
                Path(run_dir) / "policy.pt",
            )
    finally:
        runner.close()
    return metrics


def other_rank_overrides(environ: dict[str, str]) -> list[str]:
    """Hydra overrides that send the Hydra files of torchrun ranks > 0 to a scratch dir, so that a job writes one
    run dir (rank 0's). Appended after the user's overrides, they win over a ``hydra.run.dir=`` given there."""
    rank = int(environ.get("RANK", "0"))
    if rank == 0:
        return []
    scratch = Path(tempfile.gettempdir()) / f"her-fetch-{environ.get('TORCHELASTIC_RUN_ID', 'job')}" / f"rank{rank}"
    return [f"hydra.run.dir={scratch}", f"hydra.sweep.dir={scratch}", "hydra.output_subdir=null"]


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float:
    try:
        if launched_by_torchrun() and HydraConfig.get().mode == RunMode.MULTIRUN:
            raise ConfigError("torchrun runs one training on several ranks: start sweeps (-m) without torchrun")
        metrics = train(cfg)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    if int(os.environ.get("RANK", "0")) != 0:  # rank 0 reports
        return float(metrics["eval_success_rate"])
    print(
        f"done: epoch {metrics['epoch']} env_steps {metrics['env_steps']} "
        f"eval_success_rate {metrics['eval_success_rate']:.3f} wall {metrics['wall_s']:.1f}s "
        f"-> {HydraConfig.get().runtime.output_dir}"
    )
    return float(metrics["eval_success_rate"])


if __name__ == "__main__":
    sys.argv += other_rank_overrides(dict(os.environ))
    main()
