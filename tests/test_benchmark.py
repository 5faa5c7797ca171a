"""scripts/benchmark.py runs end to end at tiny sizes and writes every field (no timing thresholds)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_benchmark_quick_writes_positive_figures(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(ROOT / "scripts" / "benchmark.py"), "--quick", "--out", str(out),
           "--solve-env", "PointReach", "env=PointReach"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    for key in ("raw_env_steps_per_s", "collect_steps_per_s", "collect_ratio_to_raw", "runner_updates_per_s",
                "isolated_updates_per_s", "update_ratio",
                "parallel_collect_steps_per_s", "parallel_ratio_to_collect",
                "sampler_batches_per_s_256", "sampler_batches_per_s_1024", "sampler_batches_per_s_256_per_cycle",
                "sampler_cycle_batches",
                "peak_rss_mb", "torch_threads", "threads", "rss_full_mb", "rss_end_mb", "memory_cycles"):  # fmt: skip
        assert result[key] > 0, key
    assert len(result["rss_samples_mb"]) == 3  # full once, then overwritten twice (--quick)
    assert result["env"] == "PointReach-v0"
    assert "time_to_success_0.9_s" in result and result["solve_seeds"] == [0]
    assert len(result["time_to_success_env_steps"]) == 1
    assert "collect_steps_per_s" in proc.stdout  # the printed table
