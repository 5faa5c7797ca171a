"""Goal-conditioned off-policy agents: DDPG, TD3 and SAC for continuous actions, DQN for discrete ones, on shared
parts (``agents.base``)."""

from __future__ import annotations

from agents.base import ActionSpaceMismatch, ActorCriticAgent, GoalAgent, polyak_update
from agents.ddpg import DDPG
from agents.dqn import DQN
from agents.normalizer import RunningNormalizer
from agents.sac import SAC
from agents.td3 import TD3

__all__ = [
    "DDPG",
    "DQN",
    "SAC",
    "TD3",
    "ActionSpaceMismatch",
    "ActorCriticAgent",
    "GoalAgent",
    "RunningNormalizer",
    "polyak_update",
]
