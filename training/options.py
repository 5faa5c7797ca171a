"""Config checks shared by the entry points: a bad option is reported as ``group.key=value`` in a ``ConfigError``
(``checked``, ``check_options``), the device choice, and where the Hydra configs live (``CONFIG_DIR``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_object
from omegaconf import DictConfig

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


def resolve_device(device: str) -> torch.device:
    validation.choice("device", device, ["cpu", "cuda", "auto"])
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' but torch sees no CUDA device (use device=cpu or device=auto)")
    return torch.device(device)
