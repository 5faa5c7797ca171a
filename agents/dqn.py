"""Double DQN (van Hasselt et al. 2016) for goal-conditioned tasks with a discrete action space: the agent of the
HER paper's bit-flipping experiment (Andrychowicz et al. 2017), on the parts every agent here shares."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from agents.acting import EpsilonGreedyHead
from agents.base import GoalAgent, polyak_update
from agents.networks import QNetwork
from agents.optim import Adam
from her import validation
from her.relabel import Transitions


class DQN(GoalAgent):
    """``Q(s, g) -> [n_actions]`` trained on the TD error to ``r + discount * Q'(s', argmax_a Q(s', a))``: the online
    network picks the next action and the target network, moved by polyak averaging in ``update_targets``, values
    it. Acting is greedy in ``Q``; exploring takes a uniformly random action with probability ``random_eps``.

    Actions are indices ``0..n_actions-1``; batches hold them as ``[B, 1]`` floats (how the replay buffer stores a
    ``Discrete`` env's actions), and acting returns them so.

    Args:
        obs_dim, goal_dim: input sizes. n_actions: the size of the ``Discrete`` action space.
        hidden: hidden layer sizes of the Q-network (the HER paper's bit flipping: one layer of 256).
        lr: Adam learning rate.
        random_eps: probability of a uniformly random action while exploring (epsilon-greedy).
        gamma, polyak, clip_target, norm_eps, norm_clip, precision, device: as :class:`agents.base.GoalAgent`.
    """

    discrete_actions = True

    def __init__(
        self,
        obs_dim: int,
        goal_dim: int,
        n_actions: int,
        *,
        hidden: Sequence[int] = (256,),
        lr: float = 1e-3,
        gamma: float = 0.98,
        polyak: float = 0.95,
        clip_target: bool = True,
        random_eps: float = 0.2,
        norm_eps: float = 0.01,
        norm_clip: float = 5.0,
        precision: str = "auto",
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__(
            obs_dim,
            goal_dim,
            hidden=hidden,
            gamma=gamma,
            polyak=polyak,
            clip_target=clip_target,
            norm_eps=norm_eps,
            norm_clip=norm_clip,
            precision=precision,
            device=device,
        )
        self.n_actions = validation.positive_int("n_actions", n_actions)
        self.random_eps = validation.real_in_range("random_eps", random_eps, 0.0, 1.0)
        self.q = QNetwork(obs_dim + goal_dim, self.n_actions, self.hidden).to(self.device)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.q_opt = Adam(self.q.parameters(), validation.positive_real("lr", lr))

    @classmethod
    def env_sizes(cls, env: Mapping[str, Any]) -> tuple[int | float, ...]:
        """``(obs_dim, goal_dim, n_actions)``."""
        return env["obs_dim"], env["goal_dim"], env["n_actions"]

    # --- acting ---------------------------------------------------------------------------------
    def acting_net(self) -> nn.Sequential:
        """The Q-network's MLP: its output is the ``[n, n_actions]`` action values."""
        return self.q.net

    def acting_head(self) -> EpsilonGreedyHead:
        """Greedy in the action values; exploring, a uniformly random action with probability ``random_eps``."""
        return EpsilonGreedyHead(self.n_actions, self.random_eps)

    def random_actions(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``[n, 1]`` indices uniform in ``0..n_actions-1``, as float32."""
        return rng.integers(0, self.n_actions, (n, 1)).astype(np.float32)

    # --- learning -------------------------------------------------------------------------------
    def next_value(self, next_x: torch.Tensor) -> torch.Tensor:
        """``[B, in_dim] -> [B]``: ``Q'(s', argmax_a Q(s', a))``, the double-DQN value of the next states."""
        best = self.q(next_x).argmax(dim=-1, keepdim=True)
        return self.q_target(next_x).gather(-1, best).squeeze(-1)

    def q_loss(self, x: torch.Tensor, next_x: torch.Tensor, b: Transitions) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean squared TD error, and the ``[B]`` values of the batch's actions (``b.action``: ``[B, 1]``
        float indices). The network returns float32 under ``autocast`` too, so targets and errors are float32."""
        with torch.no_grad():
            target = self.td_target(b.reward, self.next_value(next_x), b.discount)
        q = self.q(x).gather(-1, b.action.long()).squeeze(-1)
        return (q - target).pow(2).mean(), q

    def update(self, batch: Transitions) -> dict[str, float]:
        """One gradient step of the Q-network on a batch. Returns its loss and the mean Q of the batch's actions."""
        b = self.batch_to_tensors(batch)
        x, next_x = self.inputs(b.obs, b.goal), self.inputs(b.next_obs, b.goal)
        with self.autocast():
            loss, q = self.q_loss(x, next_x, b)
        self.step(self.q_opt, loss)
        self.n_updates += 1
        return {"q_loss": loss.item(), "q_mean": q.mean().item()}

    def update_targets(self) -> None:
        polyak_update(self.q_target, self.q, self.polyak)

    # --- persistence ----------------------------------------------------------------------------
    def stateful(self) -> dict[str, Any]:
        return {
            "q": self.q,
            "q_target": self.q_target,
            "q_opt": self.q_opt,
            "obs_norm": self.obs_norm,
            "goal_norm": self.goal_norm,
        }
