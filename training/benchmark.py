"""How close training runs to this machine's limits, measured in one run; ``scripts/benchmark.py`` is the command
line, docs/performance.md lists the fields. The items: (1) raw env steps/s of one env with random actions; (2)
collection steps/s inside the runner, and with ``parallel`` async envs; (3) updates/s inside the runner and in
a bare loop, fp32 against bf16, ``agent.precision=auto``'s choice, and the FLOPs of the recipe; (4) relabel-sampler
batches/s from a full buffer; (5) seconds to eval success >= 0.9 of ``scripts/train.py`` per seed; (6) peak
memory and threads; (7) RSS over a long run whose small buffer is overwritten many times.

Rates are medians over alternating rounds and ratios medians of each round's own ratio, so that a slow spell of
the machine (10-40% on a shared VM) falls on both sides of a ratio. The machine (CPU model, instruction set,
native bf16, threads, GPU) is recorded with the results.
"""

from __future__ import annotations

import copy
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from agents.precision import bf16_native, cpu_model, update_flops
from envs import env_info, make_env
from her import HerReplayBuffer, Transitions
from training.build import build_runner, env_options, vectorization
from training.options import CONFIG_DIR
from training.runner import Runner

ROOT = Path(__file__).resolve().parent.parent  # the repository: scripts/ beside this package
PRECISIONS = ("fp32", "bf16")  # the precisions item 3 times side by side


