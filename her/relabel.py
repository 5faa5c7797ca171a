"""Hindsight goal relabeling at sample time: one vectorized sampler, strategies as plain functions.

A goal strategy is any callable ``strategy(episodes, ep, t, rng) -> goals`` where ``episodes`` maps
``ag`` to the ``[n_episodes, T + 1, goal_dim]`` achieved goals and ``g`` to the ``[n_episodes, T, goal_dim]``
real goals of the stored episodes (``obs``, ``action`` too), ``ep`` and ``t`` are the ``[B]`` episode and
step indices of the transitions being relabeled, and the result is ``[B, goal_dim]``. The built-in
strategies are named by :class:`GoalStrategy`, :class:`MixtureStrategy` mixes them, and a custom one can
be given from config as a Hydra ``_target_`` (with ``_partial_: true`` for a function).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any, NamedTuple, Protocol

import numpy as np

from her import validation
from her.buffer import EpisodeBuffer

GOAL_KEYS = ("observation", "achieved_goal", "desired_goal")
"""The keys of a goal env's Dict observations (gymnasium-robotics' GoalEnv)."""


class RewardFn(Protocol):
    """``compute_reward(achieved_goal [B, g], desired_goal [B, g], info) -> rewards [B]`` (gymnasium GoalEnv)."""

    def __call__(self, achieved_goal: np.ndarray, desired_goal: np.ndarray, info: Any) -> np.ndarray: ...


Episodes = Mapping[str, np.ndarray]
GoalStrategyFn = Callable[[Episodes, np.ndarray, np.ndarray, np.random.Generator], np.ndarray]


def future_goals(episodes: Episodes, ep: np.ndarray, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A goal achieved later in the same episode: ``ag[ep, u]`` with ``u`` uniform in ``[t + 1, T]``."""
    ag = episodes["ag"]
    slots = ag.shape[1]
    future_t = t + 1 + (rng.random(len(t)) * (slots - 1 - t)).astype(np.int64)
    return _rows(ag).take(ep * slots + future_t, axis=0)


