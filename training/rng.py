"""NumPy generator states as plain dicts, for the runner's and the envs' generators in checkpoints."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


def generator_state(rng: np.random.Generator) -> dict[str, Any]:
    """The bit generator's state: ``{"bit_generator": "PCG64", "state": {...}, ...}`` (ints and strings only)."""
    return dict(rng.bit_generator.state)


def generator_from_state(state: Mapping[str, Any]) -> np.random.Generator:
    """A new generator that continues exactly where the one ``state`` was taken from stopped."""
    name = state.get("bit_generator")
    if name not in BIT_GENERATORS:
        raise ValueError(f"generator state has bit_generator={name!r}, expected one of {', '.join(BIT_GENERATORS)}")
    bit_generator = getattr(np.random, name)()
    bit_generator.state = dict(state)
    return np.random.Generator(bit_generator)


def env_rng_states(env: gym.vector.VectorEnv) -> list[dict[str, Any]]:
    """The ``np_random`` state of each sub-env (``num_envs`` dicts); works for sync and async vector envs."""
    return [generator_state(g) for g in env.get_attr("np_random")]


def set_env_rng_states(env: gym.vector.VectorEnv, states: Sequence[Mapping[str, Any]]) -> None:
    """Give sub-env ``i`` a generator continuing ``states[i]``: its next ``reset()`` draws what it would have."""
    if len(states) != env.num_envs:
        raise ValueError(f"{len(states)} env generator states for a vector env of num_envs={env.num_envs}")
    env.set_attr("np_random", [generator_from_state(s) for s in states])


def rank_generators(seed: int, env_steps: int, envs: Sequence[gym.vector.VectorEnv]) -> np.random.Generator:
    """Generators of a rank > 0 after a resume, drawn from its seed and the env steps so far, so that the ranks
    still explore and sample differently: sets each env's, returns the runner's."""
    runner_seq, *env_seqs = np.random.SeedSequence((seed, env_steps)).spawn(1 + len(envs))
    for env, seq in zip(envs, env_seqs, strict=True):
        set_env_rng_states(env, [generator_state(np.random.default_rng(s)) for s in seq.spawn(env.num_envs)])
    return np.random.default_rng(runner_seq)