def load_config(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def raw_episode_seconds(env: gym.Env, actions: np.ndarray) -> float:
    """Seconds for one episode on ``env``: a reset, then one step per row of ``actions`` ``[T, a]``."""
    start = time.perf_counter()
    env.reset()
    for action in actions:
        env.step(action)
    return time.perf_counter() - start


def collect_seconds(runner: Runner) -> float:
    """Seconds of one ``runner.collect()`` (collection, storing, normalizer update)."""
    start = time.perf_counter()
    runner.collect()
    return time.perf_counter() - start


def prepared_runner(cfg: DictConfig, warmup_collects: int = 1) -> Runner:
    """A runner on ``cfg`` that collects one episode per env per ``collect``, after ``warmup_collects``
    untimed collections (first reset, first stores)."""
    runner, _ = build_runner(cfg, run_dir=None)
    runner.progress = False
    runner.episodes_per_cycle = runner.train_env.num_envs
    for _ in range(warmup_collects):
        runner.collect()
    return runner


def env_rates(cfg: DictConfig, parallel_cfg: DictConfig, rounds: int) -> dict[str, float]:
    """Items 1 and 2: raw, runner and parallel-runner collection rates (env steps/s) and their ratios.

    Each of ``rounds`` rounds times one episode per env of each, back to back, so that the three figures of a
    round share the machine's state of that second (on a shared VM the raw rate moves 10-20% from minute to
    minute). Rates are medians over rounds; ratios are medians of the rounds' own ratios.
    """
    runners = {"collect": prepared_runner(cfg), "parallel": prepared_runner(parallel_cfg)}
    env = make_env(cfg.env.id, **env_options(cfg))
    env.reset(seed=0)
    horizon = env_info(env).horizon
    rng = np.random.default_rng(0)
    rates: dict[str, list[float]] = {"raw": [], "collect": [], "parallel": []}
    for _ in range(rounds):
        actions = rng.uniform(-1, 1, (horizon, env.action_space.shape[0])).astype(np.float32)
        rates["raw"].append(horizon / raw_episode_seconds(env, actions))
        for name, runner in runners.items():
            rates[name].append(runner.episodes_per_cycle * horizon / collect_seconds(runner))
    env.close()
    for runner in runners.values():
        runner.close()
    raw, collect, parallel = (np.array(rates[k]) for k in ("raw", "collect", "parallel"))
    return {
        "raw": float(np.median(raw)),
        "collect": float(np.median(collect)),
        "parallel": float(np.median(parallel)),
        "collect_ratio": float(np.median(collect / raw)),
        "parallel_ratio": float(np.median(parallel / collect)),
    }


def update_rates(cfg: DictConfig, rounds: int, n: int) -> tuple[float, float, float, Runner]:
    """Item 3: (runner updates/s, isolated updates/s, ratio, runner), from ``rounds`` alternating rounds of
    ``n`` updates each: the runner's ``learn`` (sampling, relabeling, transfer, update) and the same update
    on one fixed batch in a bare loop. Rates are medians over rounds, the ratio the median of the rounds'."""
    runner = prepared_runner(cfg, warmup_collects=20)
    agent = runner.agent
    fixed = runner.to_device(runner.buffer.sample(runner.buffer.batch_size, runner.rng))
    runner.learn(10)  # warm-up
    for _ in range(10):
        agent.update(fixed)
    in_runner, isolated = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        runner.learn(n)
        in_runner.append(n / (time.perf_counter() - start))
        start = time.perf_counter()
        for _ in range(n):
            agent.update(fixed)
        isolated.append(n / (time.perf_counter() - start))
    ratio = float(np.median(np.array(in_runner) / np.array(isolated)))
    return float(np.median(in_runner)), float(np.median(isolated)), ratio, runner


def precision_rates(runner: Runner, rounds: int, n: int) -> dict[str, float]:
    """Item 3, precision: isolated updates/s of copies of ``runner.agent`` with ``precision`` fp32 and bf16 on
    one fixed batch of its batch size, in ``rounds`` alternating rounds of ``n`` updates (medians), and the
    median of the rounds' bf16/fp32 ratios."""
    fixed = runner.to_device(runner.buffer.sample(runner.buffer.batch_size, runner.rng))
    agents = {}
    for precision in PRECISIONS:
        agents[precision] = copy.deepcopy(runner.agent)
        agents[precision].precision = precision
        for _ in range(3):  # warm-up (oneDNN picks its kernels on the first calls)
            agents[precision].update(fixed)
    rates: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    for _ in range(rounds):
        for precision, agent in agents.items():
            start = time.perf_counter()
            for _ in range(n):
                agent.update(fixed)
            rates[precision].append(n / (time.perf_counter() - start))
    return {
        "fp32": float(np.median(rates["fp32"])),
        "bf16": float(np.median(rates["bf16"])),
        "ratio": float(np.median(np.array(rates["bf16"]) / np.array(rates["fp32"]))),
    }


def machine(device: torch.device) -> dict[str, Any]:
    """What the update rates depend on: CPU model, the ISA torch's CPU kernels use, native bf16, threads."""
    name, flags = cpu_model()
    info: dict[str, Any] = {
        "cpu_model": name,
        "cpu_isa_flags": flags,
        "cpu_count": os.cpu_count(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "bf16_native": bf16_native(device),
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def update_costs(cfg: DictConfig, runner: Runner, results: dict[str, Any]) -> None:
    """Add the FLOPs of one update and of ``cfg``'s recipe per env step, and each update rate as GFLOP/s."""
    batch = runner.buffer.batch_size
    flops = update_flops(runner.agent, batch)
    samples_per_env_step = batch * cfg.runner.updates_per_cycle / (cfg.runner.episodes_per_cycle * runner.horizon)
    results["update_mflop_per_sample"] = flops / batch / 1e6
    results["samples_per_env_step"] = samples_per_env_step
    results["update_gflop_per_env_step"] = flops / batch * samples_per_env_step / 1e9
    for key in ("runner_updates_per_s", "isolated_updates_per_s", "fp32_updates_per_s", "bf16_updates_per_s"):
        if key in results:
            results[key.replace("updates_per_s", "gflop_per_s")] = results[key] * flops / 1e9


def full_buffer(env_id: str, size: int, kwargs: dict[str, Any] | None = None) -> HerReplayBuffer:
    """A ``size``-transition HER buffer of the shapes of ``env_id`` (made with ``kwargs``), filled with random
    contents."""
    info = env_info(make_env(env_id, **(kwargs or {})))
    buf = HerReplayBuffer(size, info.horizon, info.obs_dim, info.goal_dim, info.action_dim, info.compute_reward)
    rng = np.random.default_rng(0)
    n_eps = buf.storage.capacity
    chunk = 1000
    for i in range(0, n_eps, chunk):
        k = min(chunk, n_eps - i)
        buf.store({name: rng.random((k, *arr.shape[1:]), dtype=np.float32) for name, arr in buf.storage.data.items()})
    assert buf.n_transitions == n_eps * info.horizon
    return buf


def sampler_rates(
    buf: HerReplayBuffer, draws: list[tuple[int, int]], windows: int, seconds: float
) -> dict[tuple[int, int], float]:
    """Item 4: relabel-sampler batches/s for each ``(batch_size, batches_per_call)`` of ``draws``: a call
    samples ``batches_per_call * batch_size`` transitions at once, as ``Runner.learn`` draws a cycle's batches.
    Each rate is the median of ``windows`` timing windows of ``seconds``, taken in turn for each draw."""
    rng = np.random.default_rng(0)
    rates: dict[tuple[int, int], list[float]] = {d: [] for d in draws}
    for _ in range(windows):
        for size, per_call in draws:
            count, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                batch: Transitions = buf.sample(size * per_call, rng)
                count += per_call
            rates[(size, per_call)].append(count / (time.perf_counter() - start))
            assert batch.obs.shape[0] == size * per_call
    return {d: float(np.median(r)) for d, r in rates.items()}


def time_to_success(overrides: list[str], threshold: float, timeout: float) -> dict[str, Any]:
    """Run ``scripts/train.py`` and watch its metrics.jsonl: seconds from process start until the first
    evaluation with success >= ``threshold`` (``None`` if it never gets there)."""
    with tempfile.TemporaryDirectory() as tmp:
        metrics = Path(tmp) / "metrics.jsonl"
        cmd = [sys.executable, str(ROOT / "scripts" / "train.py"), *overrides, "progress=false",
               f"hydra.run.dir={tmp}"]  # fmt: skip
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        reached, seen = None, 0
        while time.perf_counter() - start < timeout:
            if metrics.exists():
                records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
                for r in records[seen:]:
                    success = r["eval_success_rate"]
                    if reached is None and success is not None and success >= threshold:
                        reached = {"seconds": time.perf_counter() - start, **r}
                seen = len(records)
            if reached is not None or proc.poll() is not None:
                break
            time.sleep(0.02)
        proc.kill()
        _, err = proc.communicate()
        if reached is None and proc.returncode not in (0, -9):
            raise RuntimeError(f"train.py failed: {err[-2000:]}")
        if reached is None:
            return {"seconds": None, "env_steps": None, "updates": None}
        return {"seconds": reached["seconds"], "env_steps": reached["env_steps"], "updates": reached["updates"]}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """This process's resident memory now, in MiB (Linux ``/proc``; elsewhere the peak so far)."""
    try:
        resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    except OSError:
        return peak_rss_mb()
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory_over_wraps(cfg: DictConfig, wraps: int) -> dict[str, Any]:
    """Item 7: train on ``cfg`` (its buffer small) until the buffer has been filled once and then overwritten
    ``wraps`` times, taking the RSS each time it is full again. Returns the RSS when first full, at the end,
    the growth between them and every sample."""
    runner, _ = build_runner(cfg, run_dir=None)
    runner.progress = False
    capacity = runner.buffer.storage.capacity
    cycles_per_fill = max(1, capacity // runner.episodes_per_cycle)
    samples: list[float] = []
    for cycle in range(cycles_per_fill * (wraps + 1)):
        runner.train_cycle()
        if (cycle + 1) % cycles_per_fill == 0:
            samples.append(rss_mb())
    assert runner.buffer.storage.n_stored_total >= capacity * (wraps + 1)
    runner.close()
    return {
        "memory_buffer_episodes": capacity,
        "memory_wraps": wraps,
        "memory_cycles": cycles_per_fill * (wraps + 1),
        "rss_full_mb": samples[0],
        "rss_end_mb": samples[-1],
        "rss_growth_after_full_mb": samples[-1] - samples[0],
        "rss_samples_mb": [round(x, 1) for x in samples],
    }


def measure_updates(cfg: DictConfig, quick: bool, results: dict[str, Any]) -> None:
    """Item 3 into ``results``: the machine, update rates in and outside the runner, fp32 against bf16,
    ``agent.precision``'s choice (``auto``: by the start-up probe), and the rates as GFLOP/s."""
    in_runner, isolated, update_ratio, runner = update_rates(cfg, 1 if quick else 10, 5 if quick else 20)
    results.update(machine(runner.agent.device))
    results["runner_updates_per_s"] = in_runner
    results["isolated_updates_per_s"] = isolated
    results["update_ratio"] = update_ratio
    results["batch_size"] = runner.buffer.batch_size
    results["precision"] = runner.agent.precision
    probe = cfg.get("precision_probe") or {}
    results["precision_probe_s"] = probe.get("probe_s")
    precision = precision_rates(runner, 1 if quick else 10, 5 if quick else 20)
    results["fp32_updates_per_s"] = precision["fp32"]
    results["bf16_updates_per_s"] = precision["bf16"]
    results["bf16_to_fp32_ratio"] = precision["ratio"]
    faster = max(PRECISIONS, key=lambda p: precision[p])
    results["chosen_to_faster_ratio"] = precision[str(runner.agent.precision)] / precision[faster]
    update_costs(cfg, runner, results)
    results["threads"] = threading.active_count()
    runner.close()


@dataclass(frozen=True)
class BenchmarkOptions:
    """What to measure and at which sizes (``scripts/benchmark.py``'s flags)."""

    quick: bool = False  # tiny sizes: a smoke run, not a measurement
    skip_solve: bool = False  # skip the time-to-success runs (item 5)
    solve_env: str = "FetchReach"
    solve_seeds: tuple[int, ...] = (0,)
    sampler_size: int = 1_000_000  # buffer transitions for item 4
    parallel: int = 2  # async envs for the parallel collection rate
    rounds: int = 40  # alternating one-episode rounds of items 1 and 2
    memory_buffer: int = 1000  # buffer transitions for item 7
    memory_wraps: int = 50
    memory_only: bool = False
    update_only: bool = False


def run_benchmark(overrides: list[str], options: BenchmarkOptions) -> dict[str, Any]:
    """Measure what ``options`` selects on the config of ``scripts/train.py`` with ``overrides``; returns the
    results (the fields of docs/performance.md)."""
    cfg = load_config(overrides + ["logger.tensorboard=false", "progress=false"])
    quick = options.quick
    env_id = cfg.env.id
    results: dict[str, Any] = {
        "env": env_id,
        "overrides": overrides,
        "num_envs": int(cfg.env.num_envs),
        "vectorization": vectorization(cfg),
        "device": str(cfg.device),
        "torch": torch.__version__,
    }
    if options.update_only:
        measure_updates(cfg, quick, results)
        return results

    # --quick: two episodes of 50 steps in the buffer (batches of at most those 100 transitions), 2 updates a cycle
    quick_memory = ["buffer.size=100", "buffer.batch_size=100", "runner.updates_per_cycle=2"]
    memory = quick_memory if quick else [f"buffer.size={options.memory_buffer}"]
    memory_cfg = load_config(overrides + memory + ["logger.tensorboard=false"])
    results.update(memory_over_wraps(memory_cfg, 2 if quick else options.memory_wraps))
    if options.memory_only:
        return results

    n = options.parallel  # episode counts must be multiples of the envs
    parallel_overrides = [f"env.num_envs={n}", "env.vectorization=async", f"runner.episodes_per_cycle={n}",
                          f"runner.eval_episodes={n}"]  # fmt: skip
    parallel_cfg = load_config(overrides + parallel_overrides + ["logger.tensorboard=false", "progress=false"])
    rates = env_rates(cfg, parallel_cfg, 2 if quick else options.rounds)
    results["raw_env_steps_per_s"] = rates["raw"]
    results["collect_steps_per_s"] = rates["collect"]
    results["collect_ratio_to_raw"] = rates["collect_ratio"]
    results["parallel_num_envs"] = options.parallel
    results["parallel_collect_steps_per_s"] = rates["parallel"]
    results["parallel_ratio_to_collect"] = rates["parallel_ratio"]
    measure_updates(cfg, quick, results)

    size = 20_000 if quick else options.sampler_size
    results["sampler_buffer_transitions"] = size
    per_cycle = max(1, int(cfg.runner.updates_per_cycle))
    draws = [(256, 1), (1024, 1), (256, per_cycle)]
    batch_rates = sampler_rates(full_buffer(env_id, size, env_options(cfg)), draws, 2 if quick else 20, 0.1)
    results["sampler_batches_per_s_256"] = batch_rates[(256, 1)]
    results["sampler_batches_per_s_1024"] = batch_rates[(1024, 1)]
    results["sampler_cycle_batches"] = per_cycle
    results["sampler_batches_per_s_256_per_cycle"] = batch_rates[(256, per_cycle)]
    results["peak_rss_mb"] = peak_rss_mb()

    if not options.skip_solve:
        solve = [f"env={options.solve_env}"] + (["runner.epochs=1", "runner.cycles_per_epoch=1"] if quick else [])
        runs = [time_to_success([*solve, f"seed={seed}"], 0.9, 60 if quick else 300) for seed in options.solve_seeds]
        results["solve_env"] = options.solve_env
        results["solve_seeds"] = list(options.solve_seeds)
        for key in ("seconds", "env_steps", "updates"):
            results[f"time_to_success_{key}"] = [run[key] for run in runs]
        seconds = [run["seconds"] for run in runs]
        results["time_to_success_0.9_s"] = None if None in seconds else max(seconds)
    return results


def write_results(results: dict[str, Any], out: str) -> None:
    """Write ``results`` as JSON to ``out`` and print them as a table."""
    Path(out).write_text(json.dumps(results, indent=2) + "\n")
    width = max(len(k) for k in results)
    for k, v in results.items():
        print(f"{k:<{width}}  {v:.3f}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    print(f"-> {out}")
