"""Build goal-based gymnasium envs from an id, with gymnasium's public API only."""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import multiprocessing
import re
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.curriculum import ObjectInGripper
from her import validation
from her.goals import GOAL_KEYS, RewardFn

POINT_ENV_ID = "PointReach-v0"
BIT_FLIPPING_ENV_ID = "BitFlipping-v0"
VECTORIZATION_MODES = ("sync", "async")
FAILURE_REWARD = -1.0
"""The reward of a step whose achieved or desired goal holds NaN or inf: a failure of the sparse ``-1/0`` reward."""
# The gymnasium-robotics envs beyond Fetch that configs/env/ has presets for.
PRESET_IDS = (
    "HandReach-v3",
    "HandManipulateBlockRotateZ-v1",
    "HandManipulateEgg-v1",
    "HandManipulatePenRotate-v1",
    "PointMaze_UMaze-v3",
)


@functools.cache
def _register() -> None:
    """Register our point and bit-flipping envs and, if installed, the gymnasium-robotics envs (imported lazily:
    MuJoCo). Bit flipping's episodes last ``n_bits`` steps, a make keyword: its entry point adds the time limit."""
    if POINT_ENV_ID not in gym.registry:
        gym.register(POINT_ENV_ID, entry_point="envs.point:PointReachEnv", max_episode_steps=50)
    if BIT_FLIPPING_ENV_ID not in gym.registry:
        gym.register(BIT_FLIPPING_ENV_ID, entry_point="envs.bitflip:make_bit_flipping")
    try:
        # Its import prints a notice about the Adroit envs (unused here) to stderr on every run.
        with contextlib.redirect_stderr(io.StringIO()):
            import gymnasium_robotics
    except ImportError:  # pragma: no cover - gymnasium-robotics is a dependency; keep the point env usable
        return
    gym.register_envs(gymnasium_robotics)


def known_env_ids() -> list[str]:
    """Goal-env ids this project supports out of the box: those of configs/env/ and the other Fetch -v4 ids."""
    _register()
    fetch = sorted(i for i in gym.registry if i.startswith("Fetch") and i.endswith("-v4"))
    return [POINT_ENV_ID, BIT_FLIPPING_ENV_ID, *fetch, *(i for i in PRESET_IDS if i in gym.registry)]


class EpisodeTerminated(RuntimeError):
    """A goal env ended an episode before its time limit; episodes here are fixed-length."""


class FixedLengthGoalEnv(gym.Wrapper):
    """What the runner reads from every goal env, on envs that report it otherwise: ``info["is_success"]``
    copied from ``info["success"]`` where only that is given (gymnasium-robotics' mazes), and an
    ``EpisodeTerminated`` error instead of ``terminated=True``: HER here stores episodes of exactly
    ``max_episode_steps`` steps, and steps after a terminal state would be stored as if they followed it."""

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated:
            env_id = self.spec.id if self.spec is not None else type(self.unwrapped).__name__
            raise EpisodeTerminated(
                f"{env_id} ended an episode early (terminated=True): HER here trains on fixed-length episodes "
                "of max_episode_steps steps; use a continuing version of the task (e.g. PointMaze: "
                "env.kwargs.continuing_task=true)"
            )
        if "is_success" not in info and "success" in info:
            info["is_success"] = float(info["success"])
        return obs, reward, terminated, truncated, info


def resolve_env_id(env_id: Any) -> str:
    """Check that ``env_id`` names a registered env, importing the module of gymnasium's ``module:EnvId``
    form first (which registers ``EnvId`` as a side effect, as ``gym.make`` does itself)."""
    _register()
    if not isinstance(env_id, str) or env_id.count(":") > 1:
        raise validation.OptionError("id", env_id, "a registered env id or module:EnvId")
    module, _, name = env_id.rpartition(":")
    if not module:
        if env_id not in gym.registry:
            raise validation.OptionError(
                "id",
                env_id,
                "a registered env id, e.g. " + ", ".join(known_env_ids()) + "; or module:EnvId to import the "
                "module that registers EnvId",
            )
        return env_id
    try:
        importlib.import_module(module)
    except Exception as err:  # anything the user's module raises on import: report it, with its type
        problem = f"importing module {module!r} failed: {type(err).__name__}: {err}"
        raise validation.OptionError("id", env_id, "module:EnvId", problem) from err
    if name not in gym.registry:
        problem = f"module {module!r} was imported but registered no env {name!r}"
        raise validation.OptionError("id", env_id, "module:EnvId", problem)
    return env_id


