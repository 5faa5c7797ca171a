"""Goal-conditioned off-policy agents on shared parts (``agents.base``)."""

from __future__ import annotations

from agents.base import ActorCriticAgent, polyak_update
from agents.ddpg import DDPG
from agents.normalizer import RunningNormalizer

__all__ = ["DDPG", "ActorCriticAgent", "RunningNormalizer", "polyak_update"]
