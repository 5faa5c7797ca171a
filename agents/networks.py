"""MLP actors and critics for goal-conditioned agents, and DQN's Q-network; inputs are already normalized,
continuous actions lie in ``[-1, 1]``.

Outputs are float32 also where the layers ran in bfloat16 under ``torch.autocast`` (``precision=bf16``), so
what is computed from them (tanh, log-probs, TD targets, losses) keeps float32 accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

# Bounds of the Gaussian actor's log std (Haarnoja et al. 2018's code; SB3): a floor keeps log-probs finite,
# a ceiling keeps the pre-tanh distribution from spreading far past the tanh's saturation.
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, layer_norm: bool = False) -> nn.Sequential:
    """``in_dim -> hidden... -> out_dim`` with ReLU between layers (optionally LayerNorm before each ReLU)."""
    layers: list[nn.Module] = []
    dims = [in_dim, *hidden]
    for a, b in zip(dims[:-1], dims[1:]):
        layers.append(nn.Linear(a, b))
        if layer_norm:
            layers.append(nn.LayerNorm(b))
        layers.append(nn.ReLU())
    layers.append(nn.Linear(dims[-1], out_dim))
    return nn.Sequential(*layers)


class Actor(nn.Module):
    """Deterministic policy ``tanh(mlp([o, g]))`` in ``[-1, 1]^a`` (scaled to the action bounds by the agent)."""

    def __init__(self, in_dim: int, action_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.net = mlp(in_dim, hidden, action_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, in_dim] -> [B, action_dim]``."""
        return torch.tanh(self.net(x).float())

    def deterministic(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, in_dim] -> [B, action_dim]``: the action without exploration, ``pi(s)`` itself."""
        return self.forward(x)


class GaussianActor(nn.Module):
    """Stochastic policy: a diagonal Gaussian over pre-tanh actions, ``mean, log_std = mlp([o, g])``.

    Sample with :func:`squashed_gaussian`; the deterministic action is ``tanh(mean)``.
    """

    def __init__(self, in_dim: int, action_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.net = mlp(in_dim, hidden, 2 * action_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, in_dim] -> mean [B, action_dim], log_std [B, action_dim]`` (log std clamped)."""
        mean, log_std = self.net(x).float().chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def deterministic(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, in_dim] -> [B, action_dim]``: the action without exploration, the squashed mean ``tanh(mean)``."""
        mean, _ = self.forward(x)
        return torch.tanh(mean)


def squashed_gaussian(
    mean: torch.Tensor, log_std: torch.Tensor, noise: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reparameterized sample ``a = tanh(mean + std * noise)`` and its log density.

    ``log pi(a) = log N(u; mean, std) - sum_i log(1 - tanh(u_i)^2)`` with ``u`` the pre-tanh sample; the
    correction is computed as ``2 (log 2 - u - softplus(-2u))``, which stays finite where ``tanh`` saturates.

    Args:
        mean, log_std, noise: ``[B, a]``; ``noise`` is standard normal.
    Returns:
        ``action [B, a]`` in ``(-1, 1)`` and ``log_prob [B]``.
    """
    u = mean + log_std.exp() * noise
    gaussian = (-0.5 * noise.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
    correction = (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)
    return torch.tanh(u), gaussian - correction


class Critic(nn.Module):
    """``Q([o, g], a)`` with actions in ``[-1, 1]``."""

    def __init__(self, in_dim: int, action_dim: int, hidden: Sequence[int], layer_norm: bool = False) -> None:
        super().__init__()
        self.net = mlp(in_dim + action_dim, hidden, 1, layer_norm)

    def forward(self, x: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``[B, in_dim], [B, action_dim] -> [B]``."""
        return self.net(torch.cat([x, action], dim=-1)).float().squeeze(-1)


class CriticEnsemble(nn.Module):
    """``n`` independently initialized critics evaluated on the same inputs (one for DDPG, two for TD3/SAC)."""

    def __init__(
        self, in_dim: int, action_dim: int, hidden: Sequence[int], n: int = 1, layer_norm: bool = False
    ) -> None:
        super().__init__()
        self.critics = nn.ModuleList(Critic(in_dim, action_dim, hidden, layer_norm) for _ in range(n))

    def forward(self, x: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``[B, in_dim], [B, action_dim] -> [n, B]``."""
        return torch.stack([critic(x, action) for critic in self.critics])

    def first(self, x: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``[B, in_dim], [B, action_dim] -> [B]``: the first critic alone (what TD3's actor follows)."""
        return self.critics[0](x, action)

    def min(self, x: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``[B, in_dim], [B, action_dim] -> [B]``: the smallest estimate (clipped double Q)."""
        return self(x, action).min(dim=0).values


class QNetwork(nn.Module):
    """``Q([o, g], .)``: one value per discrete action, ``mlp([o, g]) -> [n_actions]`` (DQN)."""

    def __init__(self, in_dim: int, n_actions: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.net = mlp(in_dim, hidden, n_actions)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, in_dim] -> [B, n_actions]``."""
        return self.net(x).float()


class Temperature(nn.Module):
    """SAC's entropy coefficient ``alpha = exp(log_alpha)``, learned through ``log_alpha`` (kept positive)."""

    def __init__(self, init_alpha: float = 1.0) -> None:
        super().__init__()
        self.log_alpha = nn.Parameter(torch.tensor(math.log(init_alpha)))

    def forward(self) -> torch.Tensor:
        """The scalar ``alpha``."""
        return self.log_alpha.exp()
