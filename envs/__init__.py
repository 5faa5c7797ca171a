"""Environment creation: goal-based gymnasium envs, single or vectorized."""

from __future__ import annotations

from envs.make import EnvInfo, env_info, known_env_ids, make_env, make_vector_env

__all__ = ["EnvInfo", "env_info", "known_env_ids", "make_env", "make_vector_env"]
