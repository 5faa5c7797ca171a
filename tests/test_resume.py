"""Stop and resume: exact continuation, Ctrl-C/SIGTERM, best.pt across sessions, a run that survives SIGKILL
at chosen moments, and ``resume=auto``, which continues whatever a run's dir holds."""

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
from helpers.point_runs import POINT_TINY
from helpers.stopped_runs import SMALL, interrupt_at_cycles, without_timing

from envs import make_vector_env
from training import checkpoint
from training.cli import default_run_dir, refuse_a_time_named_dir, train
from training.metrics import read_records
from training.options import ConfigError
from training.resume import check_resume_argument, config_differences, resume_config
from training.runner import Runner

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> list[dict]:
    """Metrics of the SMALL run done in one go."""
    run_dir = tmp_path_factory.mktemp("reference")
    train(compose_config(*SMALL, "logger.tensorboard=false"), run_dir)
    return without_timing(run_dir)


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
    assert [e.step for e in acc.Scalars("success/eval")] == [150, 300, 450, 600]


# The same for DQN on bit flipping: 3 epochs x 3 cycles x 2 episodes of 8 steps (144 env steps), 5 updates per cycle;
# its exploration draws, random actions (runner.random_steps) and replay sampling all continue.
SMALL_DQN = (
    "env=BitFlipping",
    "env.n_bits=8",
    "agent=dqn",
    "seed=5",
    "runner.epochs=3",
    "runner.cycles_per_epoch=3",
    "runner.episodes_per_cycle=2",
    "runner.updates_per_cycle=5",
    "runner.random_steps=32",
    "runner.eval_episodes=4",
    "buffer.batch_size=32",
    "torch_threads=1",
    "progress=false",
    "agent.precision=fp32",
)


def test_a_stopped_and_resumed_dqn_run_matches_an_uninterrupted_one(tmp_path, monkeypatch):
    train(compose_config(*SMALL_DQN, "logger.tensorboard=false"), tmp_path / "once")
    once = without_timing(tmp_path / "once")
    assert len(once) == 3 and {"q_loss", "q_mean"} <= set(once[0])
    interrupt_at_cycles(monkeypatch, {1, 6})  # mid-epoch 0 (in the random steps), and the first cycle of epoch 2
    run_dir = tmp_path / "run"
    assert train(compose_config(*SMALL_DQN), run_dir)["stopped"]
    assert train(resume_config(run_dir), run_dir)["stopped"]
    assert not train(resume_config(run_dir), run_dir)["stopped"]
    assert without_timing(run_dir) == once

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/q_loss")] == [48, 96, 144]


def test_a_resumed_run_with_eval_every_evaluates_as_an_uninterrupted_one(tmp_path, monkeypatch):
    """With ``runner.eval_every=400`` the first evaluation (at 450 env steps) comes after a resume and seeds the
    eval env as in the run done in one go; the second, after another resume, does not seed it again."""
    goals: list[np.ndarray] = []  # the goals of each evaluation's episodes
    evaluate = Runner.evaluate

    def recording_evaluate(self: Runner):
        rollout = evaluate(self)
        goals.append(rollout.episodes["g"][:, 0])
        return rollout

    monkeypatch.setattr(Runner, "evaluate", recording_evaluate)
    overrides = (*SMALL, "runner.eval_every=400", "logger.tensorboard=false")
    train(compose_config(*overrides), tmp_path / "once")
    once, once_goals = without_timing(tmp_path / "once"), goals[:]
    assert [r["eval_success_rate"] is not None for r in once] == [False, False, True, True]
    assert len(once_goals) == 2 and not np.array_equal(*once_goals)
    goals.clear()
    interrupt_at_cycles(monkeypatch, {4, 10})  # before the first evaluation, and between the two
    assert train(compose_config(*overrides), tmp_path / "run")["stopped"]
    assert train(resume_config(tmp_path / "run"), tmp_path / "run")["stopped"]
    assert not train(resume_config(tmp_path / "run"), tmp_path / "run")["stopped"]
    assert without_timing(tmp_path / "run") == once
    assert len(goals) == 2 and all(np.array_equal(a, b) for a, b in zip(goals, once_goals))


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


