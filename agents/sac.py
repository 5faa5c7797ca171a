"""SAC (Haarnoja et al. 2018, with the learned temperature of the applications paper) on the shared parts:
a tanh-squashed Gaussian actor, clipped double Q with the entropy bonus in the target, and ``alpha`` tuned
toward a target entropy."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from agents.acting import SquashedGaussianHead
from agents.base import ActorCriticAgent
from agents.networks import GaussianActor, Temperature, squashed_gaussian
from agents.optim import Adam
from her import validation


class SAC(ActorCriticAgent):
    """Soft actor-critic for goal-conditioned tasks. There is no target actor: targets sample the online one.

    Args:
        init_alpha: initial entropy coefficient ``alpha`` (0.1: 1.0 needs about twice the steps on FetchReach and
            PointReach, docs/agents.md).
        lr_alpha: Adam learning rate of ``log alpha``.
        target_entropy: the policy entropy ``alpha`` is tuned toward (``None``: ``-action_dim``).
        n_critics: critics in the ensemble (2: twin critics); both the TD target and the actor use their minimum.
        clip_target: off by default: the entropy bonus moves soft values out of ``[-1 / (1 - gamma), 0]``.
        action_l2: weight of the ``mean(tanh(mean)^2)`` penalty on the mean action; off by default.
        *args, **kwargs: the shared options of :class:`agents.base.ActorCriticAgent`.
    """

    def __init__(
        self,
        *args: Any,
        init_alpha: float = 0.1,
        lr_alpha: float = 1e-3,
        target_entropy: float | None = None,
        n_critics: int = 2,
        clip_target: bool = False,
        action_l2: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, n_critics=n_critics, clip_target=clip_target, action_l2=action_l2, **kwargs)
        if target_entropy is None:
            target_entropy = -float(self.action_dim)
        self.target_entropy = validation.real_in_range("target_entropy", target_entropy, -np.inf, np.inf)
        self.temperature = Temperature(validation.positive_real("init_alpha", init_alpha)).to(self.device)
        self.alpha_opt = Adam(self.temperature.parameters(), validation.positive_real("lr_alpha", lr_alpha))
        self.generator = self.make_generator()

    def build_actor(self, in_dim: int) -> nn.Module:
        return GaussianActor(in_dim, self.action_dim, self.hidden)

    # --- acting ---------------------------------------------------------------------------------
    def acting_head(self) -> SquashedGaussianHead:
        """The mean action ``tanh(mean)``; exploring, a policy sample ``tanh(mean + std * noise)``."""
        return SquashedGaussianHead(self.action_dim)

    # --- learning -------------------------------------------------------------------------------
    def sample(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[B, in_dim] ->`` a reparameterized ``action [B, a]``, its ``log_prob [B]``, and ``mean [B, a]``."""
        mean, log_std = self.actor(x)
        action, log_prob = squashed_gaussian(mean, log_std, self.standard_normal(mean.shape))
        return action, log_prob, mean

    def next_value(self, next_x: torch.Tensor) -> torch.Tensor:
        """``[B, in_dim] -> [B]``: the soft value ``min_i Q'_i(s', a') - alpha * log pi(a' | s')``, ``a' ~ pi``."""
        action, log_prob, _ = self.sample(next_x)
        return self.critic_target.min(next_x, action) - self.temperature() * log_prob

    def actor_update(self, x: torch.Tensor) -> dict[str, float]:
        """A policy step on ``alpha * log pi - min_i Q_i``, then a temperature step on
        ``-log_alpha * (log pi + target_entropy)``: ``alpha`` grows while the entropy is below its target."""
        action, log_prob, mean = self.sample(x)
        alpha = self.temperature().detach()
        actor_loss = (alpha * log_prob - self.critic.min(x, action)).mean() + self.action_penalty(torch.tanh(mean))
        self.step(self.actor_opt, actor_loss)
        alpha_loss = -(self.temperature.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
        self.step(self.alpha_opt, alpha_loss)
        return {"actor_loss": actor_loss.item(), "alpha": alpha.item(), "entropy": -log_prob.mean().item()}

    def stateful(self) -> dict[str, Any]:
        return {**super().stateful(), "temperature": self.temperature, "alpha_opt": self.alpha_opt}
