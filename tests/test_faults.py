"""Faults during a run: divergence (NaN/inf), a damaged newest checkpoint, a full disk, a metrics line cut short,
sizes that cannot fit, Ctrl-C at any moment."""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_config
from helpers.point_runs import POINT_TINY
from helpers.stopped_runs import without_timing

from envs import env_info, make_env
from her import sparse_reward
from training import checkpoint
from training.build import build_runner, run_info
from training.checkpoint import Checkpointer, CheckpointError, DivergenceError
from training.cli import train
from training.divergence import first_non_finite_update, non_finite_tensors
from training.metrics import read_records
from training.options import ConfigError
from training.resume import resume_config
from training.runner import Runner

ROOT = Path(__file__).resolve().parent.parent
TINY = (*POINT_TINY, "runner.epochs=3")


def run_cli(script: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=300)


def files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


# --- a NaN distance is never a success ------------------------------------------------------------------
def test_a_nan_or_inf_distance_is_a_failure_in_every_reward():
    nan, inf = np.full((1, 2), np.nan), np.full((1, 2), np.inf)
    zero = np.zeros((1, 2))
    for reward in (sparse_reward(0.05), make_env("PointReach-v0").unwrapped.compute_reward):
        assert reward(zero, zero, {}).tolist() == [0.0]
        assert reward(nan, zero, {}).tolist() == [-1.0] and reward(zero, inf, {}).tolist() == [-1.0]

    env = make_env("PointReach-v0")  # a diverged policy's NaN action makes the position NaN
    env.reset(seed=0)
    env.unwrapped._goal = env.unwrapped._pos.copy()
    _, reward, _, _, info = env.step(np.full(2, np.nan, np.float32))
    assert reward == -1.0 and info["is_success"] == 0.0


def test_fetch_nan_goals_fail_although_gymnasium_robotics_rewards_them():
    env = make_env("FetchReach-v4")
    env.reset(seed=0)
    fetch = env.unwrapped
    real_obs = fetch._get_obs
    fetch._get_obs = lambda: {**real_obs(), "achieved_goal": np.full(3, np.nan)}
    nan = np.full((1, 3), np.nan)
    assert fetch.compute_reward(nan, nan, {}).tolist() == [0.0]  # the library's own reward: a success
    assert env_info(env).compute_reward(nan, nan, {}).tolist() == [-1.0]
    _, reward, _, _, info = env.step(np.zeros(4, np.float32))
    assert reward == -1.0 and info["is_success"] == 0.0
    env.close()


# --- the divergence guard ---------------------------------------------------------------------------
def test_non_finite_stats_and_tensors_are_found_by_name():
    stats = [{"critic_loss": 1.0, "q_mean": -2.0}, {"critic_loss": math.inf, "q_mean": math.nan}]
    assert first_non_finite_update(stats[:1]) is None
    assert first_non_finite_update(stats) == (1, ["critic_loss=inf", "q_mean=nan"])
    state = {"actor": {"w": torch.zeros(2), "b": torch.tensor([1.0, math.nan])}, "norm": {"sum": np.ones(2)}}
    assert non_finite_tensors(state) == ["actor.b"]
    state["norm"]["sum"][0] = -math.inf
    assert non_finite_tensors(state) == ["actor.b", "norm.sum"]
    assert non_finite_tensors({"steps": torch.tensor([3]), "lr": math.nan}) == []  # ints, plain floats: not weights


def test_a_diverging_run_exits_non_zero_naming_epoch_and_update_and_writes_no_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(
        ROOT / "scripts" / "train.py",
        *TINY,
        "agent.lr_critic=1e6",
        "agent.lr_actor=1e6",
        "runner.updates_per_cycle=10",
        f"hydra.run.dir={run_dir}",
    )
    assert proc.returncode == 1, proc.stderr
    assert "error: training diverged: epoch 0, update " in proc.stderr and "Traceback" not in proc.stderr
    assert "=nan" in proc.stderr or "=inf" in proc.stderr
    saved = checkpoint.load(run_dir / "checkpoints" / "last.pt")  # the one of the start, still whole and finite
    assert saved["counters"] == {"epoch": 0, "env_steps": 0, "updates": 0}
    assert non_finite_tensors(saved["agent"]) == []
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.pt"]
    assert not (run_dir / "policy.pt").exists() and not (run_dir / "metrics.jsonl").exists()


