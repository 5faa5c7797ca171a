"""Environment creation: goal-based gymnasium envs, single or vectorized, and training start states
(``ObjectInGripper``)."""

from __future__ import annotations

from envs.curriculum import ObjectInGripper
from envs.make import (
    EnvInfo,
    EpisodeTerminated,
    FixedLengthGoalEnv,
    env_info,
    env_kwargs,
    known_env_ids,
    make_env,
    make_vector_env,
    resolve_env_id,
)

__all__ = [
    "EnvInfo",
    "EpisodeTerminated",
    "FixedLengthGoalEnv",
    "ObjectInGripper",
    "env_info",
    "env_kwargs",
    "known_env_ids",
    "make_env",
    "make_vector_env",
    "resolve_env_id",
]
