"""The real command line in a subprocess, with tiny budgets."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers.train_cli import ROOT, TINY, run_train

from her import checkpoint_file


def test_smoke_run_writes_metrics_tensorboard_config_and_policy(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    proc = run_train("env=PointReach", *TINY, f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1]
    assert [r["env_steps"] for r in records] == [200, 400]
    for key in (
        "wall_s",
        "eval_success_rate",
        "eval_mean_return",
        "train_success_rate",
        "actor_loss",
        "critic_loss",
        "q_mean",
        "env_steps_per_s",
    ):
        assert key in records[-1], key
    assert (out / ".hydra" / "config.yaml").exists() and (out / "policy.pt").exists()
    saved = yaml.safe_load((out / ".hydra" / "config.yaml").read_text())  # as the run trained: precision chosen
    assert saved["precision_probe"]["requested"] == saved["precision_probe"]["chosen"] == "fp32"
    last = records[-1]
    assert (
        proc.stdout.strip()
        .splitlines()[-1]
        .startswith(f"done: epoch 1 env_steps 400 eval_success_rate {last['eval_success_rate']:.3f} wall ")
    )
    assert proc.stdout.strip().endswith(f"-> {out}")

    acc = EventAccumulator(str(out / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in (
        "success/eval",
        "success/train",
        "values/eval_mean_return",
        "train/actor_loss",
        "train/critic_loss",
        "values/q_mean",
        "wall/env_steps_per_s",
    ):
        assert tag in tags, tag
    assert [e.step for e in acc.Scalars("success/eval")] == [200, 400]  # x-axis: env steps
    returns = [r["eval_mean_return"] for r in records]
    assert [e.value for e in acc.Scalars("values/eval_mean_return")] == pytest.approx(returns)


def test_multirun_makes_one_run_per_seed(tmp_path):
    proc = run_train("-m", "seed=0,1", "env=PointReach", *TINY, f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    runs = sorted(p.parent.name for p in tmp_path.glob("*/metrics.jsonl"))
    assert runs == ["0_PointReach_seed0", "1_PointReach_seed1"]


def failure(*overrides: str, run_dir: Path) -> str:
    """The message with which composing or training on ``overrides`` fails in-process (what the CLI prints)."""
    from conftest import compose_config

    from training.cli import train
    from training.options import ConfigError

    try:
        cfg = compose_config("env=PointReach", *TINY, *overrides)
    except Exception as err:  # Hydra's composition errors: the CLI prints them with their cause
        return f"{err} {err.__cause__}"
    with pytest.raises(ConfigError) as err:
        train(cfg, run_dir)
    return str(err.value)


def readme_example_env() -> str:
    """The example goal env of docs/envs.md's "Your own env" (the python block that starts with
    ``# mygoalenv.py``)."""
    doc = (ROOT / "docs" / "envs.md").read_text()
    match = re.search(r"```python\n(# mygoalenv\.py:.*?)```", doc, re.S)
    assert match, "docs/envs.md has no python block starting with '# mygoalenv.py:'"
    return match.group(1)


def test_the_readme_example_env_trains_from_its_own_module(tmp_path):
    """docs/envs.md's command line: a user's module on PYTHONPATH, named in env.id as module:EnvId."""
    (tmp_path / "mygoalenv.py").write_text(readme_example_env())
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train.py"), "env=PointReach", "env.id=mygoalenv:MyReach-v0",
         "+env.kwargs.threshold=0.2", "runner.epochs=1", "runner.cycles_per_epoch=1", "runner.episodes_per_cycle=1",
         "runner.updates_per_cycle=1", "runner.eval_episodes=1", "torch_threads=1", "progress=false",
         f"hydra.run.dir={out}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["env_steps"] == 50 and record["updates"] == 1  # MyReach-v0's 50-step episodes
    saved = checkpoint_file.load(out / "policy.pt")
    assert saved["env"]["id"] == "mygoalenv:MyReach-v0" and saved["env"]["kwargs"] == {"threshold": 0.2}
    assert saved["env"]["obs_dim"] == 1 and saved["env"]["action_dim"] == 1


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["env=Nope"], "Available options in 'env'"),
        (["agent=nope"], "Available options in 'agent'"),
        (["buffer.size=-5"], "buffer.size=-5 is invalid: expected an integer > 0"),
        (["buffer.replay_k=-1"], "buffer.replay_k=-1 is invalid"),
        (
            ["buffer.strategy=bogus"],
            "buffer.strategy='bogus' is invalid: expected one of future, final, episode, random",
        ),
        (["runner.epochs=abc"], "runner.epochs='abc' is invalid: expected an integer > 0"),
        (
            ["runner.episodes_per_cycle=3", "env.num_envs=2"],
            "runner.episodes_per_cycle=3 is invalid: expected a multiple",
        ),
        (["buffer.batch_size=0"], "buffer.batch_size=0 is invalid"),
        (["agent.n_critics=0"], "agent.n_critics=0 is invalid: expected an integer > 0"),
        (["device=tpu"], "device='tpu' is invalid: expected one of cpu, cuda, auto"),
        (["distributed.grad_reduce=max"], "distributed.grad_reduce='max' is invalid: expected one of mean, sum"),
        (["env.id=Nope-v0"], "env.id='Nope-v0' is invalid: expected a registered env id"),
        (["env.id=CartPole-v1"], "env.id='CartPole-v1' is invalid: CartPole-v1 is not a goal env"),
        (
            ["env.id=no_such_module_17:MyReach-v0"],
            "env.id='no_such_module_17:MyReach-v0' is invalid: importing module 'no_such_module_17' failed: "
            "ModuleNotFoundError: No module named 'no_such_module_17'",
        ),
        (["env.id=json:MyReach-v0"], "module 'json' was imported but registered no env 'MyReach-v0'"),
        (["+env.kwargs.bogus=1"], "env.kwargs.bogus=1 is invalid: PointReach-v0 refused it: TypeError"),
        (["checkpoint.every=0"], "checkpoint.every=0 is invalid: expected an integer > 0"),
        (["agent.policy_delay=2"], "Key 'policy_delay' is not in struct"),
        (["+agent.policy_delay=2"], "agent.policy_delay is not an option of agents.DDPG"),
        (["agent=sac", "+agent.random_eps=0.1"], "agent.random_eps is not an option of agents.SAC"),
    ],
)
def test_bad_input_fails_before_training_with_a_clear_message(tmp_path, overrides, expected):
    assert expected in failure(*overrides, run_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


@pytest.mark.parametrize(
    "override, returncode, expected",
    [
        ("buffer.size=-5", 2, "error: buffer.size=-5 is invalid: expected an integer > 0"),  # ours
        ("env=Nope", 1, "Available options in 'env'"),  # Hydra's
    ],
)
def test_the_cli_reports_bad_input_without_a_traceback(tmp_path, override, returncode, expected):
    proc = run_train("env=PointReach", *TINY, override, f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == returncode
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
