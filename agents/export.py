"""A trained policy as one file that runs without this project: ONNX (onnxruntime, any language) or TorchScript
(``torch.jit.load``, C++ libtorch).

The exported graph takes ``observation [n, obs_dim]`` and ``desired_goal [n, goal_dim]`` (float32, any ``n``) and
returns ``action [n, action_dim]`` in env units: the agent's deterministic action with the observation and goal
normalizers (their clipping included) and the action scaling inside, as ``agents.policy.Policy.act`` computes it;
for DQN (a ``Discrete`` action space) ``action [n]``, the int64 index of the greedy action.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from torch import nn

from agents.acting import HostNormalizer
from agents.policy import ACTORS, load_policy
from her import checkpoint_file

FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
"""Export formats and their file suffixes (a TorchScript file is not named like the checkpoints, ``*.pt``)."""
INPUTS = ("observation", "desired_goal")
OUTPUT = "action"


class ExportError(ValueError):
    """A bad export option (format, output path), reported as ``option=value``."""


class NormalizedInput(nn.Module):
    """``clip((x - mean) / std, -clip, clip)`` on ``[n, dim]`` float32 tensors, with the statistics of a host
    normalizer frozen into buffers."""

    def __init__(self, normalizer: HostNormalizer) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(normalizer.mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(normalizer.std, dtype=torch.float32))
        self.clip = float(normalizer.clip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[n, dim] -> [n, dim]``."""
        return torch.clamp((x - self.mean) / self.std, -self.clip, self.clip)


class ExportedPolicy(nn.Module):
    """``(observation [n, o], desired_goal [n, g]) -> action [n, a]`` in env units: a float32 CPU copy of an agent's
    normalizers and actor (any ``ActorCriticAgent``: DDPG, TD3, SAC), its deterministic action times ``action_max``;
    with ``averaged``, of the Polyak average of its actor (``agent.eval_polyak``)."""

    def __init__(self, agent: nn.Module, averaged: bool = False) -> None:
        super().__init__()
        self.obs_norm = NormalizedInput(agent.obs_norm.host())
        self.goal_norm = NormalizedInput(agent.goal_norm.host())
        actor = agent.actor_average if averaged else agent.actor
        self.actor = copy.deepcopy(actor).float().cpu().eval().requires_grad_(False)
        self.action_max = float(agent.action_max)

    def forward(self, observation: torch.Tensor, desired_goal: torch.Tensor) -> torch.Tensor:
        """``[n, o], [n, g] -> [n, a]``."""
        x = torch.cat([self.obs_norm(observation), self.goal_norm(desired_goal)], dim=-1)
        return self.actor.deterministic(x) * self.action_max


class ExportedGreedyPolicy(nn.Module):
    """``(observation [n, o], desired_goal [n, g]) -> action [n]`` int64: a float32 CPU copy of DQN's normalizers and
    Q-network, the index of its largest action value (the first of equal ones, as ``Policy.act``)."""

    def __init__(self, agent: nn.Module) -> None:
        super().__init__()
        self.obs_norm = NormalizedInput(agent.obs_norm.host())
        self.goal_norm = NormalizedInput(agent.goal_norm.host())
        self.q = copy.deepcopy(agent.q).float().cpu().eval().requires_grad_(False)

    def forward(self, observation: torch.Tensor, desired_goal: torch.Tensor) -> torch.Tensor:
        """``[n, o], [n, g] -> [n]``."""
        x = torch.cat([self.obs_norm(observation), self.goal_norm(desired_goal)], dim=-1)
        return self.q(x).argmax(dim=-1)


def output_path(checkpoint: Path, fmt: str) -> Path:
    """Where a checkpoint's export goes by default: its run dir, named after it (``checkpoints/last.pt`` ->
    ``<run dir>/last.onnx``, ``policy.pt`` -> ``<run dir>/policy.onnx`` or ``policy.torchscript.pt``)."""
    run_dir = (
        checkpoint.parent.parent if checkpoint.parent.name == checkpoint_file.CHECKPOINT_DIR else checkpoint.parent
    )
    return run_dir / (checkpoint.stem + FORMATS[fmt])


def export_policy(
    policy: str | Path, fmt: str = "onnx", output: str | Path | None = None, actor: str = "online"
) -> Path:
    """Write the policy of ``policy`` (a run dir, its ``checkpoints/last.pt``, or a checkpoint file) as one ``fmt``
    file (``onnx`` or ``torchscript``) to ``output`` (``None``: ``output_path``); returns its path. ``actor``:
    ``online``, or ``averaged`` for the Polyak-averaged actor of a run trained with ``agent.eval_polyak``.

    A missing or damaged checkpoint raises ``CheckpointError``; a bad format or output path ``ExportError``."""
    if fmt not in FORMATS:
        raise ExportError(f"format={fmt!r} is invalid: expected one of {', '.join(FORMATS)}")
    if actor not in ACTORS:
        raise ExportError(f"actor={actor!r} is invalid: expected one of {', '.join(ACTORS)}")
    checkpoint = checkpoint_file.resolve_path(policy)
    path = output_path(checkpoint, fmt) if output is None else Path(output)
    if path.is_dir() or not path.parent.is_dir():
        raise ExportError(f"output={str(path)!r} is invalid: expected a file path in an existing folder")
    if path.resolve() == checkpoint.resolve():
        raise ExportError(f"output={str(path)!r} is invalid: it is the checkpoint exported")
    loaded = load_policy(checkpoint, actor=actor)
    if loaded.agent.discrete_actions:
        module: nn.Module = ExportedGreedyPolicy(loaded.agent)
    else:
        module = ExportedPolicy(loaded.agent, averaged=actor == "averaged")
    example = tuple(torch.zeros(2, loaded.env[f"{key}_dim"]) for key in ("obs", "goal"))
    if fmt == "onnx":
        write_onnx(module, example, path)
    else:
        write_torchscript(module, example, path)
    return path


def write_torchscript(module: nn.Module, example: tuple[torch.Tensor, ...], path: Path) -> None:
    """``module`` traced on ``example`` into one TorchScript file: the graph has no branch on the inputs, so the
    trace holds for any batch size."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is in maintenance; its files still load
        torch.jit.trace(module, example).save(str(path))


def write_onnx(module: nn.Module, example: tuple[torch.Tensor, ...], path: Path) -> None:
    """``module(observation, desired_goal)`` as one ONNX file (weights inside), its batch size free."""
    batch = torch.export.Dim("n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals (deprecations, torchvision)
        program = torch.onnx.export(
            module,
            example,
            input_names=list(INPUTS),
            output_names=[OUTPUT],
            dynamic_shapes={name: {0: batch} for name in INPUTS},
            dynamo=True,
            verbose=False,
        )
    program.save(str(path), external_data=False)
