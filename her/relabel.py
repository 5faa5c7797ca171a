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
from typing import NamedTuple

import numpy as np

from her import validation
from her.goals import RewardFn

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
