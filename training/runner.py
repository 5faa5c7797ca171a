"""The training loop: epochs x cycles x (collect -> store -> normalize -> update -> target update), then eval."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any, Literal, Protocol

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

from her import validation
from her.buffer import HerReplayBuffer
from her.relabel import Transitions
from training.collect import (
    ActingPolicy,
    Rollout,
    collect_episodes,
    resolve_overlap,
    start_in_workers,
    uniform_policy,
)
from training.distributed import Distributed
from training.divergence import check_parameters, cycle_divergence, first_non_finite_update
from training.epoch import EpochProgress, evaluation_metrics
from training.metrics import MetricsLogger
from training.rng import env_rng_states, generator_from_state, generator_state, rank_generators, set_env_rng_states
from training.transfer import BatchToDevice


class Agent(Protocol):
    """What the runner needs from an agent."""

    gamma: float  # the discount; the buffer's batches must be discounted with the same one

    def acting_policy(self) -> ActingPolicy: ...
    def update_normalizers(self, obs: np.ndarray, goal: np.ndarray) -> None: ...
    def update(self, batch: Transitions) -> dict[str, float]: ...
    def update_targets(self) -> None: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


EpochEndHook = Callable[["Runner", dict[str, Any]], None]


class Runner:
    """Trains ``agent`` from ``train_env`` experience stored in ``buffer``; evaluates on ``eval_env``.

    Args:
        horizon: episode length ``T`` of both envs.
        epochs, cycles_per_epoch: loop sizes; evaluation and logging happen once per epoch.
        episodes_per_cycle: episodes collected per cycle (a multiple of ``train_env.num_envs``).
        updates_per_cycle: gradient updates per cycle.
        target_update_every: updates between target-network updates (counted over the whole run); ``None``:
            one target update per cycle, after its updates.
        lr_decay_to: ``None``, or decay every learning rate of the agent linearly, cycle by cycle, from its own
            value at the first update to this fraction of it at the last update of the run (``epochs``).
        random_steps: the first cycles of a run, until this many env steps are collected, act uniformly at
            random (action space bounds) instead of with the policy.
        eval_episodes: deterministic episodes per evaluation (a multiple of ``eval_env.num_envs``).
        eval_every: env steps (of all ranks) between evaluations; an epoch evaluates when it reaches or passes a
            multiple of it, and the last epoch always does. ``None``: every epoch. The records of epochs without
            an evaluation hold ``None`` for ``eval_success_rate`` and ``eval_mean_return``. An agent with a
            Polyak-averaged actor (``averaged_policy``) is evaluated with it too, on as many episodes after those
            of its actor: ``eval_avg_success_rate`` and ``eval_avg_mean_return``.
        overlap: run the episodes in the envs' worker processes (both envs: async vector envs of
            ``EpisodeWorker`` envs): a cycle's episodes are collected while its updates run, on batches drawn
            from the episodes of the cycles before (``train_cycle``). With one env worker, one core steps the env
            and acts while another updates. ``"auto"``: where both envs are such worker envs.
        seed: seeds the envs and the runner's generator (exploration noise, sampling).
        device: where sampled batches are sent (the agent's device).
        logger: where per-epoch metrics go (``None``: nowhere).
        progress: show a progress bar.
        distributed: this process's rank in a data-parallel job; each epoch's metrics are combined over ranks
            (``Distributed.reduce_record``) and the replicas checked for equality. ``None``: one process.
        epoch_end_hooks: called as ``hook(runner, record)`` after each epoch is logged (checkpoints).
        stop_requested: polled after every cycle and epoch; when it returns true, ``run`` returns early
            with ``stopped`` set, and ``state_dict`` holds everything needed to continue. With several ranks,
            a stop requested on any rank stops all of them after the same cycle.

    ``run`` raises ``DivergenceError`` after a cycle in which an update returned a NaN or inf loss or Q estimate
    (on any rank), or at the end of an epoch whose parameters hold NaN or inf: before that epoch is logged or
    any hook (checkpoint) runs.
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
        target_update_every: int | None = None,
        lr_decay_to: float | None = None,
        random_steps: int = 0,
        eval_episodes: int = 10,
        eval_every: int | None = None,
        overlap: bool | Literal["auto"] = "auto",
        seed: int = 0,
        device: str | torch.device = "cpu",
        logger: MetricsLogger | None = None,
        progress: bool = True,
        distributed: Distributed | None = None,
        epoch_end_hooks: list[EpochEndHook] | None = None,
        stop_requested: Callable[[], bool] | None = None,
    ) -> None:
        self.agent, self.buffer, self.train_env, self.eval_env = agent, buffer, train_env, eval_env
        if buffer.gamma != agent.gamma:
            raise ValueError(
                f"the buffer discounts with gamma={buffer.gamma} but the agent with gamma={agent.gamma}: "
                "build the buffer with the agent's gamma (its batches' discounts and n-step rewards use it)"
            )
        self.horizon = validation.positive_int("horizon", horizon)
        self.epochs = validation.positive_int("epochs", epochs)
        self.cycles_per_epoch = validation.positive_int("cycles_per_epoch", cycles_per_epoch)
        self.episodes_per_cycle = validation.positive_int("episodes_per_cycle", episodes_per_cycle)
        self.updates_per_cycle = validation.non_negative_int("updates_per_cycle", updates_per_cycle)
        every = validation.optional(validation.positive_int, "target_update_every", target_update_every)
        self.target_update_every = every
        self.lr_decay_to = validation.optional(validation.real_in_range, "lr_decay_to", lr_decay_to, 0, 1)
        self.random_steps = validation.non_negative_int("random_steps", random_steps)
        self.eval_episodes = validation.positive_int("eval_episodes", eval_episodes)
        self.eval_every = validation.optional(validation.positive_int, "eval_every", eval_every)
        if self.episodes_per_cycle % train_env.num_envs:
            raise validation.OptionError(
                "episodes_per_cycle", episodes_per_cycle, f"a multiple of num_envs={train_env.num_envs}"
            )
        if self.eval_episodes % eval_env.num_envs:
            raise validation.OptionError("eval_episodes", eval_episodes, f"a multiple of num_envs={eval_env.num_envs}")
        self.overlap = resolve_overlap(overlap, train_env, eval_env)
        self.keeps_average = agent.averaged_policy() is not None
        self.seed = seed
        self.to_device = BatchToDevice(device)
        self.rng = np.random.default_rng(seed)
        self.logger = logger
        self.progress = progress
        self.distributed = distributed if distributed is not None else Distributed()
        self.epoch_end_hooks = list(epoch_end_hooks or [])
        self.stop_requested = stop_requested
        self.env_steps = 0  # this rank's; metrics report all ranks' (reduce_record)
        self.updates = 0
        self.epoch = 0
        self.evaluations = 0  # the first one seeds the eval env
        self.partial = EpochProgress()
        self.last_record: dict[str, Any] = {}
        self.stopped = False
        self._wall_s_before = 0.0  # training wall time of earlier sessions of this run (resume)
        self._start: float | None = None

    def collecting_policy(self) -> ActingPolicy:
        """What the next training episodes act with: uniform random actions until ``random_steps`` env steps are
        collected, then a snapshot of the agent's policy (exploring)."""
        if self.env_steps < self.random_steps:
            return uniform_policy(self.train_env.single_action_space)
        return self.agent.acting_policy()

    def start_episodes(
        self, env: gym.vector.VectorEnv, policy: ActingPolicy, explore: bool, n_episodes: int, seed: int | None
    ) -> Callable[[], Rollout]:
        """Start ``n_episodes`` on ``env`` with ``policy``; returns the function that gives their ``Rollout``.

        With ``overlap`` the env's workers run them (``EpisodeWorker``), each exploring with a generator seeded
        by a draw from the runner's: they run while this process goes on. Otherwise they run here, exploring with
        the runner's generator itself, when the result is asked for."""
        if self.overlap:
            seeds = self.rng.integers(2**63, size=env.num_envs).tolist() if explore else None
            return start_in_workers(env, policy, explore, seeds, n_episodes, self.horizon, seed)

        def act(obs: np.ndarray, goal: np.ndarray) -> np.ndarray:
            return policy(obs, goal, explore, self.rng)

        return lambda: collect_episodes(env, act, n_episodes, self.horizon, seed)

    def start_collect(self) -> Callable[[], Rollout]:
        """Start this cycle's ``episodes_per_cycle`` exploring episodes; the function it returns waits for them,
        stores them and updates the normalizers."""
        first = self.env_steps == 0
        episodes = self.start_episodes(
            self.train_env, self.collecting_policy(), True, self.episodes_per_cycle, self.seed if first else None
        )

        def finish() -> Rollout:
            rollout = episodes()
            self.env_steps += self.episodes_per_cycle * self.horizon
            self.buffer.store(rollout.episodes)
            # Normalizer statistics come from relabeled samples of the new episodes, as the learner sees them.
            fresh = self.buffer.sample_episodes(rollout.episodes, self.episodes_per_cycle * self.horizon, self.rng)
            self.agent.update_normalizers(fresh.obs, fresh.goal)
            return rollout

        return finish

    def collect(self) -> Rollout:
        """Collect ``episodes_per_cycle`` exploring episodes, store them, update the normalizers."""
        return self.start_collect()()

    def draw_batches(self, n_updates: int) -> Transitions:
        """``n_updates`` batches from the buffer as it is now, drawn in one call (``sample_batches``) and moved to
        the device in one transfer: ``[n_updates * batch_size, ...]`` each."""
        return self.to_device(self.buffer.sample_batches(n_updates, self.rng))

    def learn_on(self, batches: Transitions | None, n_updates: int) -> list[dict[str, float]]:
        """``n_updates`` gradient updates on the consecutive batches of ``batches``, with target updates every
        ``target_update_every`` updates (``None``: one after the last)."""
        size = self.buffer.batch_size
        if self.lr_decay_to is not None and n_updates > 0:
            progress = self.updates / max(self.epochs * self.cycles_per_epoch * self.updates_per_cycle - 1, 1)
            self.agent.scale_learning_rates(1.0 - (1.0 - self.lr_decay_to) * min(progress, 1.0))
        stats: list[dict[str, float]] = []
        for i in range(n_updates):
            stats.append(self.agent.update(Transitions(*(x[i * size : (i + 1) * size] for x in batches))))
            if self.target_update_every is not None and (self.updates + i + 1) % self.target_update_every == 0:
                self.agent.update_targets()
        if self.target_update_every is None:
            self.agent.update_targets()
        return stats

    def learn(self, n_updates: int) -> list[dict[str, float]]:
        """``n_updates`` gradient updates on batches drawn now (``draw_batches``), with their target updates."""
        return self.learn_on(self.draw_batches(n_updates) if n_updates > 0 else None, n_updates)

    def train_cycle(self) -> tuple[Rollout, list[dict[str, float]], float, float]:
        """Collect then learn; returns the rollout, update stats and the two phases' seconds.

        With ``overlap`` (once the buffer holds episodes), the cycle's batches are drawn first, from the episodes
        of the cycles before; the env workers collect this cycle's episodes while the updates run; then the
        episodes are stored. The collection seconds are then those spent waiting for the workers after the
        updates."""
        t0 = time.perf_counter()
        if self.overlap and self.buffer.n_transitions > 0:
            n = self.updates_per_cycle
            batches = self.draw_batches(n) if n > 0 else None
            finish = self.start_collect()
            stats = self.learn_on(batches, n)
            t1 = time.perf_counter()
            rollout = finish()
            return rollout, stats, time.perf_counter() - t1, t1 - t0
        rollout = self.collect()
        t1 = time.perf_counter()
        stats = self.learn(self.updates_per_cycle)
        return rollout, stats, t1 - t0, time.perf_counter() - t1

    def evaluate(self) -> Rollout:
        """Deterministic episodes on the eval env."""
        seed = self.seed + 100_000 if self.evaluations == 0 else None
        return self.start_episodes(self.eval_env, self.agent.acting_policy(), False, self.eval_episodes, seed)()

    def evaluate_average(self) -> Rollout | None:
        """Deterministic episodes of the agent's Polyak-averaged actor, if it keeps one (``averaged_policy``)."""
        policy = self.agent.averaged_policy()
        return None if policy is None else self.start_episodes(self.eval_env, policy, False, self.eval_episodes, None)()

    def wall_s(self) -> float:
        """Training wall time of this run so far, over all sessions."""
        return self._wall_s_before + (time.perf_counter() - self._start if self._start is not None else 0.0)

    def _stop_requested_here(self) -> bool:
        return self.stop_requested is not None and self.stop_requested()

    def _should_stop(self) -> bool:
        (self.stopped,) = self.distributed.any_rank(self._stop_requested_here())
        return self.stopped

    def _check_cycle(self, stats: list[dict[str, float]], updates_before: int) -> bool:
        """After a cycle: raise ``DivergenceError`` if one of its updates returned a NaN or inf value on any
        rank; return whether a stop was requested on any rank. One collective answers both."""
        bad = first_non_finite_update(stats)
        self.stopped, diverged = self.distributed.any_rank(self._stop_requested_here(), bad is not None)
        if diverged:
            raise cycle_divergence(bad, self.epoch, updates_before, len(stats))
        return self.stopped

    def evaluates_now(self) -> bool:
        """Whether the epoch in progress ends with an evaluation (``eval_every``)."""
        if self.eval_every is None or self.epoch + 1 >= self.epochs:
            return True
        ranks = self.distributed.world_size
        return self.env_steps * ranks // self.eval_every > self.partial.steps_before * ranks // self.eval_every

    def _run_cycles(self, bar: tqdm) -> bool:
        """The remaining cycles of the epoch in progress; false if a stop was requested after one of them."""
        p = self.partial
        while p.cycles < self.cycles_per_epoch:
            cycle_start = time.perf_counter()
            rollout, cycle_stats, collect_s, update_s = self.train_cycle()
            stop = self._check_cycle(cycle_stats, self.updates)
            p.cycles += 1
            self.updates += len(cycle_stats)
            p.successes.extend(rollout.success.tolist())
            p.stats.extend(cycle_stats)
            p.collect_s, p.update_s = p.collect_s + collect_s, p.update_s + update_s
            p.elapsed_s += time.perf_counter() - cycle_start
            bar.update(1)
            if stop:
                return False
        return True

    def _end_epoch(self) -> dict[str, Any]:
        """Check the parameters, evaluate (``eval_every``), log the epoch's record, start the next epoch, call the
        hooks; returns the record."""
        check_parameters(self.agent.state_dict(), self.epoch, self.updates, "at the end of the epoch")
        eval_start = time.perf_counter()
        evaluation = self.evaluate() if self.evaluates_now() else None
        average = self.evaluate_average() if evaluation is not None else None
        self.evaluations += evaluation is not None
        eval_s = time.perf_counter() - eval_start if evaluation is not None else 0.0
        record = self.partial.record(
            epoch=self.epoch,
            env_steps=self.env_steps,
            updates=self.updates,
            wall_s=self.wall_s(),
            evaluation=evaluation,
            eval_s=eval_s,
            buffer_transitions=self.buffer.n_transitions,
        )
        record |= evaluation_metrics(average, "eval_avg") if self.keeps_average else {}
        record = self.distributed.reduce_record(record)
        self.distributed.periodic_check(self.epoch)
        self.epoch += 1
        self.partial = EpochProgress(steps_before=self.env_steps)
        self.last_record = record
        if self.logger is not None:
            self.logger.log_epoch(record)
        for hook in self.epoch_end_hooks:
            hook(self, record)
        return record

    def run(self) -> dict[str, Any]:
        """Train until ``epochs`` epochs are done (continuing a loaded state) or a stop is requested.

        Returns the last finished epoch's metrics (the same record as in metrics.jsonl; ``{}`` before the first).
        """
        self._start = time.perf_counter()
        total = self.epochs * self.cycles_per_epoch
        done = min(self.epoch * self.cycles_per_epoch + self.partial.cycles, total)
        bar = tqdm(total=total, initial=done, disable=not self.progress, desc="train", unit="cycle")
        try:
            while self.epoch < self.epochs and self._run_cycles(bar):
                record = self._end_epoch()
                postfix = {"train_success": f"{record['train_success_rate']:.2f}"}
                if record["eval_success_rate"] is not None:
                    postfix = {"eval_success": f"{record['eval_success_rate']:.2f}", **postfix}
                bar.set_postfix(postfix)
                if self.epoch < self.epochs and self._should_stop():
                    break
        finally:
            bar.close()
            self._wall_s_before, self._start = self.wall_s(), None
        return self.last_record

    # --- persistence ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Counters, generator states (runner, train and eval envs) and the epoch in progress.

        The agent and the buffer have their own ``state_dict``; together these resume the run exactly.
        """
        return {
            "epoch": self.epoch,
            "evaluations": self.evaluations,
            "env_steps": self.env_steps,
            "updates": self.updates,
            "wall_s": self.wall_s(),
            "rng": generator_state(self.rng),
            "train_env_rng": env_rng_states(self.train_env),
            "eval_env_rng": env_rng_states(self.eval_env),
            "partial_epoch": asdict(self.partial),
            "last_record": dict(self.last_record),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.evaluations = int(state.get("evaluations", self.epoch))  # checkpoints without it evaluated every epoch
        self.env_steps = int(state["env_steps"])
        self.updates = int(state["updates"])
        self._wall_s_before = float(state["wall_s"])
        self.rng = generator_from_state(state["rng"])
        set_env_rng_states(self.train_env, state["train_env_rng"])
        set_env_rng_states(self.eval_env, state["eval_env_rng"])
        self.partial = EpochProgress(**state["partial_epoch"])
        self.last_record = dict(state["last_record"])
        if self.distributed.rank > 0:
            # A checkpoint holds rank 0's generators (only rank 0 writes one): this rank continues with its own.
            self.rng = rank_generators(self.seed, self.env_steps, (self.train_env, self.eval_env))

    def close(self) -> None:
        """Close the logger, the envs and the process group (if any)."""
        if self.logger is not None:
            self.logger.close()
        self.train_env.close()
        self.eval_env.close()
        self.distributed.close()
