"""Small agents for unit tests, and a way to pin their critics' outputs."""

from __future__ import annotations

import torch

from agents import ActorCriticAgent
from helpers.fixed_batch import OBS, A, G


def make(cls: type[ActorCriticAgent], seed: int = 0, **kw) -> ActorCriticAgent:
    """``cls`` on the fixed batch's sizes with 32x32 networks (``kw`` overrides), initialized from ``seed``."""
    torch.manual_seed(seed)
    return cls(OBS, G, A, 2.0, **{"hidden": (32, 32), **kw})


def set_critic_outputs(critics: torch.nn.Module, values: list[float]) -> None:
    """Make critic ``i`` output the constant ``values[i]``: zero its last layer's weights, set its bias."""
    with torch.no_grad():
        for critic, value in zip(critics.critics, values):
            critic.net[-1].weight.zero_()
            critic.net[-1].bias.fill_(value)
