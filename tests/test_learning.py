"""Seeded learning runs through ``train(cfg)``: the same function the CLI and sweeps call."""

from __future__ import annotations

import json

import pytest
from conftest import compose_config

from training.cli import train

THRESHOLD = 0.9


def read_metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def stop_when_solved(monkeypatch):
    """End a run after its first evaluation at or above ``THRESHOLD`` (epochs after it cannot change the
    assertion, which is on that evaluation): each runner ``train`` builds gets an epoch-end hook that sets its
    epoch budget to the epochs done. The run finishes as usual (last.pt, policy.pt)."""
    from training import cli as train_module

    build_runner = train_module.build_runner

    def building(*args, **kwargs):
        runner, info = build_runner(*args, **kwargs)

        def stop_if_solved(runner, record) -> None:
            if record["eval_success_rate"] >= THRESHOLD:
                runner.epochs = runner.epoch

        runner.epoch_end_hooks.insert(0, stop_if_solved)
        return runner, info

    monkeypatch.setattr(train_module, "build_runner", building)


@pytest.mark.slow
def test_point_env_is_solved(tmp_path, stop_when_solved):
    cfg = compose_config("env=PointReach", "seed=1", "torch_threads=1", "progress=false", "logger.tensorboard=false")
    metrics = train(cfg, tmp_path)
    assert metrics["eval_success_rate"] >= THRESHOLD, read_metrics(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("agent", ["td3", "sac"])
def test_point_env_is_solved_by_td3_and_sac(tmp_path, agent, stop_when_solved):
    # Seed 2 of seeds 0-4 (TD3) and 0-9 (SAC), all of which ended at 0.95-1.0 (docs/agents.md).
    args = (
        "env=PointReach",
        f"agent={agent}",
        "seed=2",
        "torch_threads=1",
        "progress=false",
        "logger.tensorboard=false",
    )
    metrics = train(compose_config(*args), tmp_path)
    assert metrics["eval_success_rate"] >= THRESHOLD, read_metrics(tmp_path)


@pytest.mark.slow
def test_fetch_reach_is_solved(tmp_path, stop_when_solved):
    cfg = compose_config(
        "env=FetchReach", "seed=1", "torch_threads=1", "progress=false", "logger.tensorboard=false", "runner.epochs=8"
    )
    metrics = train(cfg, tmp_path)
    assert metrics["eval_success_rate"] >= THRESHOLD, read_metrics(tmp_path)


# DQN on 8-bit flipping: 2 epochs of 10 cycles x 16 episodes of 8 steps (2,560 env steps, 800 updates), a few
# seconds. Seeds 0-4 all reached 0.91-1.00 with hindsight by the second evaluation, and 0.00-0.02 without it.
BIT_FLIPPING = (
    "env=BitFlipping",
    "env.n_bits=8",
    "agent=dqn",
    "seed=0",
    "runner.epochs=2",
    "runner.cycles_per_epoch=10",
    "torch_threads=1",
    "progress=false",
    "logger.tensorboard=false",
)


@pytest.mark.slow
def test_bit_flipping_is_solved_by_dqn_with_hindsight_and_not_without(tmp_path):
    """The HER paper's first experiment in small: the same DQN budget solves 8 bits with hindsight goals and
    almost never reaches a goal without them (``buffer.replay_k=0``)."""
    her = train(compose_config(*BIT_FLIPPING), tmp_path / "her")
    assert her["eval_success_rate"] >= THRESHOLD, read_metrics(tmp_path / "her")
    plain = train(compose_config(*BIT_FLIPPING, "buffer.replay_k=0"), tmp_path / "plain")
    assert plain["eval_success_rate"] <= 0.1, read_metrics(tmp_path / "plain")


def test_same_seed_gives_identical_metrics(tmp_path):
    args = (
        "env=PointReach",
        "seed=3",
        "progress=false",
        "logger.tensorboard=false",
        "runner.epochs=2",
        "torch_threads=1",
    )
    train(compose_config(*args), tmp_path / "a")
    train(compose_config(*args), tmp_path / "b")
    timing = ("wall_s", "env_steps_per_s", "updates_per_s", "collect_s", "update_s", "eval_s")
    a, b = ([{k: v for k, v in r.items() if k not in timing} for r in read_metrics(tmp_path / d)] for d in "ab")
    assert len(a) == 2 and a == b
