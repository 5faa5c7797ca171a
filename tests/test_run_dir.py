"""One run, one dir: a run holds its dir for its life, so that a second run or a resume of a live run is refused
at once naming the live process; a new run never writes into a dir that holds a run; default dir names never
collide; a resume is all or nothing."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import CONFIG_DIR, compose_config
from helpers.point_runs import POINT_TINY
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from training import checkpoint
from training.cli import train
from training.metrics import read_records
from training.options import ConfigError
from training.resume import check_resume_argument, resume_config
from training.rundir import RunDirError

ROOT = Path(__file__).resolve().parent.parent
TRAIN = str(ROOT / "scripts" / "train.py")
HOLD = str(ROOT / "tests" / "helpers" / "hold_train.py")
TINY = POINT_TINY


def start(*command: str, cwd: Path = ROOT) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *command], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory``, by relative path."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def hold_in_training(run_dir: Path, marker: Path) -> subprocess.Popen:
    """A CLI run into ``run_dir`` that holds still after its first training cycle (its first checkpoint written)."""
    proc = start(HOLD, str(marker), "cycle", "1", *TINY, f"hydra.run.dir={run_dir}")
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    return proc


def test_two_runs_started_together_into_one_dir_one_runs_and_the_other_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    procs = {seed: start(TRAIN, *TINY, f"seed={seed}", f"hydra.run.dir={run_dir}") for seed in (1, 2)}
    results = {seed: finish(proc) for seed, proc in procs.items()}
    assert sorted(code for code, _, _ in results.values()) == [0, 2], results
    winner = next(seed for seed, (code, _, _) in results.items() if code == 0)
    loser_err = next(err for code, _, err in results.values() if code == 2)
    busy = f"error: run dir {run_dir} is in use by process {procs[winner].pid} ("
    taken = f"error: run dir {run_dir} holds a run already (metrics.jsonl, policy.pt, checkpoints/last.pt"
    assert busy in loser_err or taken in loser_err, loser_err
    assert "Traceback" not in loser_err
    # the dir holds the winner's run alone: one record per epoch, its config and its checkpoints
    assert [r["epoch"] for r in read_records(run_dir / "metrics.jsonl")] == [0, 1]
    assert OmegaConf.load(run_dir / ".hydra" / "config.yaml").seed == winner
    for name in ("last.pt", "last.prev.pt", "best.pt"):
        assert checkpoint.load(run_dir / "checkpoints" / name)["config"]["seed"] == winner
    assert not list(run_dir.rglob("*.tmp"))


def test_a_live_run_refuses_a_second_run_and_a_resume_naming_its_process(tmp_path):
    run_dir, marker = tmp_path / "run", tmp_path / "holding"
    live = hold_in_training(run_dir, marker)
    try:
        before = snapshot(run_dir)
        second = start(TRAIN, *TINY, "seed=1", f"hydra.run.dir={run_dir}")
        resume = start(TRAIN, f"resume={run_dir}")
        busy = f"run dir {run_dir} is in use by process {live.pid} ("
        with pytest.raises(RunDirError, match=busy.replace("(", r"\(")):  # in-process, as a sweep job would
            train(resume_config(run_dir), run_dir)
        for proc in (second, resume):
            code, _, err = finish(proc)
            assert code == 2 and busy in err and "Traceback" not in err, err
        assert snapshot(run_dir) == before  # no .hydra/ or .hydra/resume_<time>/ written, nothing removed
        assert live.poll() is None
    finally:
        live.kill()
        live.communicate()


def test_a_new_run_refuses_a_dir_that_holds_a_run(tmp_path):
    run_dir = tmp_path / "run"
    train(compose_config(*TINY), run_dir)
    before = snapshot(run_dir)
    with pytest.raises(RunDirError, match=rf"run dir {run_dir} holds a run already \(.*\): continue it with resume="):
        train(compose_config(*TINY, "seed=1"), run_dir)
    assert snapshot(run_dir) == before
    train(resume_config(run_dir, ["runner.epochs=3"]), run_dir)  # what the message says to do
    assert [r["epoch"] for r in read_records(run_dir / "metrics.jsonl")] == [0, 1, 2]


def resolved_hydra_dir(key: str, *overrides: str) -> str:
    """``hydra.<key>.dir`` as Hydra resolves it for a job with ``overrides``, at a fixed time."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(overrides), return_hydra_config=True)
    previous = HydraConfig.instance().cfg
    OmegaConf.register_new_resolver("now", lambda pattern: "2030-01-01_00-00-00", use_cache=True, replace=True)
    try:
        HydraConfig.instance().set_config(cfg)
        return str(OmegaConf.select(cfg, f"hydra.{key}.dir"))
    finally:
        HydraConfig.instance().cfg = previous  # (Hydra registers its own "now" again on its next start)


def test_default_run_dirs_never_collide_within_one_second(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = resolved_hydra_dir("run", "env=PointReach", "seed=3")
    again = resolved_hydra_dir("run", "env=PointReach", "seed=3")  # another process, the same second
    other_seed = resolved_hydra_dir("run", "env=PointReach", "seed=4")
    base = "runs/PointReach/2030-01-01_00-00-00"
    assert (first, again, other_seed) == (f"{base}_seed3", f"{base}_seed3_2", f"{base}_seed4")
    assert all((tmp_path / d).is_dir() for d in (first, again, other_seed))  # each made by the one that named it
    sweeps = resolved_hydra_dir("sweep", "env=PointReach"), resolved_hydra_dir("sweep", "env=PointReach")
    assert sweeps == ("runs/multirun/2030-01-01_00-00-00", "runs/multirun/2030-01-01_00-00-00_2")
    resumed = tmp_path / "resumed"
    assert resolved_hydra_dir("run", "env=PointReach", f"resume={resumed}") == str(resumed)
    assert not resumed.exists()  # a resume names its dir without making one


def test_a_refused_resume_writes_nothing(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    train(compose_config(*TINY, "runner.epochs=1"), run_dir)
    before = snapshot(run_dir)
    monkeypatch.chdir(tmp_path)
    refused = {  # checked before Hydra makes or writes anything (scripts/train.py)
        (f"resume={run_dir}", "env=FetchPush"): "env=FetchPush: a resumed run keeps its saved config",
        ("resume=",): "resume=: resume needs the run dir to continue, e.g. resume=runs/<env>/<time>",
        (f"resume={run_dir}", f"hydra.run.dir={tmp_path / 'elsewhere'}"): "that would split the run in two",
    }
    for argv, message in refused.items():
        with pytest.raises(SystemExit) as exit_:
            check_resume_argument(list(argv))
        assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert snapshot(run_dir) == before
    with pytest.raises(ConfigError, match="that would split the run in two"):  # in-process: the same refusal
        train(resume_config(run_dir), tmp_path / "elsewhere")
    # refused after Hydra started: both checkpoint generations damaged
    for name in ("last.pt", "last.prev.pt"):
        (run_dir / "checkpoints" / name).write_bytes(b"damaged")
    before = snapshot(run_dir)
    code, _, err = finish(start(TRAIN, f"resume={run_dir}"))
    assert code == 2 and f"error: checkpoint {run_dir / 'checkpoints' / 'last.pt'}: unreadable" in err, err
    assert snapshot(run_dir) == before  # no .hydra/resume_<time>/
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing in the working dir either
