"""What the agents share. ``GoalAgent``, the part of every agent: normalized ``[o, g]`` inputs, the TD target,
mixed precision, optimizer steps, acting in NumPy, its own torch generator and persistence by named parts; DQN
builds on it. ``ActorCriticAgent`` adds what DDPG, TD3 and SAC share: a critic ensemble with its target, one
gradient step of critics then actor, polyak target updates. Subclasses supply only their algorithm."""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from agents.acting import ActingHead, HostMLP, HostPolicy
from agents.networks import CriticEnsemble
from agents.normalizer import RunningNormalizer
from agents.optim import Adam
from agents.precision import PRECISIONS
from her import validation
from her.relabel import Transitions


@torch.no_grad()
def polyak_update(target: nn.Module, source: nn.Module, polyak: float) -> None:
    """``target <- polyak * target + (1 - polyak) * source``, parameter by parameter."""
    for t, s in zip(target.parameters(), source.parameters()):
        t.mul_(polyak).add_(s, alpha=1.0 - polyak)


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """No parameter gradients for ``module`` inside the block (gradients still flow through it to its inputs);
    each parameter's ``requires_grad`` is restored after it."""
    params = list(module.parameters())
    flags = [p.requires_grad for p in params]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


class ActionSpaceMismatch(ValueError):
    """An agent for one kind of action space (discrete or continuous) given an env of the other kind."""


def action_space_text(env: Mapping[str, Any]) -> str:
    """How an env record (``training.checkpoint.env_record``) describes its action space: ``Discrete(30)``,
    ``Box(-1.0, 1.0, (4,))``."""
    if env.get("n_actions") is not None:
        return f"Discrete({env['n_actions']})"
    high = float(env["action_max"])
    return f"Box({-high}, {high}, ({env['action_dim']},))"


