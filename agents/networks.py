"""MLP actor and critic for goal-conditioned agents; inputs are already normalized."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


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
        return torch.tanh(self.net(x))


class Critic(nn.Module):
    """``Q([o, g], a)`` with actions in ``[-1, 1]``."""

    def __init__(self, in_dim: int, action_dim: int, hidden: Sequence[int], layer_norm: bool = False) -> None:
        super().__init__()
        self.net = mlp(in_dim + action_dim, hidden, 1, layer_norm)

    def forward(self, x: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``[B, in_dim], [B, action_dim] -> [B]``."""
        return self.net(torch.cat([x, action], dim=-1)).squeeze(-1)
