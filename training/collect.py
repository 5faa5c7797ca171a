"""Whole episodes from a vector env: ``collect_episodes`` runs them with a policy and returns a ``Rollout``;
``EpisodeWorker`` runs them inside an env's worker process, so that the learner can update meanwhile."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from her import validation
from her.goals import GOAL_KEYS


@dataclass
class Rollout:
    """Whole episodes from a vector env: ``obs``/``ag`` ``[n, T+1, dim]``, ``g``/``action`` ``[n, T, dim]``,
    ``success`` ``[n]`` (final-step ``is_success``), ``ret`` ``[n]`` (sum of rewards)."""

    episodes: dict[str, np.ndarray]
    success: np.ndarray
    ret: np.ndarray


StepInto = Callable[[np.ndarray, tuple[np.ndarray, ...], np.ndarray, np.ndarray], None]


def stored_action_dim(space: gym.Space) -> int:
    """The width of an action as episodes hold it: a Box's components, or 1 for a ``Discrete`` space (the index,
    as a float)."""
    return 1 if isinstance(space, gym.spaces.Discrete) else int(space.shape[0])


def step_into(env: gym.vector.VectorEnv) -> StepInto:
    """``step(actions [n, a], out, ret [n], success [n])``: step each of ``env``'s ``n`` envs once, write the
    new ``observation``, ``achieved_goal`` and ``desired_goal`` into the three ``[n, dim]`` arrays of ``out``,
    add the rewards to ``ret`` and set ``success`` to the steps' ``is_success`` (0 where an env has none). A
    ``Discrete`` env's actions are ``[n, 1]`` float indices, given to the env as integers.

    A ``SyncVectorEnv``'s envs are stepped one by one, their observations written straight to ``out``:
    gymnasium's batching of Dict observations and its autoreset bookkeeping cost ~60 µs a step, ~5% of a Fetch
    step, and autoreset is never needed here (every episode starts with an explicit ``reset``). Other vector
    envs (subprocess workers) step through their own ``step``.
    """
    discrete = isinstance(env.single_action_space, gym.spaces.Discrete)
    if isinstance(env, gym.vector.SyncVectorEnv):
        envs = env.envs

        def step_each(actions: np.ndarray, out: tuple[np.ndarray, ...], ret: np.ndarray, success: np.ndarray) -> None:
            for i, sub_env in enumerate(envs):
                obs, reward, _, _, info = sub_env.step(int(actions[i, 0]) if discrete else actions[i])
                for key, dst in zip(GOAL_KEYS, out):
                    dst[i] = obs[key]
                ret[i] += reward
                success[i] = info.get("is_success", 0.0)

        return step_each

    def step_batched(actions: np.ndarray, out: tuple[np.ndarray, ...], ret: np.ndarray, success: np.ndarray) -> None:
        obs, reward, _, _, info = env.step(actions[:, 0].astype(np.int64) if discrete else actions)
        for key, dst in zip(GOAL_KEYS, out):
            dst[:] = obs[key]
        ret += reward
        success[:] = info.get("is_success", 0.0)

    return step_batched


def collect_episodes(
    env: gym.vector.VectorEnv,
    policy: Callable[[np.ndarray, np.ndarray], np.ndarray],
    n_episodes: int,
    horizon: int,
    seed: int | None = None,
) -> Rollout:
    """Run ``n_episodes`` (a multiple of ``env.num_envs``) episodes of ``horizon`` steps.

    ``policy(obs [n_envs, o], goal [n_envs, g]) -> actions [n_envs, a]`` (``a``: ``stored_action_dim``, 1 for the
    float index of a ``Discrete`` action). Each batch of episodes starts
    with an explicit ``reset``; ``seed`` seeds the first one (env ``i`` gets ``seed + i``).
    """
    n_envs = env.num_envs
    if n_episodes % n_envs:
        raise ValueError(f"n_episodes={n_episodes} must be a multiple of num_envs={n_envs}")
    step = step_into(env)
    parts: list[Rollout] = []
    for r in range(n_episodes // n_envs):
        obs, _ = env.reset(seed=[seed + i for i in range(n_envs)] if seed is not None and r == 0 else None)
        # [n, T + 1, dim] each; the goal after the last step is not kept.
        o, ag, g = (np.empty((n_envs, horizon + 1, obs[key].shape[-1]), np.float32) for key in GOAL_KEYS)
        actions = np.empty((n_envs, horizon, stored_action_dim(env.single_action_space)), np.float32)
        ret, success = np.zeros(n_envs, np.float64), np.zeros(n_envs, np.float64)
        o[:, 0], ag[:, 0], g[:, 0] = (obs[key] for key in GOAL_KEYS)
        for t in range(horizon):
            actions[:, t] = policy(o[:, t], g[:, t])
            step(actions[:, t], (o[:, t + 1], ag[:, t + 1], g[:, t + 1]), ret, success)
        parts.append(Rollout({"obs": o, "ag": ag, "g": g[:, :horizon], "action": actions}, success, ret))
    return concatenate_rollouts(parts)


def concatenate_rollouts(parts: Sequence[Rollout]) -> Rollout:
    """One ``Rollout`` of the episodes of ``parts``, in order."""
    return Rollout(
        {k: np.concatenate([p.episodes[k] for p in parts]) for k in parts[0].episodes},
        np.concatenate([p.success for p in parts]),
        np.concatenate([p.ret for p in parts]),
    )


class ActingPolicy(Protocol):
    """``policy(obs [n, o], goal [n, g], explore, rng) -> actions [n, a]`` float32 in env units; exploring draws
    its randomness from ``rng`` (``agents.acting.HostPolicy``, ``UniformPolicy``)."""

    def __call__(
        self, obs: np.ndarray, goal: np.ndarray, explore: bool, rng: np.random.Generator | None = None
    ) -> np.ndarray: ...


@dataclass(frozen=True)
class UniformPolicy:
    """Uniform random actions in ``[low, high]`` (``[a]`` each: the action space's bounds), from ``rng``."""

    low: np.ndarray
    high: np.ndarray

    def __call__(
        self, obs: np.ndarray, goal: np.ndarray, explore: bool, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        if rng is None:
            raise ValueError("uniform random actions need an rng (numpy.random.Generator)")
        return rng.uniform(self.low, self.high, (len(obs), len(self.low))).astype(np.float32)


@dataclass(frozen=True)
class UniformIndices:
    """Uniform random actions of a ``Discrete(n)`` space: ``[n_envs, 1]`` float indices in ``0..n-1``, from ``rng``."""

    n: int

    def __call__(
        self, obs: np.ndarray, goal: np.ndarray, explore: bool, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        if rng is None:
            raise ValueError("uniform random actions need an rng (numpy.random.Generator)")
        return rng.integers(0, self.n, (len(obs), 1)).astype(np.float32)


def uniform_policy(space: gym.Space) -> ActingPolicy:
    """Uniform random actions of an env's action space: in a Box's bounds (``UniformPolicy``), or the indices of a
    ``Discrete`` space (``UniformIndices``)."""
    if isinstance(space, gym.spaces.Discrete):
        return UniformIndices(int(space.n))
    return UniformPolicy(space.low.astype(np.float64), space.high.astype(np.float64))


class EpisodeWorker(gym.Wrapper):
    """An env that runs whole episodes where it lives. Wrapped around the envs of an ``AsyncVectorEnv``, its
    ``collect`` (reached through ``call_async("collect", ...)``) acts with a pickled policy snapshot and steps the
    env in the worker process: the episodes of a cycle cost the process that started them nothing until it
    collects the result with ``call_wait()``.

    ``index`` is the env's place in its vector env (``set_attr("index", range(n))``): with several workers,
    worker ``i`` reads ``rng_seeds[i]`` and seeds its first reset with ``seed + i``, as ``collect_episodes`` seeds
    env ``i`` of a vector env.
    """

    episode_worker = True  # what a runner checks for (``get_attr``) before it hands episodes to workers

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.index = 0
        self._one_env: gym.vector.SyncVectorEnv | None = None

    def collect(
        self,
        policy: ActingPolicy,
        explore: bool,
        rng_seeds: Sequence[int] | None,
        n_episodes: int,
        horizon: int,
        seed: int | None = None,
    ) -> Rollout:
        """``collect_episodes`` of ``n_episodes`` here, ``policy(obs, goal, explore, rng)`` acting, with ``rng`` a
        new generator from ``rng_seeds[index]`` (``None``: no rng, for a policy that draws nothing)."""
        if self._one_env is None:  # the inner env as a vector env of one, for ``collect_episodes``
            inner = self.env
            self._one_env = gym.vector.SyncVectorEnv([lambda: inner], copy=False)
        rng = None if rng_seeds is None else np.random.default_rng(rng_seeds[self.index])

        def act(obs: np.ndarray, goal: np.ndarray) -> np.ndarray:
            return policy(obs, goal, explore, rng)

        return collect_episodes(self._one_env, act, n_episodes, horizon, None if seed is None else seed + self.index)


def has_episode_workers(env: gym.vector.VectorEnv) -> bool:
    """Whether ``env`` is an async vector env whose envs are ``EpisodeWorker`` (``start_in_workers`` can use it)."""
    if not isinstance(env, gym.vector.AsyncVectorEnv):
        return False
    try:
        return all(env.get_attr("episode_worker"))
    except AttributeError:
        return False


def resolve_overlap(overlap: bool | str, train_env: gym.vector.VectorEnv, eval_env: gym.vector.VectorEnv) -> bool:
    """A runner's ``overlap`` option checked: ``"auto"`` is whether both envs have episode workers, and ``True``
    without them is refused."""
    overlap = validation.boolean_or_auto("overlap", overlap)
    workers = has_episode_workers(train_env) and has_episode_workers(eval_env)
    if overlap is True and not workers:
        raise validation.OptionError(
            "overlap", overlap, "train and eval envs of worker processes (async vector envs of EpisodeWorker)"
        )
    return workers if overlap == "auto" else bool(overlap)


def start_in_workers(
    env: gym.vector.VectorEnv,
    policy: ActingPolicy,
    explore: bool,
    rng_seeds: Sequence[int] | None,
    n_episodes: int,
    horizon: int,
    seed: int | None = None,
) -> Callable[[], Rollout]:
    """Start ``n_episodes`` (a multiple of ``env.num_envs``) on the ``EpisodeWorker`` envs of the async vector
    env ``env``, ``n_episodes / num_envs`` in each; returns the function that waits for them: worker 0's
    episodes first."""
    per_env = n_episodes // env.num_envs
    args: tuple[Any, ...] = (policy, explore, None if rng_seeds is None else list(rng_seeds), per_env, horizon, seed)
    env.call_async("collect", *args)
    return lambda: concatenate_rollouts(env.call_wait())
