"""The training loop: epochs x cycles x (collect -> store -> normalize -> update -> target update), then eval."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

from her import validation
from her.distributed import Distributed
from her.metrics import MetricsLogger
from her.relabel import HerReplayBuffer, Transitions, sample_her_transitions
from her.transfer import BatchToDevice


class Agent(Protocol):
    """What the runner needs from an agent."""

    batch_size: int

    def act(
        self, obs: np.ndarray, goal: np.ndarray, explore: bool, rng: np.random.Generator | None = None
    ) -> np.ndarray: ...
    def update_normalizers(self, obs: np.ndarray, goal: np.ndarray) -> None: ...
    def update(self, batch: Transitions) -> dict[str, float]: ...
    def update_targets(self) -> None: ...


@dataclass
class Rollout:
    """Whole episodes from a vector env: ``obs``/``ag`` ``[n, T+1, dim]``, ``g``/``action`` ``[n, T, dim]``,
    ``success`` ``[n]`` (final-step ``is_success``), ``ret`` ``[n]`` (sum of rewards)."""

    episodes: dict[str, np.ndarray]
    success: np.ndarray
    ret: np.ndarray


def collect_episodes(
    env: gym.vector.VectorEnv,
    policy: Callable[[np.ndarray, np.ndarray], np.ndarray],
    n_episodes: int,
    horizon: int,
    seed: int | None = None,
) -> Rollout:
    """Run ``n_episodes`` (a multiple of ``env.num_envs``) episodes of ``horizon`` steps.

    ``policy(obs [n_envs, o], goal [n_envs, g]) -> actions [n_envs, a]``. Each batch of episodes starts
    with an explicit ``reset``; ``seed`` seeds the first one (env ``i`` gets ``seed + i``).
    """
    n_envs = env.num_envs
    if n_episodes % n_envs:
        raise ValueError(f"n_episodes={n_episodes} must be a multiple of num_envs={n_envs}")
    parts: list[Rollout] = []
    for r in range(n_episodes // n_envs):
        obs, _ = env.reset(seed=[seed + i for i in range(n_envs)] if seed is not None and r == 0 else None)
        o = np.empty((n_envs, horizon + 1, obs["observation"].shape[-1]), np.float32)
        ag = np.empty((n_envs, horizon + 1, obs["achieved_goal"].shape[-1]), np.float32)
        g = np.empty((n_envs, horizon, obs["desired_goal"].shape[-1]), np.float32)
        actions = np.empty((n_envs, horizon, env.single_action_space.shape[0]), np.float32)
        ret = np.zeros(n_envs, np.float64)
        o[:, 0], ag[:, 0] = obs["observation"], obs["achieved_goal"]
        info: dict[str, Any] = {}
        for t in range(horizon):
            g[:, t] = obs["desired_goal"]
            actions[:, t] = policy(o[:, t], g[:, t])
            obs, reward, _, _, info = env.step(actions[:, t])
            o[:, t + 1], ag[:, t + 1] = obs["observation"], obs["achieved_goal"]
            ret += reward
        success = np.asarray(info.get("is_success", np.zeros(n_envs)), dtype=np.float64)
        parts.append(Rollout({"obs": o, "ag": ag, "g": g, "action": actions}, success, ret))
    return Rollout(
        {k: np.concatenate([p.episodes[k] for p in parts]) for k in parts[0].episodes},
        np.concatenate([p.success for p in parts]),
        np.concatenate([p.ret for p in parts]),
    )


class Runner:
    """Trains ``agent`` from ``train_env`` experience stored in ``buffer``; evaluates on ``eval_env``.

    Args:
        horizon: episode length ``T`` of both envs.
        epochs, cycles_per_epoch: loop sizes; evaluation and logging happen once per epoch.
        episodes_per_cycle: episodes collected per cycle (a multiple of ``train_env.num_envs``).
        updates_per_cycle: gradient updates per cycle, followed by one target-network update.
        eval_episodes: deterministic evaluation episodes per epoch (a multiple of ``eval_env.num_envs``).
        seed: seeds the envs and the runner's generator (exploration noise, sampling).
        device: where sampled batches are sent (the agent's device).
        logger: where per-epoch metrics go (``None``: nowhere).
        progress: show a progress bar.
        distributed: this process's rank in a data-parallel job; each epoch's metrics are combined over ranks
            (``Distributed.reduce_record``) and the replicas checked for equality. ``None``: one process.
    """

    def __init__(
        self,
        agent: Agent,
        buffer: HerReplayBuffer,
        train_env: gym.vector.VectorEnv,
        eval_env: gym.vector.VectorEnv,
        horizon: int,
        *,
        epochs: int = 10,
        cycles_per_epoch: int = 10,
        episodes_per_cycle: int = 2,
        updates_per_cycle: int = 40,
        eval_episodes: int = 10,
        seed: int = 0,
        device: str | torch.device = "cpu",
        logger: MetricsLogger | None = None,
        progress: bool = True,
        distributed: Distributed | None = None,
    ) -> None:
        self.agent, self.buffer, self.train_env, self.eval_env = agent, buffer, train_env, eval_env
        self.horizon = validation.positive_int("horizon", horizon)
        self.epochs = validation.positive_int("epochs", epochs)
        self.cycles_per_epoch = validation.positive_int("cycles_per_epoch", cycles_per_epoch)
        self.episodes_per_cycle = validation.positive_int("episodes_per_cycle", episodes_per_cycle)
        self.updates_per_cycle = validation.non_negative_int("updates_per_cycle", updates_per_cycle)
        self.eval_episodes = validation.positive_int("eval_episodes", eval_episodes)
        if self.episodes_per_cycle % train_env.num_envs:
            raise validation.OptionError(
                "episodes_per_cycle", episodes_per_cycle, f"a multiple of num_envs={train_env.num_envs}"
            )
        if self.eval_episodes % eval_env.num_envs:
            raise validation.OptionError("eval_episodes", eval_episodes, f"a multiple of num_envs={eval_env.num_envs}")
        self.seed = seed
        self.to_device = BatchToDevice(device)
        self.rng = np.random.default_rng(seed)
        self.logger = logger
        self.progress = progress
        self.distributed = distributed if distributed is not None else Distributed()
        self.env_steps = 0  # this rank's; metrics report all ranks' (reduce_record)
        self.epoch = 0

    def _explore(self, obs: np.ndarray, goal: np.ndarray) -> np.ndarray:
        return self.agent.act(obs, goal, explore=True, rng=self.rng)

    def _exploit(self, obs: np.ndarray, goal: np.ndarray) -> np.ndarray:
        return self.agent.act(obs, goal, explore=False)

    def collect(self) -> Rollout:
        """Collect ``episodes_per_cycle`` exploring episodes, store them, update the normalizers."""
        first = self.env_steps == 0
        rollout = collect_episodes(
            self.train_env, self._explore, self.episodes_per_cycle, self.horizon, self.seed if first else None
        )
        self.env_steps += self.episodes_per_cycle * self.horizon
        self.buffer.store(rollout.episodes)
        # Normalizer statistics come from relabeled samples of the new episodes, as the learner sees them.
        fresh = sample_her_transitions(
            rollout.episodes,
            self.episodes_per_cycle * self.horizon,
            self.buffer.strategy,
            self.buffer.relabel_p,
            self.buffer.reward_fn,
            self.rng,
        )
        self.agent.update_normalizers(fresh.obs, fresh.goal)
        return rollout

    def learn(self, n_updates: int) -> list[dict[str, float]]:
        """``n_updates`` gradient updates on sampled batches, then one target update."""
        stats = [
            self.agent.update(self.to_device(self.buffer.sample(self.agent.batch_size, self.rng)))
            for _ in range(n_updates)
        ]
        self.agent.update_targets()
        return stats

    def train_cycle(self) -> tuple[Rollout, list[dict[str, float]], float, float]:
        """Collect then learn; returns the rollout, update stats and the two phases' seconds."""
        t0 = time.perf_counter()
        rollout = self.collect()
        t1 = time.perf_counter()
        stats = self.learn(self.updates_per_cycle)
        return rollout, stats, t1 - t0, time.perf_counter() - t1

    def evaluate(self) -> Rollout:
        """Deterministic episodes on the eval env."""
        return collect_episodes(
            self.eval_env,
            self._exploit,
            self.eval_episodes,
            self.horizon,
            self.seed + 100_000 if self.epoch == 0 else None,
        )

    def run(self) -> dict[str, Any]:
        """Train for ``epochs``; returns the last epoch's metrics (the same record as in metrics.jsonl)."""
        start = time.perf_counter()
        record: dict[str, Any] = {}
        bar = tqdm(total=self.epochs * self.cycles_per_epoch, disable=not self.progress, desc="train", unit="cycle")
        try:
            while self.epoch < self.epochs:
                epoch_start, steps_before = time.perf_counter(), self.env_steps
                successes, stats, collect_s, update_s = [], [], 0.0, 0.0
                for _ in range(self.cycles_per_epoch):
                    rollout, cycle_stats, c_s, u_s = self.train_cycle()
                    successes.append(rollout.success)
                    stats.extend(cycle_stats)
                    collect_s, update_s = collect_s + c_s, update_s + u_s
                    bar.update(1)
                eval_start = time.perf_counter()
                evaluation = self.evaluate()
                now = time.perf_counter()
                record = {
                    "epoch": self.epoch,
                    "env_steps": self.env_steps,
                    "updates": (self.epoch + 1) * self.cycles_per_epoch * self.updates_per_cycle,
                    "wall_s": now - start,
                    "eval_success_rate": float(evaluation.success.mean()),
                    "eval_mean_return": float(evaluation.ret.mean()),
                    "train_success_rate": float(np.concatenate(successes).mean()),
                    **{k: float(np.mean([s[k] for s in stats])) for k in (stats[0] if stats else {})},
                    "env_steps_per_s": (self.env_steps - steps_before) / (now - epoch_start),
                    "updates_per_s": len(stats) / update_s if update_s > 0 else None,
                    "collect_s": collect_s,
                    "update_s": update_s,
                    "eval_s": now - eval_start,
                    "buffer_transitions": self.buffer.n_transitions,
                }
                record = self.distributed.reduce_record(record)
                self.distributed.periodic_check(self.epoch)
                self.epoch += 1
                if self.logger is not None:
                    self.logger.log_epoch(record)
                bar.set_postfix(
                    eval_success=f"{record['eval_success_rate']:.2f}",
                    train_success=f"{record['train_success_rate']:.2f}",
                )
        finally:
            bar.close()
        return record

    def close(self) -> None:
        """Close the logger, the envs and the process group (if any)."""
        if self.logger is not None:
            self.logger.close()
        self.train_env.close()
        self.eval_env.close()
        self.distributed.close()
