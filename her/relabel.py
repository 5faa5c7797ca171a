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
    ``goal`` ``[B, g]``, ``discount`` ``[B]``.

    A row is an ``m``-step transition (``m = 1`` unless the sampler was asked for n-step returns): ``reward``
    is ``sum_{k<m} gamma^k r_{t+k}``, ``next_obs`` the observation ``m`` steps after ``obs``, and ``discount``
    ``gamma^m``, what the TD target multiplies the value of ``next_obs`` by (``r + discount * V(s')``)."""

    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_obs: np.ndarray
    goal: np.ndarray
    discount: np.ndarray


def sample_her_transitions(
    episodes: Mapping[str, np.ndarray],
    batch_size: int,
    strategy: GoalStrategyFn,
    relabel_p: float,
    reward_fn: RewardFn,
    rng: np.random.Generator,
    episode_weights: np.ndarray | None = None,
    *,
    gamma: float = 0.98,
    n_step: int = 1,
) -> Transitions:
    """Sample ``batch_size`` transitions from stored episodes, relabel goals, recompute rewards.

    Args:
        episodes: ``obs`` ``[N, T+1, o]``, ``ag`` ``[N, T+1, g]``, ``g`` ``[N, T, g]``, ``action`` ``[N, T, a]``.
        reward_fn: called once for the whole batch: ``reward_fn(next_ag [B, g], goal [B, g], {})`` for 1-step
            transitions; for ``n_step > 1`` on ``[B * (n_step + 1), g]`` rows (see :func:`n_step_rewards`).
        episode_weights: ``[N]`` non-negative sampling weights of the episodes (a step within an episode is
            uniform); ``None``: every transition equally likely.
        gamma: the agent's discount: each row's ``discount`` is ``gamma^m``, and n-step rewards are summed with it.
        n_step: transitions of up to ``n_step`` steps (:func:`n_step_rewards`); ``1``: one-step transitions.
            Randomness is drawn the same way for every ``n_step``: only ``reward``, ``next_obs`` and
            ``discount`` differ.
    """
    gamma = validation.real_in_range("gamma", gamma, 0.0, 1.0, high_open=True)
    n_step = validation.positive_int("n_step", n_step)
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
    powers = discount_powers(gamma, n_step)
    if n_step == 1:
        reward = np.asarray(reward_fn(ag.take(state + 1, axis=0), goal, {}), dtype=np.float32)
        steps = np.ones(len(state), np.int64)
    else:
        reward, steps = n_step_rewards(ag, state, horizon - t, goal, powers, reward_fn)
    return Transitions(
        obs=obs.take(state, axis=0),
        action=_rows(episodes["action"]).take(step, axis=0),
        reward=reward,
        next_obs=obs.take(state + steps, axis=0),
        goal=goal,
        discount=powers.take(steps).astype(np.float32),
    )


def discount_powers(gamma: float, n_step: int) -> np.ndarray:
    """``[n_step + 1]`` float64 ``gamma^k`` for ``k = 0 .. n_step``."""
    return np.array([gamma**k for k in range(n_step + 1)], dtype=np.float64)


def n_step_rewards(
    ag: np.ndarray,
    state: np.ndarray,
    steps_left: np.ndarray,
    goal: np.ndarray,
    powers: np.ndarray,
    reward_fn: RewardFn,
) -> tuple[np.ndarray, np.ndarray]:
    """The discounted reward sums and lengths of n-step transitions, with rewards recomputed for ``goal``.

    A transition from step ``t`` lasts ``m = min(n, T - t, j + 1)`` steps, where ``j`` is the first ``k`` at
    which ``goal`` is reached (``r_{t+k}`` is a success reward); its reward is ``sum_{k<m} gamma^k r_{t+k}``
    with ``r_{t+k} = reward_fn(ag[e, t+k+1], goal)``. It ends

    - at the episode's end (``T - t``): the last stored state bootstraps (a time limit, not a terminal state);
    - where the goal is first reached: the relabeled goal was not the goal the actions were chosen for, so the
      actions after it (usually moving on, away from a ``future`` goal) say little about how well one can stay
      there; bootstrapping from the success state lets the critic value that state with the greedy policy.
      (The episode does not end there: HER's tasks continue, and the target still bootstraps.) Before the
      goal is reached the n-step return has the usual off-policy bias of exploring actions (Rainbow's and mrl's
      n-step returns take it as well; keep ``n`` small).

    "Reached" is judged by the reward itself: ``r_{t+k} >= reward_fn(goal, goal)``, the reward of achieving
    the goal exactly. That is the success reward of a sparse reward whatever its values (``0`` of Fetch's
    ``-1/0``, ``1`` of PointMaze's ``0/1``), and of a dense reward (``-distance``, ``exp(-distance)``) only an
    exact hit (the step a ``future`` or ``final`` goal was taken from): otherwise dense rewards are summed over
    ``min(n, T - t)`` steps. It assumes, as goal envs do, that no reward exceeds that of achieving the goal.
    The reward of a non-finite goal with itself is a failure, so a transition toward a NaN goal lasts one step.

    Args:
        ag: ``[N * (T + 1), g]`` achieved goals, episode-major rows. state: ``[B]`` rows of the start states.
        steps_left: ``[B]`` ``T - t``, at least 1. goal: ``[B, g]`` the (relabeled) goals.
        powers: ``[n + 1]`` ``gamma^k`` (:func:`discount_powers`).
        reward_fn: called once, on ``[B * (n + 1), g]`` rows: the ``n`` steps of every transition (indices past
            the episode's end repeat its last state and are masked out), then each goal with itself.
    Returns:
        ``[B]`` float32 reward sums and ``[B]`` int64 lengths ``m``.
    """
    n, b = len(powers) - 1, len(state)
    k = np.arange(n)
    ahead = np.minimum(k[None, :] + 1, steps_left[:, None])  # [B, n]: steps to each next state, within the episode
    achieved = ag.take((state[:, None] + ahead).ravel(), axis=0)
    rewards = np.asarray(
        reward_fn(np.concatenate([achieved, goal]), np.concatenate([np.repeat(goal, n, axis=0), goal]), {}),
        dtype=np.float32,
    )
    reward, at_goal = rewards[: b * n].reshape(b, n).astype(np.float64), rewards[b * n :].astype(np.float64)
    reached = (reward >= at_goal[:, None]) & (k[None, :] < steps_left[:, None])
    first = np.where(reached.any(axis=1), reached.argmax(axis=1), n)
    steps = np.minimum(np.minimum(steps_left, n), first + 1)
    total = np.zeros(b, np.float64)
    for i in range(n):  # in order of k, as sum_k gamma^k r_k reads
        total += np.where(i < steps, powers[i] * reward[:, i], 0.0)
    return total.astype(np.float32), steps.astype(np.int64)


def _rows(x: np.ndarray) -> np.ndarray:
    """``[N, slots, dim] -> [N * slots, dim]`` (a view for the contiguous arrays of the buffer)."""
    return x.reshape(-1, x.shape[-1])
