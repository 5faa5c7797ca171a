"""Evaluating a checkpoint: deterministic episodes of a trained policy (no exploration noise), their success rate
and mean return as JSON next to the run, and optionally rendered episodes as an mp4 or GIF and in the run's
TensorBoard. ``scripts/evaluate.py`` is its command line (options: configs/evaluate.yaml).

MuJoCo renders offscreen only if ``MUJOCO_GL`` is set before it loads: the entry point sets it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from agents.policy import ACTORS, Policy, load_policy
from envs import env_info, env_kwargs, make_env, make_vector_env
from her import validation
from training import checkpoint
from training.collect import collect_episodes
from training.options import CONFIG_DIR, ConfigError, resolve_device
from training.video import animated_gif, render_episodes, resize_clip, write_tensorboard_video, write_video


def option(check: Any, name: str, value: Any, *args: Any) -> Any:
    """``check(name, value, *args)`` with a failure reported as a ``ConfigError`` naming ``name``."""
    try:
        return check(name, value, *args)
    except validation.OptionError as err:
        raise ConfigError(f"{name}={err.value!r} is invalid: {err.problem}") from None


VIDEO_FORMATS = ("mp4", "gif")

# What configs/evaluate.yaml lists: any other key (``+env=FetchReach``, ``+foo=1``) would be ignored, so it is refused.
OPTIONS = frozenset(str(key) for key in OmegaConf.load(Path(CONFIG_DIR) / "evaluate.yaml")) - {"defaults", "hydra"}


def check_options(cfg: DictConfig) -> None:
    """Refuse keys that are no option of this script (added with ``+key=...``)."""
    unknown = sorted(str(key) for key in cfg if key not in OPTIONS)
    if unknown:
        hint = ": the env to evaluate on is env_id=<id>" if unknown[0] == "env" else ""
        raise ConfigError(
            f"{unknown[0]} is not an option of scripts/evaluate.py{hint} (its options: {', '.join(sorted(OPTIONS))})"
        )


def check_writable(option: str, path: Path) -> None:
    """Refuse a file ``path`` (``option`` names where it comes from) that could not be written: checked before the
    episodes run, so that their result is not lost at the end."""
    folder = path.parent
    if path.is_dir():
        problem = "it is a folder"
    elif not folder.is_dir():
        problem = f"its folder {folder} does not exist"
    elif not os.access(folder, os.W_OK):
        problem = f"its folder {folder} is not writable"
    else:
        return
    raise ConfigError(f"{option} is invalid: cannot write {path}: {problem}")


def run_dir_of(path: Path) -> Path:
    """The run dir a checkpoint file belongs to (``<run>/checkpoints/x.pt`` or ``<run>/policy.pt``)."""
    return path.parent.parent if path.parent.name == checkpoint.CHECKPOINT_DIR else path.parent


def policy_fn(policy: Policy):
    """``(obs [n, o], goal [n, g]) -> [n, a]``, the form the episode collectors call."""
    return lambda obs, goal: policy.act({"observation": obs, "desired_goal": goal})


def env_kwargs_of(cfg: DictConfig, policy: Policy) -> Any:
    """``env_kwargs`` as plain containers; ``null``: the checkpoint's own (for its own env id only)."""
    if cfg.env_kwargs is not None:
        return (
            OmegaConf.to_container(cfg.env_kwargs, resolve=True)
            if OmegaConf.is_config(cfg.env_kwargs)
            else cfg.env_kwargs
        )
    return policy.env.get("kwargs", {}) if not cfg.env_id else {}


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate the checkpoint ``cfg.policy`` as configured; returns what is written to the JSON file."""
    check_options(cfg)
    if OmegaConf.is_missing(cfg, "policy"):
        raise ConfigError("policy is required: a run dir or a checkpoint file, e.g. policy=runs/FetchReach/<time>")
    episodes = option(validation.positive_int, "episodes", cfg.episodes)
    num_envs = option(validation.positive_int, "num_envs", cfg.num_envs)
    seed = option(validation.non_negative_int, "seed", cfg.seed)
    if episodes % num_envs:
        raise ConfigError(f"episodes={episodes} is invalid: expected a multiple of num_envs={num_envs}")
    device = resolve_device(cfg.device)

    actor = option(validation.choice, "actor", cfg.actor, ACTORS)
    path = checkpoint.resolve_path(cfg.policy)
    out_dir, stem = run_dir_of(path), f"eval_{path.stem}" + ("_averaged" if actor == "averaged" else "")
    output = Path(cfg.output) if cfg.output else out_dir / f"{stem}.json"
    check_writable(f"output={cfg.output}" if cfg.output else "output=null (next to the checkpoint)", output)
    video_format = option(validation.choice, "video_format", cfg.video_format, VIDEO_FORMATS)
    video_size = None if cfg.video_size is None else option(validation.positive_int, "video_size", cfg.video_size)
    if cfg.video:
        check_writable("video=true", out_dir / f"{stem}.{video_format}")
    policy = load_policy(path, device, actor)
    env_id = cfg.env_id or policy.env["id"]
    kwargs = option(lambda _, v: env_kwargs(v), "env_kwargs", env_kwargs_of(cfg, policy))
    probe = option(lambda _, v: make_env(v, **kwargs), "env_id", env_id)
    info = env_info(probe)
    probe.close()
    policy.check_env_sizes(checkpoint.env_record(env_id, info, kwargs), path)

    envs = make_vector_env(env_id, num_envs, kwargs=kwargs)
    try:
        rollout = collect_episodes(envs, policy_fn(policy), episodes, info.horizon, seed)
    finally:
        envs.close()
    result: dict[str, Any] = {
        "checkpoint": str(path),
        "actor": actor,
        "env": env_id,
        **policy.counters,
        "episodes": episodes,
        "seed": seed,
        "success_rate": float(rollout.success.mean()),
        "mean_return": float(rollout.ret.mean()),
    }
    if cfg.video:
        video_path = out_dir / f"{stem}.{video_format}"
        result["video"] = record_video(cfg, policy, env_id, kwargs, video_path, stem.removeprefix("eval_"), video_size)
    output.write_text(json.dumps(result, indent=2) + "\n")
    return {**result, "output": str(output)}


def record_video(
    cfg: DictConfig, policy: Policy, env_id: str, kwargs: dict[str, Any], path: Path, name: str, size: int | None
) -> dict[str, Any]:
    """Render ``cfg.video_episodes`` episodes (seeded like the evaluation), resized to ``size`` pixels square
    unless ``None``, to ``path`` (an mp4, or a GIF by its suffix) and, with
    ``cfg.tensorboard``, to the run's TensorBoard as ``eval/video_<name>`` at the checkpoint's env steps."""
    n_episodes = option(validation.positive_int, "video_episodes", cfg.video_episodes)
    fps = option(validation.positive_int, "fps", cfg.fps)
    env = make_env(env_id, **{**kwargs, "render_mode": "rgb_array"})
    try:
        episodes = render_episodes(env, policy_fn(policy), n_episodes, int(cfg.seed))
    finally:
        env.close()
    clips = [e.frames if size is None else resize_clip(e.frames, size) for e in episodes]
    if path.suffix == ".gif":  # the file's name carries video_format
        path.write_bytes(animated_gif(clips, fps))
        n_frames = sum(len(clip) for clip in clips)
    else:
        n_frames = write_video(path, clips, fps)
    result = {
        "path": str(path),
        "frames": n_frames,
        "size": list(np.shape(clips[0])[1:3]),
        "bytes": path.stat().st_size,
        "episode_success": [e.success for e in episodes],
    }
    if cfg.tensorboard:
        tag, log_dir = f"eval/video_{name}", path.parent / "tb"
        write_tensorboard_video(log_dir, tag, clips, fps, int(policy.counters.get("env_steps", 0)))
        result["tensorboard"] = {"log_dir": str(log_dir), "tag": tag}
    return result