def test_cli_resume_errors_create_nothing(tmp_path, capsys):
    from training.resume import check_resume_argument

    missing = tmp_path / "nope"
    proc = run_cli(f"resume={missing}")
    assert proc.returncode == 2 and f"error: resume={missing}: no such run dir" in proc.stderr
    assert "Traceback" not in proc.stderr and not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit) as exit_:  # the same check, in-process: before Hydra makes any dir
        check_resume_argument(["env=PointReach", f"resume={empty}"])
    assert exit_.value.code == 2 and "no checkpoint" in capsys.readouterr().err
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
# Where each session is killed: (moment, after) of tests/helpers/hold_train.py, i.e. at the first `moment` after
# the session's `after`-th last.pt write. Inside a checkpoint write (a .pt file written and synced, not renamed),
# inside the rewrite of metrics.jsonl that a resumed session starts with, or between two training cycles. Every
# kill after a last.pt write also leaves metrics.jsonl with an epoch that the checkpoint does not hold yet.
KILLS = [
    ("last.pt", 1), ("metrics.jsonl", 0), (".pt", 1), ("cycle", 1), ("last.pt", 1),
    ("metrics.jsonl", 0), (".pt", 1), ("cycle", 1), (".pt", 1), ("last.pt", 1),
]  # fmt: skip
KILL_EPOCHS = 8  # sessions with after=1 move on one epoch each: the last kill comes in the last epoch


def checkpoints_are_readable(run_dir: Path) -> None:
    for path in (run_dir / "checkpoints").glob("*.pt"):
        checkpoint.load(path)  # raises on an unreadable file


@pytest.mark.slow
def test_sigkill_at_chosen_moments_loses_nothing(tmp_path):
    """SIGKILL the CLI 10 times, resume each time, each kill where the run holds still at a chosen moment of its
    file writes or training. The finished run equals an uninterrupted one, and every checkpoint left behind after
    each kill is readable."""
    run_args = (*SMALL, f"runner.epochs={KILL_EPOCHS}")
    train(compose_config(*run_args, "logger.tensorboard=false"), tmp_path / "reference")
    run_dir, marker = tmp_path / "run", tmp_path / "holding"
    helper = [sys.executable, str(ROOT / "tests" / "helpers" / "hold_train.py"), str(marker)]
    held_in = []
    for session in range(len(KILLS) + 1):
        args = [*run_args, f"hydra.run.dir={run_dir}"] if session == 0 else [f"resume={run_dir}"]
        moment, after = KILLS[session] if session < len(KILLS) else ("none", 0)
        proc = subprocess.Popen([*helper, moment, str(after), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        while not marker.exists() and proc.poll() is None:
            time.sleep(0.01)
        if proc.poll() is None:
            held_in.append(marker.read_text())
            proc.kill()
        _, err = proc.communicate(timeout=600)
        marker.unlink(missing_ok=True)
        if session < len(KILLS):
            assert proc.returncode == -signal.SIGKILL, err.decode()[-3000:]
            checkpoints_are_readable(run_dir)
        else:
            assert proc.returncode == 0, err.decode()[-3000:]

    # where each kill landed: the file being written (".best.pt.<pid>.tmp" -> "best") or "cycle"
    landed = [h.split(".")[1] if h.startswith(".") else h for h in held_in]
    allowed = {"last.pt": {"last"}, ".pt": {"best", "last"}, "metrics.jsonl": {"metrics"}, "cycle": {"cycle"}}
    assert len(landed) == len(KILLS) and all(w in allowed[m] for w, (m, _) in zip(landed, KILLS)), landed
    checkpoints_are_readable(run_dir)
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))
    saved = checkpoint.load(run_dir / "checkpoints" / "last.pt")
    epochs = KILL_EPOCHS
    assert saved["counters"] == {"epoch": epochs, "env_steps": 150 * epochs, "updates": 15 * epochs}
    assert saved["agent"]["n_updates"] == 15 * epochs
    assert saved["training"]["buffer"]["n_stored_total"] == 3 * epochs
    assert without_timing(run_dir) == without_timing(tmp_path / "reference")

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("success/eval")] == [150 * (e + 1) for e in range(epochs)]


# --- best.pt and resume ---------------------------------------------------------------------------
TINY = (*SMALL, "runner.cycles_per_epoch=1", "runner.updates_per_cycle=2", "logger.tensorboard=false")


