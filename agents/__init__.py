"""Goal-conditioned off-policy agents."""

from __future__ import annotations

from agents.ddpg import DDPG, polyak_update
from agents.normalizer import RunningNormalizer

__all__ = ["DDPG", "RunningNormalizer", "polyak_update"]
