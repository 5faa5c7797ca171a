"""Sweeps through Hydra's launchers and the Optuna sweeper, with the summary printed at the end."""

from __future__ import annotations

import json
import os

import pytest
import yaml
from helpers.train_cli import ROOT, TINY, run_train

from training.sweep import collect, format_table, record_failure, summary

HELPERS = str(ROOT / "tests" / "helpers")


@pytest.mark.slow
def test_joblib_sweep_runs_jobs_in_parallel_processes_and_prints_a_summary(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [HELPERS, os.environ.get("PYTHONPATH")]))}
    proc = run_train(
        "-m", "seed=0,1,-1", "env=PointReach", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "torch_threads=1",
        "+hydra.callbacks.job_process._target_=job_process.JobProcess", *TINY, f"hydra.sweep.dir={tmp_path}",
        env=env,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr  # the failed job's exit status, after the others finished
    jobs = sorted(p.parent.name for p in tmp_path.glob("*/metrics.jsonl"))
    assert jobs == ["0_PointReach_seed0", "1_PointReach_seed1"]
    assert f"sweep {tmp_path}: 3 jobs" in proc.stdout
    assert "| 0_PointReach_seed0 | seed=0 | 1 | 400 |" in proc.stdout  # final epoch, env steps
    assert "| 2_PointReach_seed-1 | seed=-1 | failed (exit 2) |" in proc.stdout
    assert "error: 1 job(s) of the sweep failed: 2_PointReach_seed-1" in proc.stderr
    # each job ran in a worker process of its own, and the two ran at the same time
    a, b = (json.loads((tmp_path / job / "job_process.json").read_text()) for job in jobs)
    assert len({a["pid"], b["pid"], os.getpid()}) == 3
    assert a["start"] < b["end"] and b["start"] < a["end"], (a, b)


def test_a_sweep_with_a_failing_job_finishes_the_others_and_names_it_in_the_summary(tmp_path):
    proc = run_train("-m", "seed=-1,0", "env=PointReach", "torch_threads=1", *TINY, f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 2, proc.stderr
    assert "error: seed=-1 is invalid: expected an integer >= 0" in proc.stderr and "Traceback" not in proc.stderr
    assert f"sweep {tmp_path}: 2 jobs" in proc.stdout
    assert "| 0_PointReach_seed-1 | seed=-1 | failed (exit 2) |" in proc.stdout
    assert "| 1_PointReach_seed0 | seed=0 | 1 | 400 |" in proc.stdout  # ran after the failed job
    assert "failed: 0_PointReach_seed-1: seed=-1 is invalid: expected an integer >= 0" in proc.stdout
    assert proc.stderr.strip().endswith("error: 1 job(s) of the sweep failed: 0_PointReach_seed-1")


@pytest.mark.slow
def test_optuna_sweep_reports_the_best_config(tmp_path):
    proc = run_train(
        "hparams_search=point_optuna", "hydra.sweeper.n_trials=2", "torch_threads=1", "logger.tensorboard=false",
        *TINY, f"hydra.sweep.dir={tmp_path}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    results = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert set(results["best_params"]) == {"agent.lr_actor", "agent.lr_critic", "agent.action_l2", "agent.polyak"}
    jobs = collect(tmp_path)
    assert len(jobs) == 2 and all(job.final is not None for job in jobs)
    # the best value is the best trial's final eval success rate, and the best params are that trial's
    assert results["best_value"] == max(job.final["eval_success_rate"] for job in jobs)
    best = [job for job in jobs if job.final["eval_success_rate"] == results["best_value"]]
    chosen = [dict(o.split("=", 1) for o in job.overrides) for job in best]
    assert any(all(o.get(k) == str(v) for k, v in results["best_params"].items()) for o in chosen), (results, chosen)
    assert f"best (optuna): value {results['best_value']}" in proc.stdout


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
    record_failure(tmp_path, "2_PointReach_seed2", ["seed=2", "env=PointReach"], 2, "run dir ... is in use by ...")
    results = collect(tmp_path)  # a failed job that wrote no Hydra files is listed from its record
    assert [(r.path.name, r.status) for r in results] == [("0_PointReach_seed0", None), ("1_PointReach_seed1", None),
                                                          ("2_PointReach_seed2", 2)]  # fmt: skip
    assert "| 2_PointReach_seed2 | seed=2 | failed (exit 2) |" in format_table(results)


def test_the_summary_lists_the_jobs_of_a_grid_sweep_that_have_not_started(tmp_path):
    # the sweep's last start: the suite's grid of agents x seeds, the command line's seed=0,1 replacing its seeds
    sweeper = {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
               "params": {"agent": "ddpg,td3", "seed": "0,1,2"}}  # fmt: skip
    task = ["suite=point", "seed=0,1", "runner.epochs=3"]
    (tmp_path / "multirun.yaml").write_text(
        yaml.safe_dump({"hydra": {"sweeper": sweeper, "overrides": {"task": task}}})
    )
    job = tmp_path / "ddpg_seed1"  # one job training, one failed before it wrote its Hydra files, two waiting
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(
        yaml.safe_dump(["agent=ddpg", "seed=1", "suite=point", "runner.epochs=3"])
    )
    (job / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "env_steps": 100}) + "\n")
    record_failure(tmp_path, "td3_seed0", ["agent=td3", "seed=0", "suite=point", "runner.epochs=3"], 2, "in use")
    results = collect(tmp_path)
    assert [(r.path.name, r.started, r.status) for r in results] == [
        ("ddpg_seed1", True, None),
        ("td3_seed0", True, 2),
        (tmp_path.name, False, None),
        (tmp_path.name, False, None),
    ]
    assert [r.overrides for r in results if not r.started] == [
        ("agent=ddpg", "seed=0", "suite=point", "runner.epochs=3"),
        ("agent=td3", "seed=1", "suite=point", "runner.epochs=3"),
    ]
    text = summary(tmp_path)
    assert text.startswith(f"sweep {tmp_path}: 4 jobs, 2 not started\n")
    assert "| ddpg_seed1 | agent=ddpg seed=1 | 1 | 100 |" in text
    assert "| - | agent=ddpg seed=0 | not started |" in text and "| - | agent=td3 seed=1 | not started |" in text
    # an Optuna sweep's trials are not known ahead: only the jobs that have dirs are rows
    sweeper["_target_"] = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    (tmp_path / "multirun.yaml").write_text(
        yaml.safe_dump({"hydra": {"sweeper": sweeper, "overrides": {"task": task}}})
    )
    assert [r.started for r in collect(tmp_path)] == [True, True]
