"""Train a goal-conditioned agent with HER: ``python scripts/train.py env=FetchReach [key=value ...]``.

The config (configs/train.yaml) is composed by Hydra; this file is the only place that turns it into
objects. ``train(cfg)`` returns the final epoch's metrics; ``main`` returns the value a sweep optimizes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf

from envs import env_info, make_env, make_vector_env
from her import validation
from her.metrics import MetricsLogger

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


def check_options(group: str, node: DictConfig) -> None:
    """Refuse keys of a ``_target_`` group that its target does not take, e.g. ``+agent.policy_delay=2`` with
    ``agent=ddpg`` (without the ``+``, Hydra refuses a key the group's yaml lacks before we get here)."""
    target = node._target_
    allowed = validation.keyword_options(get_object(target))
    unknown = [str(k) for k in node if not str(k).startswith("_") and allowed is not None and k not in allowed]
    if unknown:
        options = ", ".join(sorted(k for k in node if not str(k).startswith("_") and k not in unknown))
        raise ConfigError(f"{group}.{unknown[0]} is not an option of {target} (its options: {options})")


def resolve_device(device: str) -> torch.device:
    validation.choice("device", device, ["cpu", "cuda", "auto"])
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' but torch sees no CUDA device (use device=cpu or device=auto)")
    return torch.device(device)


def torch_threads(requested: int | None, num_envs: int, vectorization: str) -> int:
    """Threads for torch: ``requested``, or (``None``) the cores not taken by async env workers.

    Oversubscribing a small CPU (torch threads + env worker processes > cores) makes torch many times slower.
    """
    if requested is not None:
        return _build("", validation.positive_int, "torch_threads", requested)
    workers = num_envs if vectorization == "async" else 0
    return max(1, (os.cpu_count() or 1) - workers)


def train(cfg: DictConfig, run_dir: str | Path | None = None) -> dict[str, Any]:
    """Build envs, buffer, agent and runner from ``cfg``, train, and return the last epoch's metrics."""
    if run_dir is None:
        run_dir = HydraConfig.get().runtime.output_dir
    seed = _build("", validation.non_negative_int, "seed", cfg.seed)
    device = _build("", resolve_device, cfg.device)
    torch.set_num_threads(torch_threads(cfg.torch_threads, cfg.env.num_envs, cfg.env.vectorization))
    torch.manual_seed(seed)  # network initialization

    check_options("agent", cfg.agent)
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
    logger = MetricsLogger(run_dir, tensorboard=bool(cfg.logger.tensorboard))
    runner = _build(
        "runner",
        instantiate(cfg.runner),
        agent,
        buffer,
        train_env,
        eval_env,
        info.horizon,
        seed=seed,
        logger=logger,
        progress=bool(cfg.progress),
    )
    try:
        metrics = runner.run()
        torch.save(
            {"agent": agent.state_dict(), "config": OmegaConf.to_container(cfg, resolve=True)},
            Path(run_dir) / "policy.pt",
        )
    finally:
        logger.close()
        train_env.close()
        eval_env.close()
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float:
    try:
        metrics = train(cfg)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(
        f"done: epoch {metrics['epoch']} env_steps {metrics['env_steps']} "
        f"eval_success_rate {metrics['eval_success_rate']:.3f} wall {metrics['wall_s']:.1f}s "
        f"-> {HydraConfig.get().runtime.output_dir}"
    )
    return float(metrics["eval_success_rate"])


if __name__ == "__main__":
    main()
