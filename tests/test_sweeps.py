"""Sweeps through Hydra's launchers and the Optuna sweeper, with the summary printed at the end."""

from __future__ import annotations

import json

import yaml
from summarize import collect, format_table, summary
from test_cli import TINY, run_train


def test_joblib_sweep_runs_jobs_in_parallel_processes_and_prints_a_summary(tmp_path):
    proc = run_train(
        "-m", "seed=0,1", "env=PointReach", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "torch_threads=1",
        *TINY, f"hydra.sweep.dir={tmp_path}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    jobs = sorted(p.parent.name for p in tmp_path.glob("*/metrics.jsonl"))
    assert jobs == ["0_PointReach_seed0", "1_PointReach_seed1"]
    assert f"sweep {tmp_path}: 2 jobs" in proc.stdout
    assert "| 0_PointReach_seed0 | seed=0 | 1 | 400 |" in proc.stdout  # final epoch, env steps


def test_optuna_sweep_reports_the_best_config(tmp_path):
    proc = run_train(
        "hparams_search=point_optuna", "hydra.sweeper.n_trials=2", "torch_threads=1", "logger.tensorboard=false",
        *TINY, f"hydra.sweep.dir={tmp_path}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    results = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert set(results["best_params"]) == {"agent.lr_actor", "agent.lr_critic", "agent.action_l2", "agent.polyak"}
    assert 0.0 <= results["best_value"] <= 1.0
    assert len(collect(tmp_path)) == 2
    assert "best (optuna): value" in proc.stdout


def test_summary_table_shows_varying_overrides_and_unfinished_jobs(tmp_path):
    for num, seed, record in ((0, 0, {"epoch": 1, "env_steps": 400, "eval_success_rate": 0.5}), (1, 1, None)):
        job = tmp_path / f"{num}_PointReach_seed{seed}"
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"seed={seed}", "env=PointReach"]))
        if record is not None:
            (job / "metrics.jsonl").write_text(json.dumps(record) + "\n")
    table = format_table(collect(tmp_path), columns=("epoch", "env_steps", "eval_success_rate"))
    assert table.splitlines()[2] == "| 0_PointReach_seed0 | seed=0 | 1 | 400 | 0.500 |"
    assert "| 1_PointReach_seed1 | seed=1 | no metrics.jsonl (failed or unfinished)" in table
    assert summary(tmp_path / "missing") == f"no jobs under {tmp_path / 'missing'}"
