"""Build goal-based gymnasium envs from an id, with gymnasium's public API only."""

from __future__ import annotations

import contextlib
import functools
import io
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from her import validation
from her.relabel import GOAL_KEYS, RewardFn

POINT_ENV_ID = "PointReach-v0"
VECTORIZATION_MODES = ("sync", "async")
FAILURE_REWARD = -1.0
"""The reward of a step whose achieved or desired goal holds NaN or inf: a failure of the sparse ``-1/0`` reward."""


@functools.cache
def _register() -> None:
    """Register our point env and, if installed, the gymnasium-robotics envs (imported lazily: MuJoCo)."""
    if POINT_ENV_ID not in gym.registry:
        gym.register(POINT_ENV_ID, entry_point="envs.point:PointReachEnv", max_episode_steps=50)
    try:
        # Its import prints a notice about the Adroit envs (unused here) to stderr on every run.
        with contextlib.redirect_stderr(io.StringIO()):
            import gymnasium_robotics
    except ImportError:  # pragma: no cover - gymnasium-robotics is a dependency; keep the point env usable
        return
    gym.register_envs(gymnasium_robotics)


def known_env_ids() -> list[str]:
    """Goal-env ids this project supports out of the box."""
    _register()
    return [POINT_ENV_ID] + sorted(i for i in gym.registry if i.startswith("Fetch") and i.endswith("-v4"))


def make_env(env_id: str, **kwargs: object) -> gym.Env:
    """``gym.make(env_id)`` checked to be a goal env: Dict observations with ``observation``,
    ``achieved_goal``, ``desired_goal``, a symmetric Box action space and ``unwrapped.compute_reward``."""
    _register()
    if env_id not in gym.registry:
        raise validation.OptionError("id", env_id, "a registered env id, e.g. " + ", ".join(known_env_ids()))
    env = gym.make(env_id, disable_env_checker=True, **kwargs)
    obs_space = env.observation_space
    if not isinstance(obs_space, spaces.Dict) or set(obs_space.spaces) != set(GOAL_KEYS):
        raise ValueError(f"{env_id} is not a goal env: observation space must be a Dict with keys {GOAL_KEYS}")
    act = env.action_space
    if (
        not isinstance(act, spaces.Box)
        or not np.allclose(act.low, -act.high)
        or not np.allclose(act.high, act.high.flat[0])
    ):
        raise ValueError(f"{env_id} needs a Box action space with equal symmetric bounds, got {act}")
    if env.spec is None or env.spec.max_episode_steps is None:
        raise ValueError(f"{env_id} has no max_episode_steps: HER needs fixed-length episodes")
    return NonFiniteGoalFails(env)


def finite_goals(achieved_goal: np.ndarray, desired_goal: np.ndarray) -> np.ndarray:
    """``[..., g], [..., g] -> [...]`` bool: both goals hold only finite numbers."""
    return np.isfinite(achieved_goal).all(axis=-1) & np.isfinite(desired_goal).all(axis=-1)


class NonFiniteGoalFails(gym.Wrapper):
    """A step whose achieved or desired goal holds NaN or inf (a diverged policy's actions, a simulator that
    blew up) is a failure: reward ``FAILURE_REWARD`` and ``is_success`` 0. gymnasium-robotics' Fetch
    ``compute_reward`` writes ``-(d > threshold)``, which is 0, a success, for a NaN distance."""

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if not finite_goals(obs["achieved_goal"], obs["desired_goal"]):
            reward, info = FAILURE_REWARD, {**info, "is_success": 0.0}
        return obs, reward, terminated, truncated, info


def failing_non_finite_goals(compute_reward: RewardFn) -> RewardFn:
    """``compute_reward`` with ``FAILURE_REWARD`` wherever a goal of the batch holds NaN or inf (see
    ``NonFiniteGoalFails``); ``[B, g], [B, g] -> [B]``."""

    def guarded(achieved_goal: np.ndarray, desired_goal: np.ndarray, info: Any) -> np.ndarray:
        reward = compute_reward(achieved_goal, desired_goal, info)
        finite = finite_goals(np.asarray(achieved_goal), np.asarray(desired_goal))
        if finite.all():
            return reward
        return np.where(finite, reward, FAILURE_REWARD).astype(np.float32)

    return guarded


@dataclass(frozen=True)
class EnvInfo:
    """Sizes and the reward function of a goal env, read once from one instance."""

    obs_dim: int
    goal_dim: int
    action_dim: int
    action_max: float
    horizon: int
    compute_reward: RewardFn


def env_info(env: gym.Env) -> EnvInfo:
    obs_space = env.observation_space
    assert isinstance(obs_space, spaces.Dict) and env.spec is not None and env.spec.max_episode_steps
    return EnvInfo(
        obs_dim=int(obs_space["observation"].shape[0]),
        goal_dim=int(obs_space["desired_goal"].shape[0]),
        action_dim=int(env.action_space.shape[0]),
        action_max=float(env.action_space.high.flat[0]),
        horizon=int(env.spec.max_episode_steps),
        compute_reward=failing_non_finite_goals(env.unwrapped.compute_reward),
    )


def make_vector_env(env_id: str, num_envs: int = 1, vectorization: str = "sync") -> gym.vector.VectorEnv:
    """``num_envs`` copies of ``make_env(env_id)``: ``sync`` steps them in this process, ``async`` in
    one subprocess each (gymnasium's ``AsyncVectorEnv``). Observations are not copied (``copy=False``):
    callers copy what they keep before the next ``step``."""
    num_envs = validation.positive_int("num_envs", num_envs)
    validation.choice("vectorization", vectorization, VECTORIZATION_MODES)
    fns = [functools.partial(make_env, env_id)] * num_envs
    if vectorization == "async":
        make_env(env_id).close()  # fail here, with a clear message, rather than inside a worker
        with _sigint_ignored():
            return gym.vector.AsyncVectorEnv(fns, shared_memory=True, copy=False)
    return gym.vector.SyncVectorEnv(fns, copy=False)


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Processes started inside inherit an ignored SIGINT: Ctrl-C, which a terminal sends to the whole
    process group, then reaches only the main process, which stops at a safe point (her.run.signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
