"""A fixed batch of transitions on small sizes, for agent tests."""

from __future__ import annotations

import numpy as np

from her import Transitions

OBS, G, A, B = 5, 3, 2, 32  # observation, goal and action sizes; transitions in a batch


def batch(seed: int = 0) -> Transitions:
    """``B`` transitions of sizes ``OBS``, ``G``, ``A`` drawn from ``seed``; rewards in ``{-1, 0}``, one-step
    discounts (``gamma = 0.98``)."""
    rng = np.random.default_rng(seed)
    return Transitions(
        obs=rng.normal(size=(B, OBS)).astype(np.float32),
        action=rng.uniform(-2, 2, (B, A)).astype(np.float32),
        reward=-rng.integers(0, 2, B).astype(np.float32),
        next_obs=rng.normal(size=(B, OBS)).astype(np.float32),
        goal=rng.normal(size=(B, G)).astype(np.float32),
        discount=np.full(B, 0.98, np.float32),
    )