def _refused(env_id: str, kwargs: Mapping[str, Any], err: Exception) -> validation.OptionError:
    """``kwargs.<key>`` (the key the error names, or the only one given) or all of ``kwargs``, with the
    error the env's constructor raised."""
    text = str(err).split(" was raised from the environment creator")[0]  # gym.make's suffix repeats kwargs
    problem = f"{env_id} refused it: {type(err).__name__}" + (f": {text}" if text else "")
    named = [k for k in kwargs if re.search(rf"\b{re.escape(str(k))}\b", text)]
    if len(kwargs) == 1 or len(named) == 1:
        key = named[0] if named else next(iter(kwargs))
        return validation.OptionError(f"kwargs.{key}", kwargs[key], "a value the env accepts", problem)
    return validation.OptionError("kwargs", dict(kwargs), "keyword arguments the env accepts", problem)


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """``gym.make(env_id, **kwargs)`` checked to be a goal env: Dict observations with ``observation``,
    ``achieved_goal``, ``desired_goal``, a symmetric Box action space or a ``Discrete`` one (actions
    ``0..n-1``), a ``max_episode_steps`` time limit and ``unwrapped.compute_reward``; wrapped in
    ``FixedLengthGoalEnv``.

    ``env_id`` is a registered id or ``module:EnvId``. ``kwargs`` go to ``gym.make``: the env's constructor
    (``reward_type``, a maze map, ...) or ``max_episode_steps``; one the env refuses raises an
    ``OptionError`` named ``kwargs.<key>``."""
    env_id = resolve_env_id(env_id)
    if "max_episode_steps" in kwargs:
        validation.positive_int("kwargs.max_episode_steps", kwargs["max_episode_steps"])
    try:
        env = gym.make(env_id, **{"disable_env_checker": True, **kwargs})
    except Exception as err:  # the constructor's own checks, of any type; without kwargs, the env's own bug
        if not kwargs:
            raise
        raise _refused(env_id, kwargs, err) from err
    problem = _not_a_goal_env(env_id, env)
    if problem:
        env.close()
        raise validation.OptionError("id", env_id, "a goal env", problem)
    return NonFiniteGoalFails(FixedLengthGoalEnv(env))


def _not_a_goal_env(env_id: str, env: gym.Env) -> str | None:
    """Why ``env`` cannot be trained on here, or ``None``."""
    obs_space = env.observation_space
    if not isinstance(obs_space, spaces.Dict) or set(obs_space.spaces) != set(GOAL_KEYS):
        return f"{env_id} is not a goal env: observation space must be a Dict with keys {GOAL_KEYS}"
    act = env.action_space
    if isinstance(act, spaces.Discrete):
        if act.start != 0:
            return f"{env_id} needs a Discrete action space of actions 0..n-1, got {act}"
    elif (
        not isinstance(act, spaces.Box)
        or not np.allclose(act.low, -act.high)
        or not np.allclose(act.high, act.high.flat[0])
    ):
        return f"{env_id} needs a Box action space with equal symmetric bounds or a Discrete one, got {act}"
    if env.spec is None or env.spec.max_episode_steps is None:
        return f"{env_id} has no max_episode_steps: HER needs fixed-length episodes"
    if not callable(getattr(env.unwrapped, "compute_reward", None)):
        return f"{env_id} is not a goal env: it has no compute_reward(achieved_goal, desired_goal, info)"
    return None


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
    """Sizes and the reward function of a goal env, read once from one instance.

    ``action_dim`` is the width of an action as stored: a Box's components, or 1 for a ``Discrete(n)`` space (the
    action's index, as a float). ``action_max``: a Box's bound (actions in ``[-action_max, action_max]``), or the
    largest index ``n - 1``. ``n_actions``: ``n`` of a ``Discrete(n)`` space, ``None`` for a Box.
    """

    obs_dim: int
    goal_dim: int
    action_dim: int
    action_max: float
    horizon: int
    compute_reward: RewardFn
    n_actions: int | None = None

    @property
    def discrete(self) -> bool:
        """Whether actions are indices of a ``Discrete`` space."""
        return self.n_actions is not None