def final_goals(episodes: Episodes, ep: np.ndarray, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The goal achieved at the end of the episode, ``ag[ep, T]``."""
    return episodes["ag"][ep, -1]


def episode_goals(episodes: Episodes, ep: np.ndarray, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Any goal achieved in the same episode, ``ag[ep, u]`` with ``u`` uniform in ``[0, T]``."""
    ag = episodes["ag"]
    return ag[ep, rng.integers(0, ag.shape[1], len(ep))]


def random_goals(episodes: Episodes, ep: np.ndarray, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Any goal achieved in any stored episode (usually another episode)."""
    ag = episodes["ag"]
    n, slots = ag.shape[:2]
    return ag[rng.integers(0, n, len(ep)), rng.integers(0, slots, len(ep))]


def actual_goals(episodes: Episodes, ep: np.ndarray, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A real (desired) goal of any stored episode: goals from the task's own distribution."""
    g = episodes["g"]
    n, steps = g.shape[:2]
    return g[rng.integers(0, n, len(ep)), rng.integers(0, steps, len(ep))]


class GoalStrategy(str, Enum):
    FUTURE = "future"
    FINAL = "final"
    EPISODE = "episode"
    RANDOM = "random"
    ACTUAL = "actual"

    @property
    def fn(self) -> GoalStrategyFn:
        return _STRATEGY_FNS[self]


_STRATEGY_FNS: dict[GoalStrategy, GoalStrategyFn] = {
    GoalStrategy.FUTURE: future_goals,
    GoalStrategy.FINAL: final_goals,
    GoalStrategy.EPISODE: episode_goals,
    GoalStrategy.RANDOM: random_goals,
    GoalStrategy.ACTUAL: actual_goals,
}


class MixtureStrategy:
    """Each relabeled goal comes from one of several strategies, drawn with the given weights.

    ``MixtureStrategy({"future": 0.6, "random": 0.2, "actual": 0.2})`` mixes future goals, goals achieved
    in other episodes and real goals of other episodes (mrl's "futureactual" family). Combined with
    ``replay_k``, a fraction ``1/(1+k)`` of the batch keeps its own real goal.

    Args:
        weights: strategy name (see :class:`GoalStrategy`) -> non-negative weight; weights are normalized.
    """

    def __init__(self, weights: Mapping[str, float]) -> None:
        if not weights:
            raise validation.OptionError("weights", dict(weights), "a non-empty mapping of strategy -> weight")
        names = [validation.choice("weights", name, [s.value for s in GoalStrategy]) for name in weights]
        w = np.array([validation.real_in_range(f"weights.{n}", weights[n], 0.0, np.inf) for n in names])
        if w.sum() <= 0:
            raise validation.OptionError("weights", dict(weights), "at least one weight > 0")
        self.names = names
        self.fns = [GoalStrategy(n).fn for n in names]
        self.cum = np.cumsum(w / w.sum())

    def __call__(self, episodes: Episodes, ep: np.ndarray, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        which = np.minimum(np.searchsorted(self.cum, rng.random(len(ep)), side="right"), len(self.fns) - 1)
        goals = np.empty((len(ep), episodes["ag"].shape[-1]), np.float32)
        for i, fn in enumerate(self.fns):
            rows = which == i
            if rows.any():
                goals[rows] = fn(episodes, ep[rows], t[rows], rng)
        return goals


def resolve_strategy(strategy: str | GoalStrategy | GoalStrategyFn, name: str = "strategy") -> GoalStrategyFn:
    """A strategy name (``future``, ``final``, ``episode``, ``random``, ``actual``) or a callable."""
    if isinstance(strategy, GoalStrategy):
        return strategy.fn
    if isinstance(strategy, str):
        validation.choice(name, strategy, [s.value for s in GoalStrategy])
        return GoalStrategy(strategy).fn
    if callable(strategy):
        return strategy
    raise validation.OptionError(name, strategy, "one of future, final, episode, random, actual, or a callable")


def relabel_probability(replay_k: float) -> float:
    """``future_p = 1 - 1 / (1 + k)``: with ``k`` relabeled goals for every real one (Andrychowicz et al. 2017)."""
    k = validation.real_in_range("replay_k", replay_k, 0.0, float("inf"), high_open=True)
    return 1.0 - 1.0 / (1.0 + k)


def relabel_goals(
    episodes: Episodes,
    goals: np.ndarray,
    ep: np.ndarray,
    t: np.ndarray,
    strategy: GoalStrategyFn,
    relabel_p: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Replace each goal with probability ``relabel_p`` by one the strategy picks. Writes into ``goals``.

    Args:
        episodes: stored episodes (``ag`` ``[N, T + 1, g]``, ``g`` ``[N, T, g]``, ...).
        goals: ``[B, g]`` goals of the sampled transitions.
        ep, t: ``[B]`` episode and step indices of the sampled transitions.
    Returns:
        ``[B]`` bool mask of the relabeled rows.
    """
    mask = rng.random(len(ep)) < relabel_p
    if mask.any():
        goals[mask] = strategy(episodes, ep[mask], t[mask], rng)
    return mask


class Transitions(NamedTuple):
    """A sampled batch: ``obs``/``next_obs`` ``[B, o]``, ``action`` ``[B, a]``, ``reward`` ``[B]``,
    ``goal`` ``[B, g]``."""

    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_obs: np.ndarray
    goal: np.ndarray


def sample_her_transitions(
    episodes: Mapping[str, np.ndarray],
    batch_size: int,
    strategy: GoalStrategyFn,
    relabel_p: float,
    reward_fn: RewardFn,
    rng: np.random.Generator,
    episode_weights: np.ndarray | None = None,
) -> Transitions:
    """Sample ``batch_size`` transitions from stored episodes, relabel goals, recompute rewards.

    Args:
        episodes: ``obs`` ``[N, T+1, o]``, ``ag`` ``[N, T+1, g]``, ``g`` ``[N, T, g]``, ``action`` ``[N, T, a]``.
        reward_fn: called once for the whole batch as ``reward_fn(next_ag [B, g], goal [B, g], {})``.
        episode_weights: ``[N]`` non-negative sampling weights of the episodes (a step within an episode is
            uniform); ``None``: every transition equally likely.
    """
    n, horizon = episodes["g"].shape[:2]
    # Flat step indices (ep * T + t): rows of the [N * slots, dim] views are gathered with one flat index, much
    # faster than 2-D fancy indexing.
    if episode_weights is None:
        step = rng.integers(0, n * horizon, batch_size)
        ep, t = np.divmod(step, horizon)
    else:
        if episode_weights.shape != (n,):
            raise ValueError(f"episode_weights has shape {episode_weights.shape}, expected [{n}] (one per episode)")
        cum = np.cumsum(episode_weights, dtype=np.float64)
        ep = np.minimum(np.searchsorted(cum, rng.random(batch_size) * cum[-1], side="right"), n - 1)
        t = rng.integers(0, horizon, batch_size)
        step = ep * horizon + t
    state = step + ep  # ep * (T + 1) + t
    obs, ag = _rows(episodes["obs"]), _rows(episodes["ag"])
    goal = _rows(episodes["g"]).take(step, axis=0)
    relabel_goals(episodes, goal, ep, t, strategy, relabel_p, rng)
    next_state = state + 1
    reward = np.asarray(reward_fn(ag.take(next_state, axis=0), goal, {}), dtype=np.float32)
    return Transitions(
        obs=obs.take(state, axis=0),
        action=_rows(episodes["action"]).take(step, axis=0),
        reward=reward,
        next_obs=obs.take(next_state, axis=0),
        goal=goal,
    )


def _rows(x: np.ndarray) -> np.ndarray:
    """``[N, slots, dim] -> [N * slots, dim]`` (a view for the contiguous arrays of the buffer)."""
    return x.reshape(-1, x.shape[-1])


def success_reward(reached: np.ndarray) -> np.ndarray:
    """``[...]`` bool -> ``[...]`` float32 sparse rewards: ``0`` where reached, else ``-1``. Callers pass
    ``d <= threshold`` (not ``-(d > threshold)``, which is ``0`` for a NaN distance): a NaN or inf distance fails."""
    return np.where(reached, np.float32(0.0), np.float32(-1.0))


def sparse_reward(threshold: float = 0.05) -> RewardFn:
    """Fetch's sparse reward: ``0`` when ``||achieved - desired|| <= threshold``, else ``-1``; a NaN or inf
    distance is a failure (``-1``), never a success."""
    threshold = validation.positive_real("threshold", threshold)

    def compute_reward(achieved_goal: np.ndarray, desired_goal: np.ndarray, info: Any = None) -> np.ndarray:
        d = np.linalg.norm(np.asarray(achieved_goal) - np.asarray(desired_goal), axis=-1)
        return success_reward(d <= threshold)

    return compute_reward


class HerReplayBuffer:
    """Episode storage plus the hindsight sampler: what the runner stores into and trains from.

    Args:
        size: capacity in transitions (``size // horizon`` episodes are kept).
        horizon: episode length ``T``. obs_dim, goal_dim, action_dim: per-step sizes.
        reward_fn: the env's batched ``compute_reward``.
        strategy: ``future``, ``final``, ``episode``, ``random`` or a callable (see module doc).
        replay_k: relabeled goals per real goal; relabel probability ``1 - 1/(1+k)``.
        motion_priority: episodes are sampled with weight ``1 + motion_priority * min(L / motion_scale, 1)``,
            where ``L`` is the path length of the episode's achieved goal (in Push and PickAndPlace, how far
            the object moved): an episode that moved it by ``motion_scale`` or more is replayed
            ``1 + motion_priority`` times as often as one that left it in place, in the spirit of
            energy-based prioritization (Zhao & Tresp 2018). ``0``: uniform over transitions.
        motion_scale: the path length (goal-space units, meters in Fetch) at which the weight saturates.
    """

    def __init__(
        self,
        size: int,
        horizon: int,
        obs_dim: int,
        goal_dim: int,
        action_dim: int,
        reward_fn: RewardFn,
        strategy: str | GoalStrategyFn = "future",
        replay_k: float = 4.0,
        motion_priority: float = 0.0,
        motion_scale: float = 0.05,
    ) -> None:
        size = validation.positive_int("size", size)
        horizon = validation.positive_int("horizon", horizon)
        if size < horizon:
            raise validation.OptionError("size", size, f"at least one episode of {horizon} transitions")
        self.strategy = resolve_strategy(strategy)
        self.relabel_p = relabel_probability(replay_k)
        self.motion_priority = validation.real_in_range("motion_priority", motion_priority, 0.0, np.inf, high_open=True)
        self.motion_scale = validation.positive_real("motion_scale", motion_scale)
        self.reward_fn = reward_fn
        self.horizon = horizon
        self.storage = EpisodeBuffer(
            size // horizon,
            {
                "obs": (horizon + 1, obs_dim),
                "ag": (horizon + 1, goal_dim),
                "g": (horizon, goal_dim),
                "action": (horizon, action_dim),
            },
        )
        self.episode_weights = np.ones(self.storage.capacity, np.float64)  # of the slots (motion_priority > 0)

    @property
    def n_transitions(self) -> int:
        return self.storage.n_episodes * self.horizon

    def store(self, episodes: Mapping[str, np.ndarray]) -> None:
        """Store ``[n, ...]`` episodes with fields ``obs``, ``ag``, ``g``, ``action``."""
        slots = self.storage.store(episodes)
        if self.motion_priority > 0:
            self.episode_weights[slots] = self._weights(episodes["ag"])

    def _weights(self, ag: np.ndarray) -> np.ndarray:
        """``[n, T + 1, g]`` achieved goals -> ``[n]`` sampling weights (``motion_priority``)."""
        path = np.linalg.norm(np.diff(ag.astype(np.float64), axis=1), axis=-1).sum(axis=1)
        return 1.0 + self.motion_priority * np.minimum(path / self.motion_scale, 1.0)

    def sample(self, batch_size: int, rng: np.random.Generator) -> Transitions:
        if self.storage.n_episodes == 0:
            raise RuntimeError("cannot sample from an empty buffer")
        weights = self.episode_weights[: self.storage.n_episodes] if self.motion_priority > 0 else None
        return sample_her_transitions(
            self.storage.stored(), batch_size, self.strategy, self.relabel_p, self.reward_fn, rng, weights
        )

    def state_dict(self) -> dict[str, object]:
        """The stored episodes (``data``: ``name -> [n_episodes, slots, dim]``) and write position."""
        return self.storage.state_dict()

    def load_state_dict(self, state: Mapping[str, object]) -> None:
        """Restore the episodes; sampling weights are recomputed from their achieved goals."""
        self.storage.load_state_dict(state)
        if self.motion_priority > 0:
            n = self.storage.n_episodes
            self.episode_weights[:n] = self._weights(self.storage.data["ag"][:n])
