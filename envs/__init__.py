"""Environment creation: goal-based gymnasium envs, single or vectorized."""

from __future__ import annotations

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
    "env_info",
    "env_kwargs",
    "known_env_ids",
    "make_env",
    "make_vector_env",
    "resolve_env_id",
]