def test_non_finite_parameters_stop_the_epoch_before_its_checkpoints(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    train(compose_config(*TINY, "runner.epochs=1"), run_dir)
    before = files(run_dir / "checkpoints")
    assert set(before) == {"last.pt", "last.prev.pt", "best.pt"}
    learn_on = Runner.learn_on

    def poisoned_learn(self: Runner, batches, n_updates: int):
        stats = learn_on(self, batches, n_updates)  # finite: the last step of the cycle makes the parameters inf
        with torch.no_grad():
            next(self.agent.actor.parameters())[0, 0] = math.inf
        return stats

    monkeypatch.setattr(Runner, "learn_on", poisoned_learn)
    with pytest.raises(DivergenceError, match=r"epoch 1, after update 4: NaN or inf in actor\..*end of the epoch"):
        train(resume_config(run_dir, ["runner.epochs=2"]), run_dir)
    assert files(run_dir / "checkpoints") == before
    assert len(read_records(run_dir / "metrics.jsonl")) == 1


def test_the_checkpointer_never_writes_non_finite_weights(tmp_path):
    cfg = compose_config(*TINY)
    runner, info = build_runner(cfg, None)
    checkpointer = Checkpointer(tmp_path, run_info(cfg, info))
    checkpointer.save_last(runner)
    checkpointer.save_policy(runner, checkpointer.best_path)
    before = files(tmp_path / "checkpoints")
    with torch.no_grad():
        runner.agent.critic_target.parameters().__next__()[0, 0] = math.nan
    with pytest.raises(DivergenceError, match=r"NaN or inf in critic_target\..*last.pt was not written"):
        checkpointer.save_last(runner)
    with pytest.raises(DivergenceError, match="best.pt was not written"):
        checkpointer.save_policy(runner, checkpointer.best_path)
    assert files(tmp_path / "checkpoints") == before
    runner.close()


# --- two generations of last.pt ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> list[dict]:
    """Metrics of the TINY run with a fourth epoch, done in one go."""
    run_dir = tmp_path_factory.mktemp("reference")
    train(compose_config(*TINY, "runner.epochs=4"), run_dir)
    return without_timing(run_dir)


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_generation(tmp_path, capsys, reference):
    run_dir = tmp_path / "run"
    train(compose_config(*TINY), run_dir)
    last, previous = run_dir / "checkpoints" / "last.pt", run_dir / "checkpoints" / "last.prev.pt"
    assert checkpoint.load(last)["counters"]["epoch"] == 3 and checkpoint.load(previous)["counters"]["epoch"] == 2
    last.write_bytes(last.read_bytes()[:1000])  # truncated
    capsys.readouterr()
    train(resume_config(run_dir, ["runner.epochs=4"]), run_dir)
    warning = capsys.readouterr().err
    assert f"warning: checkpoint {last}: unreadable" in warning
    assert f"resuming from the previous generation {previous} (epoch 2): 1 logged epoch after it is" in warning
    assert without_timing(run_dir) == reference  # epoch 2 done again, exactly


def test_a_missing_newest_falls_back_and_two_bad_generations_name_both(tmp_path):
    run_dir = tmp_path / "run"
    train(compose_config(*TINY, "runner.epochs=1"), run_dir)
    last, previous = run_dir / "checkpoints" / "last.pt", run_dir / "checkpoints" / "last.prev.pt"
    last.unlink()  # a kill between the two renames of a write
    resumable = checkpoint.load_resumable(run_dir)
    assert resumable.path == previous and "last.pt: no such file" in resumable.warning
    assert "(epoch 0): 1 logged epoch after it is done again" in resumable.warning
    previous.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"last.pt: no such file \(and the previous generation .*unreadable"):
        checkpoint.load_resumable(run_dir)


