"""DDPG for goal-conditioned tasks with the choices that make HER work on Fetch (Plappert et al. 2018)."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from agents.acting import TanhNoiseHead
from agents.base import ActorCriticAgent, polyak_update
from agents.networks import Actor
from her import validation


class DDPG(ActorCriticAgent):
    """Deterministic actor ``pi(s)`` trained to maximize the first critic, with a target actor for TD targets.

    Args:
        random_eps: probability of a uniformly random action while exploring.
        noise_eps: std of Gaussian action noise while exploring, as a fraction of ``action_max``.
        *args, **kwargs: the shared options of :class:`agents.base.ActorCriticAgent` (``n_critics`` default 1).
    """

    def __init__(self, *args: Any, random_eps: float = 0.3, noise_eps: float = 0.2, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.random_eps = validation.real_in_range("random_eps", random_eps, 0.0, 1.0)
        self.noise_eps = validation.real_in_range("noise_eps", noise_eps, 0.0, float("inf"), high_open=True)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)

    def build_actor(self, in_dim: int) -> nn.Module:
        return Actor(in_dim, self.action_dim, self.hidden)

    # --- acting ---------------------------------------------------------------------------------
    def acting_head(self) -> TanhNoiseHead:
        """``pi(s) = tanh(out)`` (as ``networks.Actor``); exploring, plus Gaussian noise of std ``noise_eps``, and
        with probability ``random_eps`` a uniform random action instead."""
        return TanhNoiseHead(self.noise_eps, self.random_eps)

    # --- learning -------------------------------------------------------------------------------
    def target_action(self, next_x: torch.Tensor) -> torch.Tensor:
        """``[B, in_dim] -> [B, a]``: the target actor's action in the next states."""
        return self.actor_target(next_x)

    def next_value(self, next_x: torch.Tensor) -> torch.Tensor:
        """``[B, in_dim] -> [B]``: ``min_i Q'_i(s', target_action(s'))``."""
        return self.critic_target.min(next_x, self.target_action(next_x))

    def actor_loss(self, x: torch.Tensor) -> torch.Tensor:
        """``-Q_1(s, pi(s))`` plus the action L2 penalty."""
        pi = self.actor(x)
        return -self.critic.first(x, pi).mean() + self.action_penalty(pi)

    def actor_update(self, x: torch.Tensor) -> dict[str, float]:
        actor_loss = self.actor_loss(x)
        self.step(self.actor_opt, actor_loss)
        return {"actor_loss": actor_loss.item()}

    def update_targets(self) -> None:
        polyak_update(self.actor_target, self.actor, self.polyak)
        super().update_targets()

    def stateful(self) -> dict[str, Any]:
        return {**super().stateful(), "actor_target": self.actor_target}