class GoalAgent(ABC):
    """What every agent shares: networks on ``[normalize(o), normalize(g)]`` inputs, the TD target, mixed precision,
    optimizer steps, acting through a NumPy snapshot (``agents.acting``), an own ``torch.Generator`` for noise drawn
    while learning, and persistence of the parts that ``stateful`` names.

    ``discrete_actions`` (a class attribute) says which action spaces an agent acts in: ``True``, the indices of a
    ``Discrete(n)`` space (stored as ``[B, 1]`` float indices); ``False``, a Box. ``env_sizes`` turns an env record
    into the constructor's size arguments.

    Args:
        obs_dim, goal_dim: input sizes.
        hidden: hidden layer sizes of the networks.
        gamma: discount. polyak: target network averaging factor (0.95 keeps 95% of the old target).
        clip_target: clip TD targets to ``[-1 / (1 - gamma), 0]``, the return range for rewards in ``[-1, 0]``.
        norm_eps, norm_clip: observation/goal normalizer std floor and output clip.
        precision: ``fp32``; ``bf16``: the networks' forward and backward passes of an update run under
            ``torch.autocast`` in bfloat16 (matrix products in bf16; the networks' outputs, TD targets, losses,
            weights, gradients and Adam's state stay float32); ``auto``: the entry point measures which of the
            two is faster here and sets it (``agents.precision.choose_precision``); until then updates run in
            fp32. Acting is always float32.
        device: torch device of networks and batches.
    """

    discrete_actions: ClassVar[bool]

    def __init__(
        self,
        obs_dim: int,
        goal_dim: int,
        *,
        hidden: Sequence[int],
        gamma: float,
        polyak: float,
        clip_target: bool,
        norm_eps: float,
        norm_clip: float,
        precision: str,
        device: str | torch.device,
    ) -> None:
        self.obs_dim = validation.positive_int("obs_dim", obs_dim)
        self.goal_dim = validation.positive_int("goal_dim", goal_dim)
        self.hidden = validation.int_sequence("hidden", hidden)
        self.gamma = validation.real_in_range("gamma", gamma, 0.0, 1.0, high_open=True)
        self.polyak = validation.real_in_range("polyak", polyak, 0.0, 1.0)
        self.clip_target = validation.boolean("clip_target", clip_target)
        self.precision = validation.choice("precision", precision, PRECISIONS)
        self.device = torch.device(device)
        self.obs_norm = RunningNormalizer(obs_dim, norm_eps, norm_clip, self.device)
        self.goal_norm = RunningNormalizer(goal_dim, norm_eps, norm_clip, self.device)
        self.generator: torch.Generator | None = None  # set by agents that sample noise while learning
        self.n_updates = 0

    @classmethod
    @abstractmethod
    def env_sizes(cls, env: Mapping[str, Any]) -> tuple[int | float, ...]:
        """The constructor's size arguments for an env record (``obs_dim``, ``goal_dim``, ``action_dim``,
        ``action_max``, ``n_actions``: ``training.checkpoint.env_record``)."""

    @classmethod
    def check_action_space(cls, env: Mapping[str, Any]) -> None:
        """Raise ``ActionSpaceMismatch`` unless the env record's action space is of this agent's kind."""
        if cls.discrete_actions == (env.get("n_actions") is not None):
            return
        kind = "discrete actions (a gymnasium Discrete space)" if cls.discrete_actions else "continuous actions (a Box)"
        raise ActionSpaceMismatch(
            f"{cls.__module__.split('.')[0]}.{cls.__name__} acts with {kind}, and {env.get('id', 'the env')} has "
            f"{action_space_text(env)}"
        )

    # --- what each agent defines ----------------------------------------------------------------
    @abstractmethod
    def acting_net(self) -> nn.Sequential:
        """The MLP on normalized ``[o, g]`` inputs that acting runs (copied to NumPy by ``acting_policy``)."""

    @abstractmethod
    def acting_head(self) -> ActingHead:
        """How the output of ``acting_net`` (computed in NumPy by ``agents.acting``) becomes greedy and exploring
        actions: in ``[-1, 1]`` for a Box agent (``action_scale`` then gives env units), indices for a discrete
        one."""

    @abstractmethod
    def random_actions(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``[n, a]`` float32 actions drawn uniformly from the action space, in env units (a probe's batches)."""

    @abstractmethod
    def update(self, batch: Transitions) -> dict[str, float]:
        """One gradient update on a batch; returns its losses and statistics."""

    @abstractmethod
    def update_targets(self) -> None:
        """Move the target networks toward the online ones."""

    @abstractmethod
    def stateful(self) -> dict[str, Any]:
        """The parts saved by ``state_dict``, by name: each has its own ``state_dict``/``load_state_dict``."""

    def action_scale(self) -> float:
        """What acting multiplies ``acting_head``'s actions by to give env units."""
        return 1.0

    # --- acting ---------------------------------------------------------------------------------
    def inputs(self, obs: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """``[B, o], [B, g] -> [B, o + g]`` normalized network input."""
        return torch.cat([self.obs_norm(obs), self.goal_norm(goal)], dim=-1)

    def acting_policy(self) -> HostPolicy:
        """A NumPy snapshot of the current policy, ``policy(obs [n, o], goal [n, g], explore, rng) -> [n, a]``
        actions in env units; valid until the next update or normalizer update."""
        return self.host_policy(self.acting_net())

    def host_policy(self, net: nn.Sequential) -> HostPolicy:
        """A NumPy snapshot of the policy that ``net`` (shaped as ``acting_net``) computes."""
        return HostPolicy(
            self.obs_norm.host(),
            self.goal_norm.host(),
            HostMLP.from_sequential(net),
            self.acting_head(),
            self.action_scale(),
        )

    def averaged_policy(self) -> HostPolicy | None:
        """A NumPy snapshot of the Polyak-averaged policy that evaluation also runs, or ``None`` for an agent
        without one (``eval_polyak``)."""
        return None

    def act(
        self, obs: np.ndarray, goal: np.ndarray, explore: bool, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """``[n, o], [n, g] -> [n, a]`` actions in env units; exploring draws its randomness from ``rng``.
        (Takes a snapshot per call: loops should call ``acting_policy()`` once and reuse it.)"""
        return self.acting_policy()(obs, goal, explore, rng)

    def update_normalizers(self, obs: np.ndarray, goal: np.ndarray) -> None:
        """Add ``[..., o]`` observations and ``[..., g]`` goals to the normalizer statistics."""
        self.obs_norm.update(obs)
        self.goal_norm.update(goal)

    # --- learning -------------------------------------------------------------------------------
    def batch_to_tensors(self, batch: Transitions) -> Transitions:
        return Transitions(*(torch.as_tensor(x, device=self.device) for x in batch))

    def make_generator(self) -> torch.Generator:
        """A generator for the noise this agent samples while learning, seeded from torch's global one
        (seeded by ``train.py``): runs repeat per seed, and nothing else draws from this stream."""
        generator = torch.Generator(device=self.device)
        generator.manual_seed(int(torch.randint(0, 2**62, ())))
        return generator

    def standard_normal(self, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
        """A ``shape`` tensor of N(0, 1) noise from the agent's own generator."""
        return torch.randn(shape, generator=self.generator, device=self.device)

    def td_target(self, reward: torch.Tensor, next_value: torch.Tensor, discount: torch.Tensor) -> torch.Tensor:
        """``[B], [B], [B] -> [B]``: ``r + discount * V(s')``, clipped to ``[-1/(1-gamma), 0]`` when ``clip_target``.

        ``discount`` is the batch's (``Transitions.discount``): ``gamma`` for a one-step transition, ``gamma^m``
        for an ``m``-step one whose ``r`` is ``sum_{k<m} gamma^k r_k``. The clip range holds for both: with
        rewards in ``[-1, 0]`` and ``V`` in ``[-1/(1-gamma), 0]``, ``r + gamma^m V`` is in
        ``[-(1-gamma^m)/(1-gamma) - gamma^m/(1-gamma), 0] = [-1/(1-gamma), 0]``."""
        target = reward + discount * next_value
        if self.clip_target:
            target = target.clamp(-1.0 / (1.0 - self.gamma), 0.0)
        return target

    def autocast(self) -> torch.autocast:
        """The mixed-precision region of an update's forward passes (a no-op with ``precision="fp32"``).

        Each region is closed before an optimizer step whose weights a later region reads: autocast keeps
        its bf16 copies of the weights until the region ends.
        """
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    @staticmethod
    def step(optimizer: Adam, loss: torch.Tensor) -> None:
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    # --- persistence ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {name: part.state_dict() for name, part in self.stateful().items()}
        state["n_updates"] = self.n_updates
        if self.generator is not None:
            state["generator"] = self.generator.get_state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, part in self.stateful().items():
            part.load_state_dict(state[name])
        self.n_updates = int(state["n_updates"])
        if self.generator is not None:
            self.generator.set_state(state["generator"])

    # --- learning-rate schedule -----------------------------------------------------------------
    def optimizers(self) -> dict[str, Adam]:
        """The agent's optimizers by name (those ``stateful`` lists)."""
        return {name: part for name, part in self.stateful().items() if isinstance(part, Adam)}

    def scale_learning_rates(self, scale: float) -> None:
        """Set every optimizer's learning rate to ``scale`` times the one it was built with (a schedule's step;
        ``training.runner.Runner``'s ``lr_decay_to``)."""
        for opt in self.optimizers().values():
            opt.lr = opt.initial_lr * scale


class ActorCriticAgent(GoalAgent):
    """An off-policy actor-critic on ``[normalize(o), normalize(g)]`` inputs, with actions in ``[-1, 1]``
    inside and ``[-action_max, action_max]`` outside.

    One update: a gradient step of all critics on the TD error to ``r + discount * next_value(s')`` (the
    subclass's ``next_value``; the batch's ``discount``, ``gamma`` for one-step transitions), then the
    subclass's ``actor_update``. The runner moves the targets once per cycle with ``update_targets``.

    Args:
        obs_dim, goal_dim, action_dim: input and output sizes.
        action_max: actions lie in ``[-action_max, action_max]``.
        hidden: hidden layer sizes of actor and critics.
        lr_actor, lr_critic: Adam learning rates.
        action_l2: weight of the ``mean(a^2)`` penalty (``a`` in ``[-1, 1]``) on the actor's mean action.
        n_critics: size of the critic ensemble; TD targets take the minimum over the target critics.
        critic_layer_norm: LayerNorm before each hidden ReLU of the critics.
        eval_polyak: ``None``, or keep a Polyak average of the actor, ``avg <- eval_polyak * avg + (1 - eval_polyak)
            * actor`` at each target update, that evaluation runs beside the actor (``averaged_policy``).
        gamma, polyak, clip_target, norm_eps, norm_clip, precision, device: as :class:`GoalAgent`.
    """

    discrete_actions = False

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
        n_critics: int = 1,
        critic_layer_norm: bool = False,
        eval_polyak: float | None = None,
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
        self.action_dim = validation.positive_int("action_dim", action_dim)
        self.action_max = validation.positive_real("action_max", action_max)
        self.action_l2 = validation.real_in_range("action_l2", action_l2, 0.0, float("inf"), high_open=True)
        self.n_critics = validation.positive_int("n_critics", n_critics)
        self.critic_layer_norm = validation.boolean("critic_layer_norm", critic_layer_norm)

        in_dim = obs_dim + goal_dim
        self.actor = self.build_actor(in_dim).to(self.device)
        self.critic = CriticEnsemble(in_dim, action_dim, self.hidden, self.n_critics, self.critic_layer_norm)
        self.critic = self.critic.to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.eval_polyak = validation.optional(validation.real_in_range, "eval_polyak", eval_polyak, 0, 1)
        self.actor_average = None if eval_polyak is None else copy.deepcopy(self.actor).requires_grad_(False)
        self.actor_opt = Adam(self.actor.parameters(), validation.positive_real("lr_actor", lr_actor))
        self.critic_opt = Adam(self.critic.parameters(), validation.positive_real("lr_critic", lr_critic))

    @classmethod
    def env_sizes(cls, env: Mapping[str, Any]) -> tuple[int | float, ...]:
        """``(obs_dim, goal_dim, action_dim, action_max)``."""
        return env["obs_dim"], env["goal_dim"], env["action_dim"], env["action_max"]

    # --- what each algorithm defines --------------------------------------------------------------
    @abstractmethod
    def build_actor(self, in_dim: int) -> nn.Module:
        """The policy network on ``[B, in_dim]`` inputs."""

    @abstractmethod
    def next_value(self, next_x: torch.Tensor) -> torch.Tensor:
        """``[B, in_dim] -> [B]`` the value of the next states that the TD target bootstraps from."""

    @abstractmethod
    def actor_update(self, x: torch.Tensor) -> dict[str, float]:
        """Train the policy on ``[B, in_dim]`` states after the critic step; returns at least ``actor_loss``."""

    # --- acting ---------------------------------------------------------------------------------
    def acting_net(self) -> nn.Sequential:
        """The actor's MLP; ``acting_head`` maps its output to actions in ``[-1, 1]``."""
        return self.actor.net

    def action_scale(self) -> float:
        """``action_max``: the actor works in ``[-1, 1]``."""
        return self.action_max

    def averaged_policy(self) -> HostPolicy | None:
        """The Polyak average of the actor (``eval_polyak``) as a policy, or ``None`` without one."""
        return None if self.actor_average is None else self.host_policy(self.actor_average.net)

    def random_actions(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``[n, action_dim]`` uniform in ``[-action_max, action_max]``."""
        return rng.uniform(-self.action_max, self.action_max, (n, self.action_dim)).astype(np.float32)

    # --- learning -------------------------------------------------------------------------------
    def critic_loss(self, x: torch.Tensor, next_x: torch.Tensor, b: Transitions) -> tuple[torch.Tensor, torch.Tensor]:
        """Sum over critics of the mean squared TD error, and the ``[n_critics, B]`` Q values of the batch.
        The networks return float32 under ``autocast`` too, so targets and errors are float32."""
        with torch.no_grad():
            target = self.td_target(b.reward, self.next_value(next_x), b.discount)
        q = self.critic(x, b.action / self.action_max)
        return (q - target).pow(2).mean(dim=-1).sum(), q

    def action_penalty(self, action: torch.Tensor) -> torch.Tensor:
        """``action_l2 * mean(action^2)`` of ``[B, a]`` actions in ``[-1, 1]``."""
        return self.action_l2 * action.pow(2).mean()

    def update(self, batch: Transitions) -> dict[str, float]:
        """One critic step and the actor's update on a batch. Returns losses and mean Q."""
        b = self.batch_to_tensors(batch)
        x, next_x = self.inputs(b.obs, b.goal), self.inputs(b.next_obs, b.goal)
        with self.autocast():
            critic_loss, q = self.critic_loss(x, next_x, b)
        self.step(self.critic_opt, critic_loss)
        # The actor's loss needs gradients through the critics, not of their weights. The actor's own
        # optimizer steps come last in its region (see ``autocast``).
        with frozen(self.critic), self.autocast():
            actor_stats = self.actor_update(x)
        stats = {"critic_loss": critic_loss.item(), **actor_stats, "q_mean": q.mean().item()}
        self.n_updates += 1
        return stats

    def update_targets(self) -> None:
        polyak_update(self.critic_target, self.critic, self.polyak)
        if self.actor_average is not None and self.eval_polyak is not None:
            polyak_update(self.actor_average, self.actor, self.eval_polyak)

    # --- persistence ----------------------------------------------------------------------------
    def stateful(self) -> dict[str, Any]:
        parts = {
            "actor": self.actor,
            "critic": self.critic,
            "critic_target": self.critic_target,
            "actor_opt": self.actor_opt,
            "critic_opt": self.critic_opt,
            "obs_norm": self.obs_norm,
            "goal_norm": self.goal_norm,
        }
        if self.actor_average is not None:
            parts["actor_average"] = self.actor_average
        return parts
