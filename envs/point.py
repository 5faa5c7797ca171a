"""A pure-NumPy goal-conditioned point mass: fast tests and a MuJoCo-free demo."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from her.goals import success_reward


class PointReachEnv(gym.Env):
    """A point in the plane moves by ``step_size * action`` per step toward a goal in ``[-1, 1]^2``.

    Observation dict: ``observation`` = position ``[2]``, ``achieved_goal`` = position ``[2]``,
    ``desired_goal`` ``[2]``. Reward ``0`` within ``distance_threshold`` of the goal, else ``-1``
    (the Fetch convention); ``info["is_success"]`` is 1.0 then. Episodes never terminate early: the
    ``TimeLimit`` of the registration (50 steps) truncates them. ``render_mode="rgb_array"`` draws a
    top view (``render_size`` pixels square).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 25}

    def __init__(
        self,
        distance_threshold: float = 0.1,
        step_size: float = 0.2,
        render_mode: str | None = None,
        render_size: int = 128,
    ) -> None:
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode={render_mode!r} is invalid: expected None or 'rgb_array'")
        self.distance_threshold = distance_threshold
        self.step_size = step_size
        self.render_mode = render_mode
        self.render_size = render_size
        box = spaces.Box(-1.5, 1.5, (2,), np.float32)
        self.observation_space = spaces.Dict({"observation": box, "achieved_goal": box, "desired_goal": box})
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self._pos = np.zeros(2, np.float32)
        self._goal = np.zeros(2, np.float32)

    def compute_reward(self, achieved_goal: np.ndarray, desired_goal: np.ndarray, info: Any) -> np.ndarray:
        """Batched sparse reward: ``[..., 2], [..., 2] -> [...]`` of ``-1.0`` / ``0.0``; a NaN or inf distance
        (a diverged policy's position) is a failure."""
        d = np.linalg.norm(np.asarray(achieved_goal) - np.asarray(desired_goal), axis=-1)
        return success_reward(d <= self.distance_threshold)

    def _obs(self) -> dict[str, np.ndarray]:
        return {"observation": self._pos.copy(), "achieved_goal": self._pos.copy(), "desired_goal": self._goal.copy()}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._pos = self.np_random.uniform(-1.0, 1.0, 2).astype(np.float32)
        self._goal = self.np_random.uniform(-1.0, 1.0, 2).astype(np.float32)
        return self._obs(), {}

    def step(self, action: np.ndarray):
        a = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
        self._pos = np.clip(self._pos + self.step_size * a, -1.5, 1.5).astype(np.float32)
        reward = float(self.compute_reward(self._pos, self._goal, None))
        return self._obs(), reward, False, False, {"is_success": float(reward == 0.0)}

    def render(self) -> np.ndarray | None:
        """``[size, size, 3]`` uint8 top view of ``[-1.5, 1.5]^2``: the goal region (green, radius
        ``distance_threshold``) and the point (blue); ``None`` unless ``render_mode="rgb_array"``."""
        if self.render_mode != "rgb_array":
            return None
        centers = (np.arange(self.render_size) + 0.5) / self.render_size * 3.0 - 1.5
        x, y = np.meshgrid(centers, -centers)  # image rows go down, y goes up
        image = np.full((self.render_size, self.render_size, 3), 255, np.uint8)
        for center, radius, color in (
            (self._goal, self.distance_threshold, (40, 160, 40)),
            (self._pos, 0.05, (30, 60, 200)),
        ):
            image[(x - center[0]) ** 2 + (y - center[1]) ** 2 <= radius**2] = color
        return image
