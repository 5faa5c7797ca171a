"""Acting in NumPy: a snapshot of the normalizers and the actor's MLP that collection and evaluation run on.

Collection feeds the policy one row per env. At that size torch's per-op dispatch dominates: a normalized
forward pass costs ~230 µs, a fifth of a Fetch env step, while the same math in NumPy takes ~60 µs. Updates
stay in torch; the runner takes a fresh snapshot for every collection and evaluation (the weights only change
between them), and ``GoalAgent.act`` takes one per call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from torch import nn

from agents.networks import LOG_STD_MAX, LOG_STD_MIN


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


class ActingHead(Protocol):
    """How an agent turns its acting MLP's ``[n, out]`` output into actions (in ``[-1, 1]``, or DQN's indices):
    ``greedy`` for evaluation, ``explore`` (randomness from ``rng``) for collection. Heads are small frozen
    dataclasses, so a ``HostPolicy`` pickles to another process (``training.collect.EpisodeWorker``) with its arrays
    alone."""

    def greedy(self, out: np.ndarray) -> np.ndarray: ...
    def explore(self, out: np.ndarray, rng: np.random.Generator) -> np.ndarray: ...


@dataclass(frozen=True)
class TanhNoiseHead:
    """DDPG's and TD3's actions: ``tanh(out)``; exploring, that plus Gaussian noise of std ``noise_eps`` (clipped
    to ``[-1, 1]``), and with probability ``random_eps`` a uniform random action instead."""

    noise_eps: float
    random_eps: float

    def greedy(self, out: np.ndarray) -> np.ndarray:
        """``[n, a] -> [n, a]``."""
        return np.tanh(out)

    def explore(self, out: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``[n, a] -> [n, a]``."""
        action = np.tanh(out)
        action += self.noise_eps * rng.standard_normal(action.shape)
        np.clip(action, -1.0, 1.0, out=action)
        random_rows = rng.random(len(action)) < self.random_eps
        if random_rows.any():  # (a draw of zero rows takes nothing from rng either)
            action[random_rows] = rng.uniform(-1.0, 1.0, (int(random_rows.sum()), action.shape[1]))
        return action


@dataclass(frozen=True)
class SquashedGaussianHead:
    """SAC's actions from ``out = [mean, log_std]`` (``[n, 2a]``, as ``networks.GaussianActor``): ``tanh(mean)``;
    exploring, a policy sample ``tanh(mean + std * noise)``."""

    action_dim: int

    def greedy(self, out: np.ndarray) -> np.ndarray:
        """``[n, 2a] -> [n, a]``."""
        return np.tanh(out[:, : self.action_dim])

    def explore(self, out: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``[n, 2a] -> [n, a]``, noise from ``rng``."""
        mean, log_std = out[:, : self.action_dim], np.clip(out[:, self.action_dim :], LOG_STD_MIN, LOG_STD_MAX)
        return np.tanh(mean + np.exp(log_std) * rng.standard_normal(mean.shape))


@dataclass(frozen=True)
class EpsilonGreedyHead:
    """DQN's actions from ``out``, the ``[n, n_actions]`` action values: the index of the largest (the first of
    equal ones) as a ``[n, 1]`` float; exploring, with probability ``random_eps`` a uniformly random index instead."""

    n_actions: int
    random_eps: float

    def greedy(self, out: np.ndarray) -> np.ndarray:
        """``[n, n_actions] -> [n, 1]``."""
        return out.argmax(axis=-1)[:, None].astype(np.float32)

    def explore(self, out: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``[n, n_actions] -> [n, 1]``, the random rows drawn from ``rng``."""
        action = self.greedy(out)
        random_rows = rng.random(len(action)) < self.random_eps
        if random_rows.any():  # (a draw of zero rows takes nothing from rng either)
            action[random_rows, 0] = rng.integers(0, self.n_actions, int(random_rows.sum()))
        return action


@dataclass(frozen=True)
class HostPolicy:
    """``policy(obs [n, o], goal [n, g], explore, rng) -> actions [n, a]`` float32 in env units.

    ``head`` maps the MLP's ``[n, out]`` output to the agent's actions (its own: tanh for DDPG/TD3, a squashed
    Gaussian for SAC, both in ``[-1, 1]``; DQN's epsilon-greedy argmax, an index as a float, ``[n, 1]``), which
    ``scale`` multiplies into env units (a Box agent's ``action_max``, 1 for DQN).

    A call is a few dozen NumPy operations on one row per env, ~1 µs each, so the two normalizers are applied
    as one, in place, on the concatenated input.
    """

    obs_norm: HostNormalizer
    goal_norm: HostNormalizer
    net: HostMLP
    head: ActingHead
    scale: float
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
            action = self.head.explore(out, rng)
        else:
            action = self.head.greedy(out)
        action = np.asarray(action, dtype=np.float32)
        if self.scale != 1.0:
            action = action * np.float32(self.scale)
        return action
