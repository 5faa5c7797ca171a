"""Goal-conditioned off-policy agents: DDPG, TD3 and SAC on shared parts (``agents.base``)."""

from __future__ import annotations

from agents.base import ActorCriticAgent, polyak_update
from agents.ddpg import DDPG
from agents.normalizer import RunningNormalizer
from agents.sac import SAC
from agents.td3 import TD3

__all__ = ["DDPG", "SAC", "TD3", "ActorCriticAgent", "RunningNormalizer", "polyak_update"]
