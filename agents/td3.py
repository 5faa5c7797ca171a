"""TD3 (Fujimoto et al. 2018) as DDPG plus its three changes: twin critics with a min target (``n_critics=2``;
the base takes the min), target policy smoothing, and delayed actor and target updates."""

from __future__ import annotations

from typing import Any

import torch

from agents.ddpg import DDPG
from her import validation


class TD3(DDPG):
    """DDPG with clipped double Q, target policy smoothing and delayed policy updates.

    Args:
        policy_delay: the actor steps on every ``policy_delay``-th update (the first included); the targets
            move in ``update_targets`` only if the actor has stepped since they last moved.
        target_policy_noise: std of the Gaussian noise added to the target action, in units of ``action_max``.
        target_noise_clip: that noise is clipped to ``[-target_noise_clip, target_noise_clip]``.
        n_critics: critics in the ensemble (2: twin critics).
        *args, **kwargs: the options of :class:`agents.ddpg.DDPG`.
    """

    def __init__(
        self,
        *args: Any,
        policy_delay: int = 2,
        target_policy_noise: float = 0.2,
        target_noise_clip: float = 0.5,
        n_critics: int = 2,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, n_critics=n_critics, **kwargs)
        self.policy_delay = validation.positive_int("policy_delay", policy_delay)
        self.target_policy_noise = validation.real_in_range(
            "target_policy_noise", target_policy_noise, 0.0, float("inf"), high_open=True
        )
        self.target_noise_clip = validation.real_in_range(
            "target_noise_clip", target_noise_clip, 0.0, float("inf"), high_open=True
        )
        self.generator = self.make_generator()
        self.last_actor_loss = float("nan")  # reported on updates that skip the actor
        self.actor_stepped = False  # since the targets last moved

    def target_action(self, next_x: torch.Tensor) -> torch.Tensor:
        """``[B, in_dim] -> [B, a]``: the target action plus clipped Gaussian noise, kept in ``[-1, 1]``."""
        action = self.actor_target(next_x)
        noise = self.target_policy_noise * self.standard_normal(action.shape)
        return (action + noise.clamp(-self.target_noise_clip, self.target_noise_clip)).clamp(-1.0, 1.0)

    def actor_update(self, x: torch.Tensor) -> dict[str, float]:
        """An actor step on every ``policy_delay``-th update; ``actor_loss`` is the latest one taken."""
        if self.n_updates % self.policy_delay == 0:
            self.last_actor_loss = super().actor_update(x)["actor_loss"]
            self.actor_stepped = True
        return {"actor_loss": self.last_actor_loss}

    def update_targets(self) -> None:
        """Polyak-average the targets, if the actor has stepped since they last moved."""
        if self.actor_stepped:
            super().update_targets()
            self.actor_stepped = False

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "last_actor_loss": self.last_actor_loss, "actor_stepped": self.actor_stepped}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.last_actor_loss = float(state["last_actor_loss"])
        self.actor_stepped = bool(state["actor_stepped"])
