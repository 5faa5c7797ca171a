"""Stop and resume: exact continuation, Ctrl-C/SIGTERM, and a run that survives SIGKILL at random moments."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import compose_config
from train import ConfigError, resume_config, train

from envs import make_vector_env
from her.run import checkpoint
from her.run.metrics import read_records
from her.run.runner import Runner

ROOT = Path(__file__).resolve().parent.parent
TIMING = ("wall_s", "env_steps_per_s", "updates_per_s", "collect_s", "update_s", "eval_s")
# A small point-env run: 4 epochs x 3 cycles x 1 episode of 50 steps (600 env steps), 5 updates per cycle.
SMALL = (
    "env=PointReach",
    "seed=5",
    "runner.epochs=4",
    "runner.cycles_per_epoch=3",
    "runner.updates_per_cycle=5",
    "runner.eval_episodes=2",
    "agent.batch_size=32",
    "torch_threads=1",
    "progress=false",
)


def without_timing(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in read_records(run_dir / "metrics.jsonl")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> list[dict]:
    """Metrics of the SMALL run done in one go."""
    run_dir = tmp_path_factory.mktemp("reference")
    train(compose_config(*SMALL, "logger.tensorboard=false"), run_dir)
    return without_timing(run_dir)


def interrupt_at_cycles(monkeypatch, cycles: set[int]) -> None:
    """Send this process SIGINT during the given (0-based, counted over the run) training cycles."""
    original = Runner.train_cycle

    def train_cycle(self: Runner):
        n = self.epoch * self.cycles_per_epoch + self.partial.cycles
        if n in cycles:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self)

    monkeypatch.setattr(Runner, "train_cycle", train_cycle)


def test_stopped_and_resumed_run_matches_an_uninterrupted_one(tmp_path, monkeypatch, reference):
    run_dir = tmp_path / "run"
    interrupt_at_cycles(monkeypatch, {4, 8})  # mid-epoch 1, and the last cycle of epoch 2
    first = train(compose_config(*SMALL), run_dir)
    assert first["stopped"] and first["epoch"] == 0
    saved = checkpoint.load(run_dir / "checkpoints" / "last.pt")
    assert saved["counters"] == {"epoch": 1, "env_steps": 250, "updates": 25}

    second = train(resume_config(run_dir), run_dir)
    assert second["stopped"] and second["epoch"] == 1
    third = train(resume_config(run_dir), run_dir)
    assert not third["stopped"] and third["epoch"] == 3
    assert without_timing(run_dir) == reference

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("eval/success_rate")] == [150, 300, 450, 600]


def test_resume_can_extend_a_finished_run(tmp_path, reference):
    run_dir = tmp_path / "run"
    train(compose_config(*SMALL, "runner.epochs=2", "logger.tensorboard=false"), run_dir)
    train(resume_config(run_dir, ["runner.epochs=4"]), run_dir)
    assert without_timing(run_dir) == reference


def test_resume_rejects_a_missing_dir_and_changes_to_the_saved_config(tmp_path):
    with pytest.raises(ConfigError, match="no such run dir"):
        resume_config(tmp_path / "nope")
    run_dir = tmp_path / "run"
    train(compose_config(*SMALL, "runner.epochs=1", "logger.tensorboard=false"), run_dir)
    with pytest.raises(ConfigError, match=r"agent.hidden=\[8\]: a resumed run keeps its saved config"):
        resume_config(run_dir, ["agent.hidden=[8]"])


def test_resume_into_another_config_names_the_mismatch(tmp_path):
    run_dir = tmp_path / "run"
    train(compose_config(*SMALL, "runner.epochs=1", "logger.tensorboard=false"), run_dir)
    cfg = compose_config(*SMALL, "agent.hidden=[32]", f"resume={run_dir}")
    with pytest.raises(checkpoint.CheckpointError, match=r"last.pt: does not fit this run: agent.hidden: \[64, 64\]"):
        train(cfg, run_dir)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train.py"), *args], capture_output=True, text=True, timeout=300
    )


def test_cli_resume_errors_create_nothing(tmp_path):
    missing = tmp_path / "nope"
    proc = run_cli(f"resume={missing}")
    assert proc.returncode == 2 and f"error: resume={missing}: no such run dir" in proc.stderr
    assert not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_cli(f"resume={empty}")
    assert proc.returncode == 2 and "no checkpoint" in proc.stderr and "Traceback" not in proc.stderr
    assert list(empty.iterdir()) == []


def test_sigterm_saves_a_checkpoint_and_exits_0_with_the_resume_command(tmp_path):
    run_dir = tmp_path / "run"
    args = [*SMALL, "runner.epochs=50", f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "train.py"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    while not (run_dir / "metrics.jsonl").exists():  # one epoch done: well inside training
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert (
        out.strip().splitlines()[-1]
        == f"stopped; checkpoint saved. Resume with: python scripts/train.py resume={run_dir}"
    )
    saved = checkpoint.load(run_dir / "checkpoints" / "last.pt")
    assert 0 < saved["counters"]["env_steps"] < 50 * 150


def test_async_env_workers_ignore_sigint():
    """Ctrl-C reaches the whole process group: env workers must leave stopping to the main process."""
    envs = make_vector_env("PointReach-v0", 2, "async")
    try:
        envs.reset(seed=0)
        for process in envs.processes:
            os.kill(process.pid, signal.SIGINT)
        time.sleep(0.2)
        envs.step(np.zeros((2, 2), np.float32))
        assert all(p.is_alive() for p in envs.processes)
    finally:
        envs.close()


# --- the kill test -------------------------------------------------------------------------------
KILLS = 10
PAUSE_S = 0.2  # each atomic write pauses this long between writing and renaming (tests/helpers)


def wait_until(condition, proc: subprocess.Popen) -> None:
    while not condition() and proc.poll() is None:
        time.sleep(0.01)


def checkpoints_are_readable(run_dir: Path) -> None:
    for path in (run_dir / "checkpoints").glob("*.pt"):
        checkpoint.load(path)  # raises on an unreadable file


def test_sigkill_at_random_moments_loses_nothing(tmp_path):
    """SIGKILL the CLI >= 10 times, resume each time: every third kill lands inside a checkpoint write,
    the others at random moments (start-up included). The finished run equals an uninterrupted one, and
    every checkpoint left behind after each kill is readable."""
    run_args = (*SMALL, "runner.epochs=6")  # more work than 10 kills can let through
    train(compose_config(*run_args, "logger.tensorboard=false"), tmp_path / "reference")
    run_dir, marker = tmp_path / "run", tmp_path / "writing"
    helper = [sys.executable, str(ROOT / "tests" / "helpers" / "slow_checkpoint_train.py"), str(marker), str(PAUSE_S)]

    def writing_checkpoint() -> bool:
        try:
            return ".pt." in Path(marker.read_text()).name
        except FileNotFoundError:
            return False

    rng = np.random.default_rng(0)
    kills, kills_in_checkpoint_write, sessions = 0, 0, 0
    while True:
        args = [*run_args, f"hydra.run.dir={run_dir}"] if sessions == 0 else [f"resume={run_dir}"]
        proc = subprocess.Popen([*helper, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        sessions += 1
        if sessions == 1:
            wait_until((run_dir / "checkpoints" / "last.pt").exists, proc)  # a resume needs one checkpoint
        if kills < KILLS:
            if kills % 3 == 0:
                wait_until(writing_checkpoint, proc)
            elif kills % 3 == 1:
                time.sleep(rng.uniform(0.0, 4.0))
            else:  # after the session's first write (training has begun)
                wait_until(marker.exists, proc)
                wait_until(lambda: not marker.exists(), proc)
                time.sleep(rng.uniform(0.0, 0.8))
            if proc.poll() is None:
                kills_in_checkpoint_write += writing_checkpoint()
                proc.kill()
                kills += 1
        _, err = proc.communicate(timeout=300)
        marker.unlink(missing_ok=True)
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, err
        checkpoints_are_readable(run_dir)
        assert sessions < 30, "no progress"

    print(f"{kills} kills, {kills_in_checkpoint_write} inside a checkpoint write, {sessions} sessions")
    assert kills >= KILLS and kills_in_checkpoint_write >= 4, (kills, kills_in_checkpoint_write)
    checkpoints_are_readable(run_dir)
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))
    saved = checkpoint.load(run_dir / "checkpoints" / "last.pt")
    assert saved["counters"] == {"epoch": 6, "env_steps": 900, "updates": 90}
    assert saved["agent"]["n_updates"] == 90
    assert saved["training"]["buffer"]["n_stored_total"] == 18
    assert without_timing(run_dir) == without_timing(tmp_path / "reference")

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("eval/success_rate")] == [150, 300, 450, 600, 750, 900]
