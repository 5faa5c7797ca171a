"""Config checks shared by the entry points: a bad option is reported as ``group.key=value`` in a ``ConfigError``
(``checked``, ``check_options``), an agent for the other kind of action space than the env's
(``check_agent_fits_env``), the device choice, and where the Hydra configs live (``CONFIG_DIR``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

from agents import ActionSpaceMismatch
from her import validation

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs")
"""The Hydra configs of the scripts (``configs/`` beside this package)."""


class ConfigError(Exception):
    """A bad option, reported as ``group.key=value`` without a traceback."""


def checked(group: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn``; an ``OptionError`` becomes a ``ConfigError`` naming ``group.option``."""
    try:
        return fn(*args, **kwargs)
    except validation.OptionError as err:
        key = f"{group}.{err.name}" if group else err.name
        raise ConfigError(f"{key}={err.value!r} is invalid: {err.problem}") from None


def check_options(group: str, node: DictConfig) -> None:
    """Refuse keys of a ``_target_`` group that its target does not take, e.g. ``+agent.policy_delay=2`` with
    ``agent=ddpg`` (without the ``+``, Hydra refuses a key the group's yaml lacks before we get here)."""
    target = node._target_
    allowed = validation.keyword_options(get_object(target))
    unknown = [str(k) for k in node if not str(k).startswith("_") and allowed is not None and k not in allowed]
    if unknown:
        options = ", ".join(sorted(k for k in node if not str(k).startswith("_") and k not in unknown))
        raise ConfigError(f"{group}.{unknown[0]} is not an option of {target} (its options: {options})")


def agent_options(discrete_actions: bool) -> list[str]:
    """The ``agent=`` options (``configs/agent/*.yaml``) whose agent acts in a ``Discrete`` action space
    (``discrete_actions``) or in a Box."""
    names = []
    for path in sorted(Path(CONFIG_DIR, "agent").glob("*.yaml")):
        target = get_object(str(OmegaConf.load(path)._target_))
        if getattr(target, "discrete_actions", None) == discrete_actions:
            names.append(f"agent={path.stem}")
    return names


def check_agent_fits_env(target: str, env: Mapping[str, Any]) -> None:
    """Refuse the agent class ``target`` (``agent._target_``) for an env (its checkpoint record,
    ``training.checkpoint.env_record``) whose action space is of the other kind, naming the agents that fit it."""
    try:
        get_object(target).check_action_space(env)
    except ActionSpaceMismatch as err:
        fitting = agent_options(env.get("n_actions") is not None)
        choose = ", ".join(fitting[:-1]) + (" or " if len(fitting) > 1 else "") + fitting[-1] if fitting else "none"
        raise ConfigError(f"{err}: choose {choose}") from None


def resolve_device(device: str) -> torch.device:
    validation.choice("device", device, ["cpu", "cuda", "auto"])
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' but torch sees no CUDA device (use device=cpu or device=auto)")
    return torch.device(device)
