"""The transition-level buffer API, built on the episode storage and relabeling parts.

Each ``store_transition`` stores two one-step episodes: the transition as given, and its hindsight copy
whose goal is the achieved state (``next_state``) and whose reward comes from ``reward_fn``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from her import validation
from her.buffer import EpisodeBuffer
from her.goals import RewardFn, sparse_reward
from her.relabel import GoalStrategy, relabel_goals, resolve_strategy

TensorGoalFn = Callable[[torch.Tensor], torch.Tensor]


class HindsightExperienceReplay:
    """Transition replay with hindsight copies.

    Args:
        state_dim, action_dim: sizes of ``state`` and ``action``; goals have ``state_dim`` entries.
        buffer_size: transitions held (each ``store_transition`` adds two); the oldest are overwritten. An even
            number (a pair is never split when the oldest are overwritten), refused before anything is
            allocated when its arrays would not fit in the memory available.
        batch_size: transitions per ``sample()``.
        goal_sampling_strategy: applied to sampled goals. Either a callable on the ``[B, state_dim]`` goal
            tensor returning a ``torch.Tensor`` of the same shape (one goal per row, for any ``B``), or a
            strategy name (``future``, ``final``, ``episode``, ``random``, ``actual``) that relabels each goal
            with probability ``relabel_p`` (with one-step episodes, ``future`` and ``final`` both pick
            ``next_state``). ``None``: goals as stored. When goals change, their rewards are recomputed with
            ``reward_fn``. A callable's result of another type, shape or layout is an error naming it; when
            ``batch_size == state_dim``, where a transposed result has the right shape, the first ``sample()``
            also calls it once on ``batch_size + 1`` goals to check that it returns rows.
        reward_fn: ``reward_fn(achieved [B, g], goal [B, g], info) -> [B]``; default Fetch's sparse
            ``-1/0`` reward with threshold 0.05.
        relabel_p: relabel probability for named strategies.
        seed: seed of the sampling generator.
        device: where sampled tensors are put.
    """

    def __init__(
        self,
        state_dim: int,
        action_dim: int,
        buffer_size: int,
        batch_size: int,
        goal_sampling_strategy: TensorGoalFn | str | GoalStrategy | None = None,
        *,
        reward_fn: RewardFn | None = None,
        relabel_p: float = 0.8,
        seed: int | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.state_dim = validation.positive_int("state_dim", state_dim)
        self.action_dim = validation.positive_int("action_dim", action_dim)
        self.buffer_size = validation.positive_int("buffer_size", buffer_size)
        if self.buffer_size % 2:  # the oldest pair would be overwritten one half at a time
            raise validation.OptionError(
                "buffer_size", buffer_size, "an even integer >= 2: each store_transition adds a pair of transitions"
            )
        self.batch_size = validation.positive_int("batch_size", batch_size)
        if self.batch_size > self.buffer_size:
            raise validation.OptionError(
                "batch_size", batch_size, f"at most buffer_size={buffer_size}: sample() needs batch_size transitions"
            )
        self.relabel_p = validation.real_in_range("relabel_p", relabel_p, 0.0, 1.0)
        self._named_strategy = None
        self._tensor_strategy: TensorGoalFn | None = None
        if isinstance(goal_sampling_strategy, str):
            self._named_strategy = resolve_strategy(goal_sampling_strategy, "goal_sampling_strategy")
        elif goal_sampling_strategy is not None:
            if not callable(goal_sampling_strategy):
                raise validation.OptionError(
                    "goal_sampling_strategy", goal_sampling_strategy, "None, a strategy name or a callable"
                )
            self._tensor_strategy = goal_sampling_strategy
        self._check_rows = self.batch_size == self.state_dim  # (see goal_sampling_strategy)
        self.reward_fn = reward_fn if reward_fn is not None else sparse_reward(0.05)
        self.device = torch.device(device)
        self.rng = np.random.default_rng(seed)
        s, a = self.state_dim, self.action_dim
        # One-step episodes: obs/ag hold (state, next_state); the achieved goal of a state is the state.
        fields = {"obs": (2, s), "g": (1, s), "action": (1, a), "reward": (1, 1), "done": (1, 1)}
        validation.fits_in_memory("buffer_size", buffer_size, EpisodeBuffer.nbytes(self.buffer_size, fields))
        self.storage = EpisodeBuffer(self.buffer_size, fields)

    def __len__(self) -> int:
        return self.storage.n_episodes

    def store_transition(
        self,
        state: np.ndarray,
        action: np.ndarray,
        reward: float,
        next_state: np.ndarray,
        done: bool,
        goal: np.ndarray,
    ) -> None:
        """Store the transition and its hindsight copy (goal = ``next_state``). Validated before writing: arrays
        (NumPy, lists or torch tensors) of the right shape and finite numbers, ``reward`` a finite number and
        ``done`` a bool (or 0/1); anything else raises ``ValueError`` naming the argument and stores nothing."""
        s = validation.finite_array("state", _host(state), (self.state_dim,))
        a = validation.finite_array("action", _host(action), (self.action_dim,))
        r = np.float32(validation.finite_real("reward", _scalar(reward)))
        s2 = validation.finite_array("next_state", _host(next_state), (self.state_dim,))
        d = np.float32(validation.flag("done", _scalar(done)))
        g = validation.finite_array("goal", _host(goal), (self.state_dim,))
        hindsight_reward = np.asarray(self.reward_fn(s2[None], s2[None], {}), dtype=np.float32).reshape(())
        self.storage.store(
            {
                "obs": np.stack([np.stack([s, s2])] * 2),
                "g": np.stack([g, s2])[:, None],
                "action": np.stack([a, a])[:, None],
                "reward": np.stack([r, hindsight_reward]).reshape(2, 1, 1),
                "done": np.stack([d, d]).reshape(2, 1, 1),
            }
        )

    def sample(self) -> tuple[torch.Tensor, ...] | None:
        """``(states, actions, rewards, next_states, dones, goals)``: ``[B, s]``, ``[B, a]``, ``[B]``,
        ``[B, s]``, ``[B]``, ``[B, s]`` float32 tensors; ``None`` while fewer than ``batch_size`` are held."""
        n = len(self)
        if n < self.batch_size:
            return None
        data = self.storage.stored()
        ep = self.rng.integers(0, n, self.batch_size)
        t = np.zeros(self.batch_size, dtype=np.int64)
        states, next_states = data["obs"][ep, 0], data["obs"][ep, 1]
        goals = data["g"][ep, 0]
        rewards = data["reward"][ep, 0, 0]
        changed = np.zeros(self.batch_size, dtype=bool)
        if self._named_strategy is not None:
            # The achieved goal of a state is the state itself; one-step episodes hold (state, next_state).
            episodes = {"ag": data["obs"], "g": data["g"]}
            changed = relabel_goals(episodes, goals, ep, t, self._named_strategy, self.relabel_p, self.rng)
        goals_t = torch.as_tensor(goals, device=self.device)
        if self._tensor_strategy is not None:
            goals_t = self._strategy_goals(goals_t)
            goals = goals_t.detach().cpu().numpy()
            changed[:] = True
        if changed.any():
            rewards = rewards.copy()
            rewards[changed] = self.reward_fn(next_states[changed], goals[changed], {})

        def tensor(x: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(x, dtype=torch.float32, device=self.device)

        return (
            tensor(states),
            tensor(data["action"][ep, 0]),
            tensor(rewards),
            tensor(next_states),
            tensor(data["done"][ep, 0, 0]),
            goals_t.to(torch.float32),
        )

    def _strategy_goals(self, goals: torch.Tensor) -> torch.Tensor:
        """The callable strategy's goals for the ``[B, state_dim]`` ``goals``, checked: a ``[B, state_dim]``
        tensor of finite real numbers (the rows of a transposed result are caught by a second call on
        ``B + 1`` goals, once, when ``B == state_dim``)."""
        strategy = self._tensor_strategy
        assert strategy is not None
        if self._check_rows:
            self._check_strategy_result(strategy(torch.cat([goals, goals[:1]])), len(goals) + 1)
            self._check_rows = False
        return self._check_strategy_result(strategy(goals), len(goals))

    def _check_strategy_result(self, result: object, n: int) -> torch.Tensor:
        """``result`` of the strategy on ``n`` goals, or an error naming the strategy and what it returned."""
        name = f"goal_sampling_strategy {_qualified_name(self._tensor_strategy)}"
        expected = (n, self.state_dim)
        if not isinstance(result, torch.Tensor):
            shape = f" of shape {tuple(np.shape(result))}" if isinstance(result, np.ndarray | list | tuple) else ""
            raise TypeError(
                f"{name} returned {type(result).__module__}.{type(result).__qualname__}{shape} on a {expected} goal "
                f"tensor: expected a torch.Tensor of shape {expected}"
            )
        if tuple(result.shape) != expected:
            shape = tuple(result.shape)
            hint = " (transposed?)" if shape == expected[::-1] else ""
            raise ValueError(f"{name} returned shape {shape}{hint} for {n} goals, expected {expected}: a goal per row")
        if result.dtype == torch.bool or result.is_complex():
            raise TypeError(f"{name} returned a {result.dtype} tensor: expected real numbers")
        finite = torch.isfinite(result).all(dim=1).cpu().numpy()
        if not finite.all():
            rows = np.flatnonzero(~finite)
            raise ValueError(
                f"{name} returned NaN or inf goals (rows {rows[:8].tolist()} of the batch): expected finite goals"
            )
        return result


def _qualified_name(fn: object) -> str:
    """``module.qualname`` of a function (or of a callable object's class)."""
    named = fn if hasattr(fn, "__qualname__") else type(fn)
    return f"{getattr(named, '__module__', '?')}.{named.__qualname__}"


def _host(x: object) -> object:
    """A torch tensor (on any device, with or without grad) as a NumPy array; anything else as it is."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x


def _scalar(x: object) -> object:
    """A 0-d tensor or array as its Python number; anything else as it is."""
    if isinstance(x, torch.Tensor) and x.dim() == 0:
        return x.item()
    if isinstance(x, np.ndarray) and x.shape == ():
        return x.item()
    return x