# --- a full disk ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, fail_from, path, epoch",
    [("last.pt", 3, "checkpoints/last.pt", 1), ("metrics.jsonl", 2, "metrics.jsonl", 1)],
    ids=["checkpoint", "metrics"],
)
def test_a_full_disk_stops_with_the_path_and_the_run_resumes(tmp_path, name, fail_from, path, epoch):
    run_dir = tmp_path / "run"
    helper = ROOT / "tests" / "helpers" / "full_disk_train.py"
    proc = run_cli(helper, name, str(fail_from), *TINY, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 1, proc.stderr
    assert f"error: cannot write {run_dir / path}: No space left on device (ENOSPC)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert checkpoint.load(run_dir / "checkpoints" / "last.pt")["counters"]["epoch"] == epoch
    assert not list(run_dir.rglob("*.tmp"))
    text = (run_dir / "metrics.jsonl").read_text()
    assert text.endswith("\n") and len(text.splitlines()) == len(read_records(run_dir / "metrics.jsonl"))
    train(resume_config(run_dir), run_dir)  # the disk has room again
    assert [r["epoch"] for r in read_records(run_dir / "metrics.jsonl")] == [0, 1, 2]


# --- a metrics line cut short -----------------------------------------------------------------------
def test_a_metrics_line_cut_short_is_reported_and_its_epoch_runs_again(tmp_path, capsys, reference):
    """A crash of the machine can cut the last line of metrics.jsonl (the checkpoint written after it is synced,
    the line may not be): the resume says so and runs that epoch again from the previous checkpoint."""
    run_dir = tmp_path / "run"
    train(compose_config(*TINY), run_dir)
    metrics = run_dir / "metrics.jsonl"
    text = metrics.read_text()
    metrics.write_text(text[: text.rindex("\n", 0, -1) + 40])  # epoch 2's line, cut after 39 characters
    capsys.readouterr()
    train(resume_config(run_dir, ["runner.epochs=4"]), run_dir)
    warning = capsys.readouterr().err
    assert f"warning: {metrics}: its last line is cut short, a record lost in a crash: '{{\"epoch\": 2," in warning
    previous = run_dir / "checkpoints" / "last.prev.pt"
    assert f"the record of epoch 2 is lost: resuming from the previous generation {previous} (epoch 2)" in warning
    assert without_timing(run_dir) == reference  # epoch 2 done again, exactly


def test_a_metrics_line_cut_short_after_the_checkpoint_is_reported(tmp_path, capsys, reference):
    run_dir = tmp_path / "run"
    train(compose_config(*TINY, "runner.epochs=4"), run_dir)
    (run_dir / "checkpoints" / "last.pt").unlink()  # the checkpoint of epoch 3 never written: epoch 2's is newest
    os.replace(run_dir / "checkpoints" / "last.prev.pt", run_dir / "checkpoints" / "last.pt")
    metrics = run_dir / "metrics.jsonl"
    metrics.write_text(metrics.read_text()[:-30])  # epoch 3's line cut short
    capsys.readouterr()
    train(resume_config(run_dir), run_dir)
    warning = capsys.readouterr().err
    assert "its last line is cut short" in warning and "that epoch comes after the checkpoint and runs again" in warning
    assert without_timing(run_dir) == reference


# --- sizes that cannot fit ----------------------------------------------------------------------------
def test_a_buffer_larger_than_the_memory_is_refused_before_allocating(tmp_path):
    with pytest.raises(ConfigError) as err:
        train(compose_config(*TINY, "buffer.size=1000000000000"), tmp_path / "run")
    # 2e10 episodes of 50 steps x (51 x 2 obs + 51 x 2 achieved + 50 x 2 goals + 50 x 2 actions) float32
    assert re.fullmatch(
        r"buffer\.size=1000000000000 is invalid: its arrays need 29\.4 TiB \(32320000000000 bytes\), more than the "
        r"[0-9.]+ [KMGT]iB \(\d+ bytes\) of memory available",
        str(err.value),
    ), err.value
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_a_batch_larger_than_the_buffer_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"buffer\.batch_size=100000 is invalid: expected at most size=1000, the"):
        train(compose_config(*TINY, "buffer.batch_size=100000", "buffer.size=1000"), tmp_path / "run")


# --- Ctrl-C -------------------------------------------------------------------------------------------
def hold(run_dir: Path, marker: Path, moment: str, after: int) -> subprocess.Popen:
    """The CLI holding still at ``moment`` (tests/helpers/hold_train.py)."""
    helper = ROOT / "tests" / "helpers" / "hold_train.py"
    command = [sys.executable, str(helper), str(marker), moment, str(after), *TINY, f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    return proc


def test_two_ctrl_c_50_ms_apart_stop_at_once_with_one_line(tmp_path):
    run_dir = tmp_path / "run"
    proc = hold(run_dir, tmp_path / "holding", "cycle", 1)  # in training, its first checkpoint written
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.strip().splitlines()[-1] == (
        "interrupted: stopped at once (Ctrl-C again); the last complete checkpoint is kept. "
        f"Resume with: python scripts/train.py resume={run_dir}"
    )
    assert checkpoint.load(run_dir / "checkpoints" / "last.pt")["counters"]["epoch"] == 0
    assert not list(run_dir.rglob("*.tmp"))


def test_ctrl_c_during_start_up_says_so_in_one_line(tmp_path):
    proc = hold(tmp_path / "run", tmp_path / "holding", "build", 0)  # about to build the envs, buffer and agent
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip() == "interrupted during start-up (Ctrl-C): nothing was trained"


# --- temporary files ---------------------------------------------------------------------------------
def test_start_up_removes_only_the_temporary_files_of_ended_processes(tmp_path):
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    stale = directory / f".last.pt.{int(ended.stdout)}.tmp"  # a write killed midway
    live = directory / f".last.pt.{os.getppid()}.tmp"  # another process writing now
    own = directory / f".best.pt.{os.getpid()}.tmp"
    for path in (stale, live, own):
        path.write_bytes(b"partial")
    cfg = compose_config(*TINY)
    runner, info = build_runner(cfg, None)
    Checkpointer(tmp_path, run_info(cfg, info))
    runner.close()
    assert sorted(p.name for p in directory.iterdir()) == [live.name]
