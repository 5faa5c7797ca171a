"""Bit flipping, the first experiment of the HER paper (Andrychowicz et al. 2017, Sec. 3.1): a pure-NumPy goal env
with a discrete action space, in which only hindsight makes the sparse reward learnable beyond a dozen bits."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.wrappers import TimeLimit

from her import validation
from her.goals import success_reward


class BitFlippingEnv(gym.Env):
    """``n_bits`` bits and a goal bit string; action ``i`` flips bit ``i``.

    Observation dict: ``observation`` = the bits ``[n]``, ``achieved_goal`` = the bits ``[n]``, ``desired_goal``
    ``[n]``, each float32 0/1; start state and goal are drawn uniformly and independently at ``reset``. Reward
    ``0`` where the bits equal the goal, else ``-1`` (``compute_reward``). The action space is
    ``Discrete(n_bits)``; ``step`` also takes the index as a one-element array (as the runner stores it).

    There is no action that keeps the state, so a policy at its goal must flip a bit away: an episode succeeds
    when it reaches its goal at some step, and ``info["is_success"]`` is 1.0 from that step to the end of the
    episode (SB3's ``BitFlippingEnv`` ends the episode there; episodes here have a fixed length). The rewards
    stay those of each step's state. The episode length, ``n_bits`` steps as in the paper, is the ``TimeLimit``
    that ``make_bit_flipping`` (the registered entry point) adds. ``render_mode="rgb_array"`` draws the bits over
    the goal, ``render_cell`` pixels a bit.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, n_bits: int = 30, render_mode: str | None = None, render_cell: int = 16) -> None:
        self.n_bits = validation.positive_int("n_bits", n_bits)
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode={render_mode!r} is invalid: expected None or 'rgb_array'")
        self.render_mode = render_mode
        self.render_cell = validation.positive_int("render_cell", render_cell)
        bits = spaces.Box(0.0, 1.0, (self.n_bits,), np.float32)
        self.observation_space = spaces.Dict({"observation": bits, "achieved_goal": bits, "desired_goal": bits})
        self.action_space = spaces.Discrete(self.n_bits)
        self._bits = np.zeros(self.n_bits, np.float32)
        self._goal = np.zeros(self.n_bits, np.float32)
        self._reached = False

    def compute_reward(self, achieved_goal: np.ndarray, desired_goal: np.ndarray, info: Any) -> np.ndarray:
        """Batched sparse reward: ``[..., n], [..., n] -> [...]`` of ``0.0`` where every bit matches, else ``-1.0``;
        a NaN or inf bit fails (bits match when they differ by less than 0.5)."""
        differ = np.abs(np.asarray(achieved_goal) - np.asarray(desired_goal))
        return success_reward(np.all(differ < 0.5, axis=-1))

    def _obs(self) -> dict[str, np.ndarray]:
        return {"observation": self._bits.copy(), "achieved_goal": self._bits.copy(), "desired_goal": self._goal.copy()}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        self._bits = self.np_random.integers(0, 2, self.n_bits).astype(np.float32)
        self._goal = self.np_random.integers(0, 2, self.n_bits).astype(np.float32)
        self._reached = bool(np.array_equal(self._bits, self._goal))
        return self._obs(), {}

    def step(self, action: int | np.integer | np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        i = self._index(action)
        self._bits[i] = 1.0 - self._bits[i]
        reward = float(self.compute_reward(self._bits, self._goal, None))
        self._reached = self._reached or reward == 0.0
        return self._obs(), reward, False, False, {"is_success": float(self._reached)}

    def render(self) -> np.ndarray | None:
        """``[2 * cell + 4, n_bits * cell, 3]`` uint8: the bits (top row) over the goal (bottom row), ones dark and
        zeros light, the bits that equal the goal's green; ``None`` unless ``render_mode="rgb_array"``."""
        if self.render_mode != "rgb_array":
            return None
        one, zero = np.array([40, 40, 40]), np.array([225, 225, 225])
        matched_one, matched_zero = np.array([30, 130, 30]), np.array([150, 215, 150])
        on, matched = (self._bits > 0.5)[:, None], (self._bits == self._goal)[:, None]
        bits = np.where(on, np.where(matched, matched_one, one), np.where(matched, matched_zero, zero))  # [n, 3]
        goal = np.where((self._goal > 0.5)[:, None], one, zero)
        cell = self.render_cell
        rows = [np.repeat(np.repeat(row[None], cell, axis=0), cell, axis=1) for row in (bits, goal)]  # [cell, n cell]
        for row in rows:
            row[:, cell - 1 :: cell] = 255  # a white line after each bit
        gap = np.full((4, self.n_bits * cell, 3), 255)
        return np.concatenate([rows[0], gap, rows[1]]).astype(np.uint8)

    def _index(self, action: int | np.integer | np.ndarray) -> int:
        """The bit to flip: an integer in ``[0, n_bits)``, or one as a one-element array (a float index too)."""
        a = np.asarray(action)
        if a.size != 1 or a.dtype.kind not in "iuf" or a.flat[0] != np.round(a.flat[0]):
            raise ValueError(f"action {action!r} is invalid: expected an integer in [0, {self.n_bits})")
        i = int(a.flat[0])
        if not 0 <= i < self.n_bits:
            raise ValueError(f"action {action!r} is invalid: expected an integer in [0, {self.n_bits})")
        return i


def make_bit_flipping(n_bits: int = 30, render_mode: str | None = None, render_cell: int = 16) -> gym.Env:
    """``BitFlippingEnv(n_bits, ...)`` whose episodes last ``n_bits`` steps (a ``TimeLimit``, so that
    ``env.spec.max_episode_steps`` is ``n_bits``); ``gym.make``'s own ``max_episode_steps`` wraps it again."""
    env = BitFlippingEnv(n_bits, render_mode, render_cell)
    return TimeLimit(env, env.n_bits)
