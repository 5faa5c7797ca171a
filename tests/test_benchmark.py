"""scripts/benchmark.py (training.benchmark) runs end to end at tiny sizes, writes every field (no timing
thresholds) and the ones its config fixes; its time-to-success watcher finds the first evaluation at the threshold."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import compose_config

from training.build import torch_threads, vectorization

ROOT = Path(__file__).resolve().parent.parent


def test_benchmark_quick_writes_positive_figures_and_the_configured_sizes(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(ROOT / "scripts" / "benchmark.py"), "--quick", "--out", str(out),
           "--solve-env", "PointReach", "env=PointReach"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    for key in ("raw_env_steps_per_s", "collect_steps_per_s", "collect_ratio_to_raw", "runner_updates_per_s",
                "isolated_updates_per_s", "update_ratio",
                "parallel_collect_steps_per_s", "parallel_ratio_to_collect",
                "sampler_batches_per_s_256", "sampler_batches_per_s_1024", "sampler_batches_per_s_256_per_cycle",
                "sampler_cycle_batches", "fp32_updates_per_s", "bf16_updates_per_s", "bf16_to_fp32_ratio",
                "peak_rss_mb", "threads", "rss_full_mb", "rss_end_mb", "memory_cycles", "update_mflop_per_sample",
                "update_gflop_per_env_step", "runner_gflop_per_s", "fp32_gflop_per_s", "bf16_gflop_per_s",
                "chosen_to_faster_ratio"):  # fmt: skip
        assert result[key] > 0, key
    assert len(result["rss_samples_mb"]) == 3  # full once, then overwritten twice (--quick)
    # fixed by the config (configs/env/PointReach.yaml) and the options
    assert result["env"] == "PointReach-v0" and result["overrides"] == ["env=PointReach"]
    expected = vectorization(compose_config("env=PointReach"))  # async with an env worker on 2 or more cores
    assert (result["num_envs"], result["vectorization"], result["device"]) == (1, expected, "cpu")
    assert result["batch_size"] == 128 and result["sampler_cycle_batches"] == 20  # runner.updates_per_cycle
    assert result["precision"] in ("fp32", "bf16")  # agent.precision=auto's choice
    assert result["samples_per_env_step"] == 128 * 20 / 50  # batch x updates per cycle / env steps per cycle
    gflop = result["runner_gflop_per_s"] / result["runner_updates_per_s"]
    assert gflop == pytest.approx(result["update_mflop_per_sample"] * 128 / 1e3)
    assert result["cpu_model"] and isinstance(result["bf16_native"], bool) and result["torch_cpu_capability"]
    assert result["parallel_num_envs"] == 2 and result["sampler_buffer_transitions"] == 20_000  # --quick
    assert result["torch_threads"] == torch_threads(None, 1, expected)  # the cores the env worker leaves
    assert result["cpu_count"] == os.cpu_count()
    assert result["solve_env"] == "PointReach" and result["solve_seeds"] == [0]
    assert len(result["time_to_success_env_steps"]) == 1 and "time_to_success_0.9_s" in result
    assert "collect_steps_per_s" in proc.stdout  # the printed table


def test_time_to_success_is_the_first_evaluation_at_the_threshold():
    from training.benchmark import time_to_success

    overrides = ["env=PointReach", "runner.epochs=3", "runner.cycles_per_epoch=1", "runner.updates_per_cycle=2",
                 "runner.eval_episodes=2", "torch_threads=1", "logger.tensorboard=false"]  # fmt: skip
    reached = time_to_success(overrides, 0.0, 600)  # every evaluation is at or above 0: the first one counts
    assert reached["env_steps"] == 50 and reached["updates"] == 2 and reached["seconds"] > 0