def env_info(env: gym.Env) -> EnvInfo:
    obs_space = env.observation_space
    assert isinstance(obs_space, spaces.Dict) and env.spec is not None and env.spec.max_episode_steps
    compute_reward = env.unwrapped.compute_reward
    if getattr(env.unwrapped, "ignore_z_target_rotation", False):
        # gymnasium-robotics' HandManipulatePen* (ignore_z_target_rotation=True) sets the z angle of row 2 of
        # a batch, not of each row (`euler_a[2] = euler_b[2]`), so its batched rewards are wrong: call it per row.
        compute_reward = _row_by_row(compute_reward)
    act = env.action_space
    n_actions = int(act.n) if isinstance(act, spaces.Discrete) else None
    return EnvInfo(
        obs_dim=int(obs_space["observation"].shape[0]),
        goal_dim=int(obs_space["desired_goal"].shape[0]),
        action_dim=1 if n_actions is not None else int(act.shape[0]),
        action_max=float(n_actions - 1) if n_actions is not None else float(act.high.flat[0]),
        horizon=int(env.spec.max_episode_steps),
        compute_reward=failing_non_finite_goals(compute_reward),
        n_actions=n_actions,
    )


def _row_by_row(compute_reward: RewardFn) -> RewardFn:
    """``compute_reward`` of ``[B, g], [B, g] -> [B]`` called on one row at a time."""

    def rewards(achieved_goal: np.ndarray, desired_goal: np.ndarray, info: Any) -> np.ndarray:
        a, g = np.asarray(achieved_goal), np.asarray(desired_goal)
        if a.ndim == 1:
            return np.asarray(compute_reward(a, g, info))
        return np.array([compute_reward(a[i], g[i], info) for i in range(len(a))], dtype=np.float32)

    return rewards


def make_vector_env(
    env_id: str,
    num_envs: int = 1,
    vectorization: str = "sync",
    kwargs: Mapping[str, Any] | None = None,
    *,
    object_in_gripper: float = 0.0,
    wrapper: Callable[[gym.Env], gym.Env] | None = None,
) -> gym.vector.VectorEnv:
    """``num_envs`` copies of ``make_env(env_id, **kwargs)``: ``sync`` steps them in this process, ``async``
    in one subprocess each (gymnasium's ``AsyncVectorEnv``). Observations are not copied (``copy=False``):
    callers copy what they keep before the next ``step``.

    ``object_in_gripper`` > 0: each env is wrapped in ``ObjectInGripper`` (``envs.curriculum``), which starts
    that share of its episodes with the object in the gripper (for training envs only). ``wrapper``: wraps each
    env last (with ``async``, in its worker process; it must pickle, e.g. a wrapper class)."""
    num_envs = validation.positive_int("num_envs", num_envs)
    validation.choice("vectorization", vectorization, VECTORIZATION_MODES)
    kwargs = env_kwargs(kwargs)
    object_in_gripper = validation.real_in_range("object_in_gripper", object_in_gripper, 0.0, 1.0)
    fns = [functools.partial(_make_wrapped_env, wrapper, env_id, object_in_gripper, kwargs)] * num_envs
    if vectorization == "async":
        fns[0]().close()  # fail here, with a clear message, rather than inside a worker
        with _sigint_ignored():
            # The platform's own start method: inside a joblib (loky) job the default context is loky's, which
            # cannot pass the shared-memory observation buffers to the workers.
            context = multiprocessing.get_all_start_methods()[0]
            return gym.vector.AsyncVectorEnv(fns, shared_memory=True, copy=False, context=context)
    return gym.vector.SyncVectorEnv(fns, copy=False)


def _make_wrapped_env(
    wrapper: Callable[[gym.Env], gym.Env] | None, env_id: str, object_in_gripper: float, kwargs: Mapping[str, Any]
) -> gym.Env:
    env = _make_env_with_start_states(env_id, object_in_gripper, kwargs)
    return env if wrapper is None else wrapper(env)


def _make_env_with_start_states(env_id: str, object_in_gripper: float, kwargs: Mapping[str, Any]) -> gym.Env:
    """``make_env(env_id, **kwargs)``, wrapped in ``ObjectInGripper`` when ``object_in_gripper`` > 0."""
    env = make_env(env_id, **kwargs)
    if object_in_gripper == 0:
        return env
    try:
        return ObjectInGripper(env, object_in_gripper)
    except validation.OptionError:
        env.close()
        raise


def env_kwargs(kwargs: Any) -> dict[str, Any]:
    """``kwargs`` as a dict of ``gym.make`` keyword arguments (``None``: none)."""
    if kwargs is None:
        return {}
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise validation.OptionError("kwargs", kwargs, "a mapping of keyword arguments of gym.make")
    return dict(kwargs)


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Processes started inside inherit an ignored SIGINT: Ctrl-C, which a terminal sends to the whole
    process group, then reaches only the main process, which stops at a safe point (training.signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
