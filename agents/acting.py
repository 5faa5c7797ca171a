"""Acting in NumPy: a snapshot of the normalizers and the actor's MLP that collection and evaluation run on.

Collection feeds the policy one row per env. At that size torch's per-op dispatch dominates: a normalized
forward pass costs ~230 µs, a fifth of a Fetch env step, while the same math in NumPy takes ~60 µs. Updates
stay in torch; the runner takes a fresh snapshot for every collection and evaluation (the weights only change
between them), and ``ActorCriticAgent.act`` takes one per call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from torch import nn


@dataclass(frozen=True)
class HostNormalizer:
    """``clip((x - mean) / std, -clip, clip)`` on ``[n, dim]`` float32 arrays (``RunningNormalizer.host``)."""

    mean: np.ndarray
    std: np.ndarray
    clip: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.clip((x - self.mean) / self.std, -self.clip, self.clip)


@dataclass(frozen=True)
class HostMLP:
    """A copy of an ``nn.Sequential`` of ``Linear`` and ``ReLU`` layers: ``layers`` holds ``(W^T [in, out],
    b [out])`` float32 pairs, with a ReLU after every layer but the last."""

    layers: tuple[tuple[np.ndarray, np.ndarray], ...]

    @classmethod
    def from_sequential(cls, net: nn.Sequential) -> HostMLP:
        """Copy ``net`` (any device) to host arrays; it must alternate ``Linear`` and ``ReLU``, ending in ``Linear``."""
        modules = list(net)
        linears = modules[0::2]
        if not all(isinstance(m, nn.Linear) for m in linears) or not all(isinstance(m, nn.ReLU) for m in modules[1::2]):
            raise TypeError(f"HostMLP copies Linear/ReLU stacks only, got {[type(m).__name__ for m in modules]}")
        if len(modules) % 2 == 0:
            raise TypeError("HostMLP needs a stack that ends in a Linear layer")
        return cls(
            tuple(
                (
                    np.ascontiguousarray(m.weight.detach().cpu().numpy().T, dtype=np.float32),
                    m.bias.detach().cpu().numpy().astype(np.float32),
                )
                for m in linears
            )
        )

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``[n, in] -> [n, out]`` float32."""
        last = len(self.layers) - 1
        for i, (w, b) in enumerate(self.layers):
            x = x @ w
            x += b
            if i < last:
                np.maximum(x, 0.0, out=x)
        return x


@dataclass(frozen=True)
class HostPolicy:
    """``policy(obs [n, o], goal [n, g], explore, rng) -> actions [n, a]`` float32 in env units.

    ``greedy(out)`` and ``explore(out, rng)`` map the MLP's ``[n, out]`` output to actions in ``[-1, 1]``
    (the agent's own head: tanh for DDPG/TD3, a squashed Gaussian for SAC).

    A call is a few dozen NumPy operations on one row per env, ~1 µs each, so the two normalizers are applied
    as one, in place, on the concatenated input.
    """

    obs_norm: HostNormalizer
    goal_norm: HostNormalizer
    net: HostMLP
    greedy: Callable[[np.ndarray], np.ndarray]
    explore: Callable[[np.ndarray, np.random.Generator], np.ndarray]
    action_max: float
    _mean: np.ndarray = field(init=False, repr=False)
    _std: np.ndarray = field(init=False, repr=False)
    _clip: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        norms = (self.obs_norm, self.goal_norm)
        object.__setattr__(self, "_mean", np.concatenate([n.mean for n in norms]).astype(np.float32))
        object.__setattr__(self, "_std", np.concatenate([n.std for n in norms]).astype(np.float32))
        clip = np.concatenate([np.full(len(n.mean), n.clip, np.float32) for n in norms])
        object.__setattr__(self, "_clip", clip)

    def inputs(self, obs: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """``[n, o], [n, g] -> [n, o + g]`` float32: the normalized, clipped network input (``agent.inputs``)."""
        x = np.concatenate((obs, goal), axis=-1, dtype=np.float32)  # a new array: normalized in place
        x -= self._mean
        x /= self._std
        np.minimum(x, self._clip, out=x)
        np.maximum(x, -self._clip, out=x)
        return x

    def __call__(
        self, obs: np.ndarray, goal: np.ndarray, explore: bool, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        out = self.net(self.inputs(obs, goal))
        if explore:
            if rng is None:
                raise ValueError("exploring needs an rng (numpy.random.Generator)")
            action = self.explore(out, rng)
        else:
            action = self.greedy(out)
        action = np.asarray(action, dtype=np.float32)
        if self.action_max != 1.0:
            action = action * np.float32(self.action_max)
        return action
