"""DDPG for goal-conditioned tasks with the choices that make HER work on Fetch (Plappert et al. 2018)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from agents.networks import Actor, Critic
from agents.normalizer import RunningNormalizer
from her import validation
from her.relabel import Transitions


@torch.no_grad()
def polyak_update(target: nn.Module, source: nn.Module, polyak: float) -> None:
    """``target <- polyak * target + (1 - polyak) * source``, parameter by parameter."""
    for t, s in zip(target.parameters(), source.parameters()):
        t.mul_(polyak).add_(s, alpha=1.0 - polyak)


class DDPG:
    """Deterministic actor-critic on ``[normalize(o), normalize(g)]`` inputs.

    Args:
        obs_dim, goal_dim, action_dim: input and output sizes.
        action_max: actions lie in ``[-action_max, action_max]``.
        hidden: hidden layer sizes of actor and critic.
        lr_actor, lr_critic: Adam learning rates.
        gamma: discount. polyak: target network averaging factor (0.95 keeps 95% of the old target).
        action_l2: weight of the ``mean((a / action_max)^2)`` penalty in the actor loss.
        clip_target: clip TD targets to ``[-1 / (1 - gamma), 0]`` (valid for rewards in ``[-1, 0]``).
        random_eps: probability of a uniformly random action while exploring.
        noise_eps: std of Gaussian action noise, as a fraction of ``action_max``.
        norm_eps, norm_clip: observation/goal normalizer std floor and output clip.
        batch_size: transitions per update (the runner samples this many).
        device: torch device of networks and batches.
    """

    def __init__(
        self,
        obs_dim: int,
        goal_dim: int,
        action_dim: int,
        action_max: float = 1.0,
        *,
        hidden: Sequence[int] = (256, 256, 256),
        lr_actor: float = 1e-3,
        lr_critic: float = 1e-3,
        gamma: float = 0.98,
        polyak: float = 0.95,
        action_l2: float = 1.0,
        clip_target: bool = True,
        random_eps: float = 0.3,
        noise_eps: float = 0.2,
        norm_eps: float = 0.01,
        norm_clip: float = 5.0,
        batch_size: int = 256,
        device: str | torch.device = "cpu",
    ) -> None:
        self.obs_dim = validation.positive_int("obs_dim", obs_dim)
        self.goal_dim = validation.positive_int("goal_dim", goal_dim)
        self.action_dim = validation.positive_int("action_dim", action_dim)
        self.action_max = validation.positive_real("action_max", action_max)
        self.hidden = validation.int_sequence("hidden", hidden)
        self.gamma = validation.real_in_range("gamma", gamma, 0.0, 1.0, high_open=True)
        self.polyak = validation.real_in_range("polyak", polyak, 0.0, 1.0)
        self.action_l2 = validation.real_in_range("action_l2", action_l2, 0.0, float("inf"), high_open=True)
        self.clip_target = validation.boolean("clip_target", clip_target)
        self.random_eps = validation.real_in_range("random_eps", random_eps, 0.0, 1.0)
        self.noise_eps = validation.real_in_range("noise_eps", noise_eps, 0.0, float("inf"), high_open=True)
        self.batch_size = validation.positive_int("batch_size", batch_size)
        self.device = torch.device(device)

        self.obs_norm = RunningNormalizer(obs_dim, norm_eps, norm_clip, self.device)
        self.goal_norm = RunningNormalizer(goal_dim, norm_eps, norm_clip, self.device)
        in_dim = obs_dim + goal_dim
        self.actor = Actor(in_dim, action_dim, self.hidden).to(self.device)
        self.critic = Critic(in_dim, action_dim, self.hidden).to(self.device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=validation.positive_real("lr_actor", lr_actor))
        self.critic_opt = torch.optim.Adam(
            self.critic.parameters(), lr=validation.positive_real("lr_critic", lr_critic)
        )
        self.n_updates = 0

    # --- acting ---------------------------------------------------------------------------------
    def inputs(self, obs: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """``[B, o], [B, g] -> [B, o + g]`` normalized network input."""
        return torch.cat([self.obs_norm(obs), self.goal_norm(goal)], dim=-1)

    @torch.no_grad()
    def act(
        self, obs: np.ndarray, goal: np.ndarray, explore: bool, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """``[n, o], [n, g] -> [n, a]`` actions in env units. Exploring adds Gaussian noise and, with
        probability ``random_eps``, replaces the action by a uniform random one (``rng`` required)."""
        x = self.inputs(torch.as_tensor(obs, device=self.device), torch.as_tensor(goal, device=self.device))
        action = self.actor(x).cpu().numpy()
        if explore:
            assert rng is not None, "exploration needs an rng"
            action = np.clip(action + self.noise_eps * rng.standard_normal(action.shape), -1.0, 1.0)
            random_rows = rng.random(len(action)) < self.random_eps
            action[random_rows] = rng.uniform(-1.0, 1.0, (int(random_rows.sum()), self.action_dim))
        return (action * self.action_max).astype(np.float32)

    def update_normalizers(self, obs: np.ndarray, goal: np.ndarray) -> None:
        """Add ``[..., o]`` observations and ``[..., g]`` goals to the normalizer statistics."""
        self.obs_norm.update(obs)
        self.goal_norm.update(goal)

    # --- learning -------------------------------------------------------------------------------
    def batch_to_tensors(self, batch: Transitions) -> Transitions:
        return Transitions(*(torch.as_tensor(x, device=self.device) for x in batch))

    def td_target(self, reward: torch.Tensor, next_q: torch.Tensor) -> torch.Tensor:
        """``r + gamma * Q'(s', a')``, clipped to ``[-1/(1-gamma), 0]`` when ``clip_target``."""
        target = reward + self.gamma * next_q
        if self.clip_target:
            target = target.clamp(-1.0 / (1.0 - self.gamma), 0.0)
        return target

    def critic_loss(self, x: torch.Tensor, next_x: torch.Tensor, b: Transitions) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean squared TD error and the ``[B]`` Q values of the batch actions."""
        with torch.no_grad():
            next_q = self.critic_target(next_x, self.actor_target(next_x))
            target = self.td_target(b.reward, next_q)
        q = self.critic(x, b.action / self.action_max)
        return (q - target).pow(2).mean(), q

    def actor_loss(self, x: torch.Tensor) -> torch.Tensor:
        """``-Q(s, pi(s))`` plus the action L2 penalty."""
        pi = self.actor(x)
        return -self.critic(x, pi).mean() + self.action_l2 * pi.pow(2).mean()

    @staticmethod
    def step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def update(self, batch: Transitions) -> dict[str, float]:
        """One critic and one actor gradient step on a ``batch_size`` batch. Returns losses and mean Q."""
        b = self.batch_to_tensors(batch)
        x, next_x = self.inputs(b.obs, b.goal), self.inputs(b.next_obs, b.goal)
        critic_loss, q = self.critic_loss(x, next_x, b)
        self.step(self.critic_opt, critic_loss)
        actor_loss = self.actor_loss(x)
        self.step(self.actor_opt, actor_loss)
        self.n_updates += 1
        return {"critic_loss": critic_loss.item(), "actor_loss": actor_loss.item(), "q_mean": q.mean().item()}

    def update_targets(self) -> None:
        polyak_update(self.actor_target, self.actor, self.polyak)
        polyak_update(self.critic_target, self.critic, self.polyak)

    # --- persistence ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        modules = ("actor", "critic", "actor_target", "critic_target", "actor_opt", "critic_opt")
        state: dict[str, Any] = {name: getattr(self, name).state_dict() for name in modules}
        state.update(
            obs_norm=self.obs_norm.state_dict(), goal_norm=self.goal_norm.state_dict(), n_updates=self.n_updates
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in ("actor", "critic", "actor_target", "critic_target", "actor_opt", "critic_opt"):
            getattr(self, name).load_state_dict(state[name])
        self.obs_norm.load_state_dict(state["obs_norm"])
        self.goal_norm.load_state_dict(state["goal_norm"])
        self.n_updates = int(state["n_updates"])
