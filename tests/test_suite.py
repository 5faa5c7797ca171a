"""One command for a suite of runs (``configs/suite/``, ``resume=auto``): started again with the same arguments after
a Ctrl-C or a kill, a sweep keeps its finished runs, resumes its stopped ones exactly and starts the others, and
its summary covers them all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import CONFIG_DIR, ROOT, compose_config
from helpers.stopped_runs import without_timing
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from training import checkpoint
from training.cli import train
from training.metrics import read_records
from training.sweep import FAILURES, SweepSummary, record_failure
from training.sweep_stop import STOP_FILE, SweepStop, request_stop, stop_requested

HELPERS = str(ROOT / "tests" / "helpers")
# Each job: 3 epochs of 2 cycles of one 50-step episode (300 env steps), 5 updates per cycle.
BUDGET = (
    "runner.epochs=3",
    "runner.cycles_per_epoch=2",
    "runner.updates_per_cycle=5",
    "runner.eval_episodes=2",
    "buffer.batch_size=32",
    "agent.precision=fp32",  # runs compared with each other train in one precision
    "logger.tensorboard=false",
)
JOBS = ("ddpg_seed0", "ddpg_seed1", "td3_seed0", "td3_seed1")  # the launch order of agent=ddpg,td3 seed=0,1


def files(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``directory`` but the lock file, by relative path: its bytes and modification time."""
    return {
        str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def epochs_done(run_dir: Path) -> int:
    return checkpoint.load(run_dir / "checkpoints" / "last.pt")["counters"]["epoch"]


class Suite:
    """``python scripts/train.py suite=point`` over DDPG and TD3 on seeds 0 and 1 with ``BUDGET``, two jobs at a
    time (joblib), into ``sweep``; each start with the same arguments, its jobs held as ``hold`` says
    (tests/helpers/hold_job.py)."""

    def __init__(self, tmp_path: Path) -> None:
        self.sweep, self.markers = tmp_path / "sweep", tmp_path / "markers"
        self.markers.mkdir()
        self.args = [
            "suite=point", "agent=ddpg,td3", "seed=0,1", f"hydra.sweep.dir={self.sweep}", "hydra.launcher.n_jobs=2",
            *BUDGET, "+hydra.callbacks.hold_job._target_=hold_job.HoldJob",
        ]  # fmt: skip

    def start(self, hold: str = "") -> subprocess.Popen:
        for marker in self.markers.iterdir():
            marker.unlink()
        path = os.pathsep.join(filter(None, [HELPERS, os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": path, "HOLD_JOBS": hold, "HOLD_MARKERS": str(self.markers)}
        return subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "train.py"), *self.args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group, the joblib workers in it: killed together
        )

    def wait_until_held(self, proc: subprocess.Popen, *jobs: str) -> None:
        deadline = time.monotonic() + 300
        while not all((self.markers / job).exists() for job in jobs):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"jobs {jobs} never held"
            time.sleep(0.05)

    def job(self, name: str) -> Path:
        return self.sweep / name


@pytest.mark.slow
def test_a_suite_stopped_and_killed_continues_with_the_same_command(tmp_path):
    suite = Suite(tmp_path)
    # 1. Ctrl-C (SIGINT to the process group, as from a terminal) while the DDPG jobs are in their second epoch:
    # they stop after their cycle with a checkpoint, the TD3 jobs do not start, and the sweep waits for its jobs.
    proc = suite.start(hold="ddpg_seed0:stop1,ddpg_seed1:stop1")
    suite.wait_until_held(proc, "ddpg_seed0", "ddpg_seed1")
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "SIGINT: the sweep stops: its running jobs stop after their cycle" in err and "Traceback" not in err
    assert out.strip().endswith("stopped: start the same command again to continue")
    assert [epochs_done(suite.job(j)) for j in JOBS[:2]] == [1, 1]
    for job in JOBS[2:]:
        assert f"not started: the sweep is stopping ({suite.sweep / STOP_FILE}) -> {suite.job(job)}" in out
        assert not (suite.job(job) / "metrics.jsonl").exists()

    # 2. SIGKILL of the process group with ddpg_seed0 finished, ddpg_seed1 after its second epoch, td3_seed0 just
    # started (its dir made, nothing in it) and td3_seed1 never started.
    proc = suite.start(hold="ddpg_seed1:kill2,td3_seed0:start")
    suite.wait_until_held(proc, "ddpg_seed1", "td3_seed0")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert (suite.job("ddpg_seed0") / "policy.pt").exists() and epochs_done(suite.job("ddpg_seed1")) == 2
    assert list(suite.job("td3_seed0").iterdir()) == [] and not (suite.job("td3_seed1") / "metrics.jsonl").exists()
    finished = files(suite.job("ddpg_seed0"))

    # 3. The same command again: it keeps ddpg_seed0, resumes ddpg_seed1 and starts the TD3 jobs.
    proc = suite.start()
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert f"resume=auto: kept the finished run in {suite.job('ddpg_seed0')}: epoch 2 env_steps 300" in out
    assert f"resume=auto: resuming the run in {suite.job('ddpg_seed1')} after its epoch 2" in out
    for job in JOBS[2:]:
        assert f"resume=auto: {suite.job(job)} holds no run: starting one" in out
    assert files(suite.job("ddpg_seed0")) == finished  # not trained again: every file as it was, untouched
    for seed in (0, 1):  # each resumed exactly: the metrics of a run done in one go
        reference = tmp_path / f"reference{seed}"
        train(compose_config("suite=point", "agent=ddpg", f"seed={seed}", *BUDGET, "resume=null"), reference)
        assert without_timing(suite.job(f"ddpg_seed{seed}")) == without_timing(reference)
    assert [len(list((suite.job(j) / ".hydra").glob("resume_*"))) for j in JOBS] == [1, 2, 0, 0]
    for job in JOBS[2:]:
        assert [r["epoch"] for r in read_records(suite.job(job) / "metrics.jsonl")] == [0, 1, 2]
        config = OmegaConf.load(suite.job(job) / ".hydra" / "config.yaml")  # what the new run trained with
        assert config.resume is None and config.precision_probe.chosen == "fp32"
    assert f"sweep {suite.sweep}: 4 jobs" in out  # the summary covers every job, the kept one too
    for job in JOBS:
        agent, seed = job.split("_seed")
        assert f"| {job} | agent={agent} seed={seed} | 2 | 300 | 1 |" in out
    assert not (suite.sweep / STOP_FILE).exists()


# --- the suite configs and a new start of a sweep -------------------------------------------------------------
def compose_with_hydra(*overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides), return_hydra_config=True)


def test_the_fetch_suite_sweeps_the_presets_over_five_seeds_into_dirs_named_from_them():
    cfg = compose_with_hydra("suite=fetch", "experiment=fetch_slide", "seed=3")  # what one of its jobs composes
    assert OmegaConf.to_container(cfg.hydra.sweeper.params) == {
        "experiment": "fetch_push,fetch_pick_and_place,fetch_slide",
        "seed": "0,1,2,3,4",
    }
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher") and cfg.hydra.launcher.n_jobs == -1
    assert (cfg.resume, cfg.torch_threads, cfg.progress, str(cfg.hydra.mode)) == ("auto", 1, False, "RunMode.MULTIRUN")
    assert cfg.env.id == "FetchSlide-v4" and cfg.runner.epochs == 400
    previous = HydraConfig.instance().cfg
    try:
        HydraConfig.instance().set_config(cfg)
        assert (cfg.hydra.sweep.dir, cfg.hydra.sweep.subdir) == ("runs/suite/fetch", "fetch_slide_seed3")
    finally:
        HydraConfig.instance().cfg = previous
    slurm = compose_with_hydra("suite=fetch", "hydra/launcher=slurm")  # the command line's launcher wins
    assert slurm.hydra.launcher._target_.endswith("SlurmLauncher") and slurm.resume == "auto"


def test_a_new_start_of_a_sweep_drops_the_failures_and_the_stop_request_of_the_one_before(tmp_path):
    record_failure(tmp_path, "ddpg_seed0", ["seed=0"], 2, "run dir ... is in use by ...")
    request_stop(tmp_path)
    assert stop_requested(tmp_path)
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}, "resume": "auto"})
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    callbacks = SweepStop(), SweepSummary()
    for callback in callbacks:
        callback.on_multirun_start(config)
    try:
        assert not stop_requested(tmp_path) and not (tmp_path / FAILURES).exists()
        assert signal.getsignal(signal.SIGINT) not in handlers  # the sweep's own, while it runs
    finally:
        callbacks[0].on_multirun_end(config)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
