"""What a run shows in TensorBoard's HParams view: the key options of its recipe and its command-line overrides."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

# Options every run shows in TensorBoard's HParams view, besides the overrides its command line gave: the recipe.
# TensorBoard sorts the columns: the hparams whose values differ between the runs shown first (a sweep's overrides),
# then by name. A key that a run's config lacks (another agent's learning rates, another env's options) is left out
# of its view.
KEY_HPARAMS = (
    "env.id",
    "agent._target_",
    "seed",
    "buffer.batch_size",
    "agent.lr_actor",
    "agent.lr_critic",
    "agent.lr",  # DQN's
    "agent.gamma",
    "agent.polyak",
    "agent.hidden",
    "buffer.strategy",
    "buffer.replay_k",
    "runner.epochs",
    "runner.cycles_per_epoch",
    "runner.episodes_per_cycle",
    "runner.updates_per_cycle",
    "env.num_envs",
    "env.n_bits",  # BitFlipping's
    "precision_probe.chosen",  # the precision the networks trained in (its probe's rates are machine facts)
)

MACHINE_OPTIONS = ("device", "torch_threads", "progress", "logger", "checkpoint", "precision_probe", "resume")
"""Options (and groups) that say where and how a run ran, not what it learned: they stay out of the HParams view
even when the command line gives them (the config text of each run has them)."""

_ABSENT = object()


def hparam_value(value: Any) -> bool | int | float | str:
    """A config value as TensorBoard's HParams view holds it: a bool, number or string (lists and dicts as
    JSON, ``None`` as ``null``)."""
    if isinstance(value, DictConfig | ListConfig):
        value = OmegaConf.to_container(value, resolve=True)
    if value is None:
        return "null"
    if isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value)


def hparams(cfg: DictConfig, overrides: Sequence[str] = (), world_size: int = 1) -> dict[str, bool | int | float | str]:
    """What a run shows in TensorBoard's HParams view: ``KEY_HPARAMS`` (those its config has), ``world_size`` and
    each command-line override (``key=value``; Hydra's own ``hydra...`` ones and ``MACHINE_OPTIONS`` aside) with its
    resolved value. A config group's override (``env=PointReach``, ``experiment=fetch_push``) shows the option
    chosen."""
    selected = {key: OmegaConf.select(cfg, key, default=_ABSENT) for key in KEY_HPARAMS}
    values = {key: hparam_value(value) for key, value in selected.items() if value is not _ABSENT}
    values["world_size"] = world_size
    for override in overrides:
        key, _, literal = override.lstrip("+").partition("=")
        if key.startswith(("~", "hydra")) or "/" in key or key.split(".")[0] in MACHINE_OPTIONS:
            continue
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        group_choice = value is _ABSENT or (isinstance(value, DictConfig) and not literal.startswith("{"))
        values[key] = literal if group_choice else hparam_value(value)
    return values
