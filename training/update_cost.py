"""What a run's updates cost in floating-point operations, from its saved config: the FLOPs of one update
(``agents.precision.update_flops``: matrix products of an update in fp32, counted by torch) of the agent the
config builds, at the batch size it trained with, for the sizes of its env.

A run's TFLOP up to an epoch is that times the updates logged in its ``metrics.jsonl`` by then, times its
``world_size`` (with N ranks an update combines N batches, ``docs/distributed.md``). The count does not depend
on the precision the run trained in: bf16 does the same matrix products.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from typing import Any

from agents.policy import make_agent
from agents.precision import update_flops
from envs import env_info, make_env
from training.checkpoint import env_record

LEGACY_AGENT_KEYS = ("batch_size",)
"""Keys that configs saved by earlier versions hold under ``agent`` and the agents no longer take: the batch size
was ``agent.batch_size`` before it became ``buffer.batch_size``."""


class UpdateCostError(Exception):
    """A saved config from which the cost of an update cannot be known."""


def batch_size(config: Mapping[str, Any]) -> int:
    """The batch a run trained with: ``buffer.batch_size``, or ``agent.batch_size`` in configs of earlier
    versions."""
    for group in ("buffer", "agent"):
        value = (config.get(group) or {}).get("batch_size")
        if value is not None:
            return int(value)
    raise UpdateCostError("the config has no buffer.batch_size (nor agent.batch_size)")


@cache
def _env_record(env_id: str, kwargs_json: str) -> dict[str, Any]:
    """The sizes of ``env_id`` made with ``kwargs`` (JSON), as a checkpoint records them."""
    kwargs = json.loads(kwargs_json)
    env = make_env(env_id, **kwargs)
    try:
        return env_record(env_id, env_info(env), kwargs)
    finally:
        env.close()


@cache
def _flops(agent_class: str, kwargs_json: str, env_id: str, env_kwargs_json: str, batch: int) -> float:
    agent = make_agent(agent_class, _env_record(env_id, env_kwargs_json), json.loads(kwargs_json))
    return update_flops(agent, batch)


def flops_per_update(config: Mapping[str, Any]) -> float:
    """FLOPs of one update of the run whose resolved config (plain containers) is ``config``; computed once per
    agent, env and batch size in a process."""
    agent = dict(config.get("agent") or {})
    agent_class = agent.pop("_target_", None)
    if agent_class is None:
        raise UpdateCostError("the config has no agent._target_ to build the agent from")
    kwargs = {k: v for k, v in agent.items() if k != "_partial_" and k not in LEGACY_AGENT_KEYS}
    env = config.get("env") or {}
    if "id" not in env:
        raise UpdateCostError("the config has no env.id")
    try:
        return _flops(str(agent_class), json.dumps(kwargs, sort_keys=True), str(env["id"]),
                      json.dumps(env.get("kwargs") or {}, sort_keys=True), batch_size(config))  # fmt: skip
    except (KeyError, TypeError, ValueError, ImportError) as err:
        raise UpdateCostError(f"cannot build {agent_class} for {env['id']} from the config: {err}") from None