def scripted_eval_success(monkeypatch, by_epoch: dict[int, float]) -> None:
    """Evaluation success ``by_epoch[epoch]`` (eval_episodes=2: 0, 0.5 or 1), whatever the policy does."""
    evaluate = Runner.evaluate

    def scripted(self: Runner):
        rollout = evaluate(self)
        rollout.success = np.full(len(rollout.success), by_epoch[self.epoch])
        return rollout

    monkeypatch.setattr(Runner, "evaluate", scripted)


def test_best_holds_the_latest_best_epoch_and_a_resumed_run_keeps_its_best_so_far(tmp_path, monkeypatch):
    scripted_eval_success(monkeypatch, {0: 0.5, 1: 1.0, 2: 0.5, 3: 1.0, 4: 0.5, 5: 1.0})
    written = []
    save_policy = checkpoint.Checkpointer.save_policy

    def recording(self, runner, path):
        written.append((Path(path).name, runner.epoch))
        return save_policy(self, runner, path)

    monkeypatch.setattr(checkpoint.Checkpointer, "save_policy", recording)
    run_dir = tmp_path / "run"
    train(compose_config(*TINY, "runner.epochs=4"), run_dir)
    assert written == [("best.pt", 1), ("best.pt", 2), ("best.pt", 4), ("policy.pt", 4)]  # ties: the later epoch
    best = checkpoint.load(run_dir / "checkpoints" / "best.pt")
    assert best["counters"]["epoch"] == 4 and best["record"]["epoch"] == 3 and best["record"]["eval_success_rate"] == 1
    assert checkpoint.load(run_dir / "checkpoints" / "last.pt")["training"]["best_success"] == 1.0

    written.clear()
    train(resume_config(run_dir, ["runner.epochs=5"]), run_dir)  # epoch 4 evaluates to 0.5: not a new best
    assert written == [("policy.pt", 5)]
    assert checkpoint.load(run_dir / "checkpoints" / "best.pt")["counters"]["epoch"] == 4
    train(resume_config(run_dir, ["runner.epochs=6"]), run_dir)  # epoch 5 ties the best again
    assert written == [("policy.pt", 5), ("best.pt", 6), ("policy.pt", 6)]


def test_resume_without_a_saved_buffer_starts_with_an_empty_one(tmp_path, capsys):
    run_dir = tmp_path / "run"
    train(compose_config(*TINY, "runner.epochs=2", "checkpoint.save_buffer=false"), run_dir)
    saved = checkpoint.load(run_dir / "checkpoints" / "last.pt")
    assert saved["training"]["buffer"] is None and saved["counters"]["env_steps"] == 100
    train(resume_config(run_dir, ["runner.epochs=3"]), run_dir)
    assert "holds no replay buffer (checkpoint.save_buffer=false): it starts empty" in capsys.readouterr().err
    records = read_records(run_dir / "metrics.jsonl")
    assert [r["env_steps"] for r in records] == [50, 100, 150]
    assert [r["buffer_transitions"] for r in records] == [50, 100, 50]  # the resumed epoch's one episode only
    assert checkpoint.load(run_dir / "checkpoints" / "last.pt")["training"]["buffer"] is None


# --- Ctrl-C ---------------------------------------------------------------------------------------
def test_sigterm_asks_to_stop_and_a_second_ctrl_c_aborts_at_once(capsys):
    from training.signals import GracefulStop

    previous = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    stop = GracefulStop()
    with stop:
        assert not stop()
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            assert stop()
            os.kill(os.getpid(), signal.SIGTERM)  # another SIGTERM changes nothing
        except KeyboardInterrupt:
            pytest.fail("SIGTERM aborted instead of asking to stop")
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # (the handler runs at once; the sleep only waits for it)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == previous
    err = capsys.readouterr().err
    assert err.count("stopping after this cycle") == 1 and "SIGTERM: stopping after this cycle" in err


