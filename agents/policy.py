"""A trained policy from a checkpoint, for use outside training.

Usage, with ``obs`` a goal-env observation dict::

    from agents.policy import load_policy

    policy = load_policy("runs/FetchReach/<time>")  # a run dir (its checkpoints/last.pt) or a .pt file
    action = policy.act(obs)

``actor="averaged"`` acts with the Polyak-averaged actor of a run trained with ``agent.eval_polyak``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from her import checkpoint_file, validation
from her.checkpoint_file import CheckpointError

AGENT_PACKAGE = "agents"
ACTORS = ("online", "averaged")  # the actor a policy acts with: the trained one, or its Polyak average (eval_polyak)


def agent_class(import_path: str) -> type:
    """The class named by ``import_path`` (e.g. ``agents.DDPG``); only this project's ``agents`` package
    is searched, so a checkpoint cannot name arbitrary code to run."""
    module_name, _, name = import_path.rpartition(".")
    if module_name.split(".")[0] != AGENT_PACKAGE:
        raise ValueError(f"agent class {import_path!r} is not in the {AGENT_PACKAGE!r} package")
    cls = getattr(importlib.import_module(module_name), name, None)
    if not isinstance(cls, type):
        raise ValueError(f"agent class {import_path!r} does not exist")
    return cls


def make_agent(
    import_path: str, env: Mapping[str, Any], kwargs: Mapping[str, Any], device: str | torch.device = "cpu"
) -> Any:
    """``cls(*cls.env_sizes(env), **kwargs, device=device)``, the call train.py makes (``(obs_dim, goal_dim,
    action_dim, action_max)`` for DDPG, TD3 and SAC, ``(obs_dim, goal_dim, n_actions)`` for DQN); an agent for the
    other kind of action space than the env record's raises ``ActionSpaceMismatch``."""
    cls = agent_class(import_path)
    cls.check_action_space(env)
    return cls(*cls.env_sizes(env), **kwargs, device=device)


class Policy:
    """Deterministic actions of a trained agent (no exploration noise) for goal-env observations.

    Args:
        agent: a trained agent; its ``acting_policy()`` snapshot (``averaged_policy()`` with ``actor="averaged"``),
            taken here once, gives the actions (later changes to ``agent`` do not reach this policy).
        env: the checkpoint's env record (``id``, ``obs_dim``, ``goal_dim``, ``action_dim``, ...).
        counters: ``epoch``, ``env_steps``, ``updates`` of the checkpoint.
        actor: ``online`` (the agent's actor) or ``averaged`` (its Polyak average: an agent with ``eval_polyak``;
            another raises ``ValueError``).
    """

    def __init__(
        self, agent: Any, env: Mapping[str, Any], counters: Mapping[str, int] | None = None, actor: str = "online"
    ) -> None:
        self.agent = agent
        self.actor = validation.choice("actor", actor, ACTORS)
        averaged = agent.averaged_policy() if self.actor == "averaged" else None
        if self.actor == "averaged" and averaged is None:
            raise ValueError(
                f"actor='averaged' is invalid: this {type(agent).__name__} keeps no averaged actor "
                "(train with agent.eval_polyak=<number> to keep one)"
            )
        self._act = averaged if averaged is not None else agent.acting_policy()
        self.env = dict(env)
        self.counters = dict(counters or {})

    def act(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """``{"observation": [o] or [n, o], "desired_goal": [g] or [n, g], ...} -> [a] or [n, a]`` float32
        actions in env units; for a discrete action space (DQN) the int64 action index, one ``[]`` or ``[n]``."""
        o = self._field(obs, "observation", self.env["obs_dim"])
        g = self._field(obs, "desired_goal", self.env["goal_dim"])
        if o.ndim != g.ndim or len(o) != len(g):
            raise ValueError(f"observation {o.shape} and desired_goal {g.shape} differ in batch shape")
        batched = o.ndim == 2
        action = self._act(np.atleast_2d(o), np.atleast_2d(g), False)
        if self.agent.discrete_actions:
            action = action[:, 0].astype(np.int64)
        return action if batched else action[0]

    @staticmethod
    def _field(obs: Mapping[str, np.ndarray], key: str, dim: int) -> np.ndarray:
        if key not in obs:
            raise ValueError(f"observation dict has no {key!r} (keys: {sorted(obs)})")
        x = np.asarray(obs[key], dtype=np.float32)
        if x.ndim not in (1, 2) or x.shape[-1] != dim:
            raise ValueError(f"{key} has shape {x.shape}, expected [{dim}] or [n, {dim}]")
        return x

    def check_env_sizes(self, env: Mapping[str, Any], path: str | Path = "") -> None:
        """Raise ``CheckpointError`` if an env's sizes (``obs_dim``, ``goal_dim``, ``action_dim``,
        ``action_max``, ``n_actions`` of a discrete action space) differ from those the policy was trained on."""
        sizes = ("obs_dim", "goal_dim", "action_dim", "action_max", "n_actions")
        problems = checkpoint_file.mismatches({k: self.env.get(k) for k in sizes}, {k: env.get(k) for k in sizes})
        if problems:
            raise CheckpointError(
                path, f"a policy for {self.env['id']} does not fit {env['id']}: " + "; ".join(problems)
            )


def load_policy(path: str | Path, device: str | torch.device = "cpu", actor: str = "online") -> Policy:
    """The policy of a checkpoint file, or of ``<run dir>/checkpoints/last.pt``, acting with ``actor`` (``Policy``).
    Any checkpoint kind works (``last.pt``, ``best.pt``, ``policy.pt``); a missing, damaged or mismatched file, or
    ``actor="averaged"`` for a run without an averaged actor, raises ``CheckpointError``."""
    path = checkpoint_file.resolve_path(path)
    saved = checkpoint_file.load(path)
    try:
        agent = make_agent(saved["agent_class"], saved["env"], saved["agent_kwargs"], device)
    except (ValueError, TypeError, ImportError, KeyError) as err:
        raise CheckpointError(path, f"cannot rebuild the agent: {err}") from None
    checkpoint_file.load_agent_state(path, agent, saved["agent"])
    try:
        return Policy(agent, saved["env"], saved["counters"], actor)
    except ValueError as err:
        raise CheckpointError(path, str(err)) from None