def test_a_second_ctrl_c_in_training_aborts_and_leaves_the_last_checkpoint_readable(tmp_path, monkeypatch):
    original = Runner.train_cycle

    def train_cycle(self: Runner):
        if self.epoch == 1 and self.partial.cycles == 1:  # mid-epoch 1: one SIGINT stops later, two at once
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        return original(self)

    monkeypatch.setattr(Runner, "train_cycle", train_cycle)
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(compose_config(*SMALL, "logger.tensorboard=false"), run_dir)
    saved = checkpoint.load(run_dir / "checkpoints" / "last.pt")
    assert saved["counters"] == {"epoch": 1, "env_steps": 150, "updates": 15}  # the end of epoch 0
    assert not (run_dir / "policy.pt").exists() and not list((run_dir / "checkpoints").glob(".*.tmp"))
    assert [r["epoch"] for r in read_records(run_dir / "metrics.jsonl")] == [0]


# --- resume=auto ---------------------------------------------------------------------------------------
def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_resume_auto_starts_keeps_or_resumes_what_the_dir_holds(tmp_path):
    run_dir = tmp_path / "run"
    first = train(compose_config(*POINT_TINY, "resume=auto"), run_dir)  # nothing there: a new run
    assert not first["stopped"] and [r["epoch"] for r in read_records(run_dir / "metrics.jsonl")] == [0, 1]
    before = snapshot(run_dir)
    kept = train(compose_config(*POINT_TINY, "resume=auto", "progress=true"), run_dir)  # finished: kept as it is
    assert kept == first and snapshot(run_dir) == before
    with pytest.raises(ConfigError, match=r"the run in .*run has another config \(agent.lr_actor: 0.001 in the run, "):
        train(compose_config(*POINT_TINY, "resume=auto", "agent.lr_actor=0.002"), run_dir)
    with pytest.raises(ConfigError, match=r"runner.epochs=1 is invalid: expected at least 2"):
        train(compose_config(*POINT_TINY, "resume=auto", "runner.epochs=1"), run_dir)
    assert snapshot(run_dir) == before
    longer = train(compose_config(*POINT_TINY, "resume=auto", "runner.epochs=3"), run_dir)  # more epochs: resumed
    assert longer["epoch"] == 2 and [r["epoch"] for r in read_records(run_dir / "metrics.jsonl")] == [0, 1, 2]
    for name in ("last.pt", "last.prev.pt"):
        (run_dir / "checkpoints" / name).unlink()
    (run_dir / "policy.pt").unlink()
    with pytest.raises(ConfigError, match=r"holds a run \(metrics.jsonl, checkpoints/best.pt\) but no checkpoint"):
        train(compose_config(*POINT_TINY, "resume=auto", "runner.epochs=4"), run_dir)


def test_resume_auto_resumes_a_stopped_run_exactly(tmp_path, monkeypatch, reference):
    run_dir, overrides = tmp_path / "run", (*SMALL, "logger.tensorboard=false", "resume=auto")
    interrupt_at_cycles(monkeypatch, {4})
    assert train(compose_config(*overrides), run_dir)["stopped"]
    monkeypatch.undo()
    assert not train(compose_config(*overrides), run_dir)["stopped"]
    assert without_timing(run_dir) == reference


def test_config_differences_leave_out_what_a_resume_may_change():
    saved = {"seed": 0, "resume": None, "runner": {"epochs": 2, "eval_every": None}, "precision_probe": {"x": 1}}
    now = {"seed": 1, "resume": "auto", "runner": {"epochs": 5, "eval_every": None}, "agent": {"hidden": [8]}}
    assert config_differences(saved, now) == ["agent.hidden: absent in the run, [8] now", "seed: 0 in the run, 1 now"]
    assert config_differences(saved, {**saved, "progress": False}) == []


def test_resume_auto_needs_a_dir_named_in_advance(tmp_path):
    check_resume_argument(["env=PointReach", "resume=auto"])  # the command line passes; the run dir decides
    made = default_run_dir("auto", str(tmp_path / "runs" / "PointReach" / "2030-01-01_00-00-00_seed0"))
    assert Path(made).is_dir()
    with pytest.raises(ConfigError, match="resume=auto continues the run in a dir named in advance"):
        refuse_a_time_named_dir(made)
    assert not Path(made).exists()  # removed: a refused run leaves nothing
    refuse_a_time_named_dir(str(tmp_path / "given"))  # a dir given (hydra.run.dir, a sweep's job dir) is fine
