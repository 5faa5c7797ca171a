"""Checkpoint files: what a run writes, bad files and mismatches, atomic writes, the policy loader."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from conftest import compose_config
from train import train

from agents.policy import load_policy
from envs import env_info, make_env
from her import checkpoint_file
from her.checkpoint_file import CheckpointError
from her.run import checkpoint

TINY = (
    "env=PointReach",
    "runner.epochs=2",
    "runner.cycles_per_epoch=1",
    "runner.updates_per_cycle=2",
    "runner.eval_episodes=2",
    "agent.batch_size=16",
    "torch_threads=1",
    "progress=false",
    "logger.tensorboard=false",
)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    train(compose_config(*TINY), run_dir)
    return run_dir


def test_a_run_writes_last_best_and_policy(run_dir):
    last = checkpoint.load(run_dir / "checkpoints" / "last.pt")
    assert last["kind"] == "training" and last["counters"] == {"epoch": 2, "env_steps": 100, "updates": 4}
    assert last["env"] == {
        "id": "PointReach-v0",
        "obs_dim": 2,
        "goal_dim": 2,
        "action_dim": 2,
        "action_max": 1.0,
        "horizon": 50,
    }
    assert last["training"]["buffer"]["n_stored_total"] == 2
    assert last["config"]["env"]["id"] == "PointReach-v0" and last["agent_kwargs"]["hidden"] == [64, 64]
    for name in ("checkpoints/best.pt", "policy.pt"):
        saved = checkpoint.load(run_dir / name)
        assert saved["kind"] == "policy" and saved["training"] is None


def test_last_is_written_every_n_epochs_and_at_the_end(tmp_path, monkeypatch):
    epochs = []
    save_last = checkpoint.Checkpointer.save_last

    def recording_save_last(self, runner):
        epochs.append(runner.epoch)
        return save_last(self, runner)

    monkeypatch.setattr(checkpoint.Checkpointer, "save_last", recording_save_last)
    train(compose_config(*TINY, "runner.epochs=5", "checkpoint.every=2"), tmp_path)
    assert epochs == [0, 2, 4, 5]  # the start, every 2 epochs, the end


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda b: b[: len(b) // 2], "unreadable, not a complete checkpoint file"),
        (lambda b: b[: len(b) // 2] + bytes([b[len(b) // 2] ^ 0xFF]) + b[len(b) // 2 + 1 :], "corrupt"),
        (lambda b: b"not a checkpoint", "unreadable"),
    ],
    ids=["truncated", "bit-flip", "garbage"],
)
def test_a_damaged_file_is_reported_with_its_name(run_dir, tmp_path, damage, expected):
    path = tmp_path / "damaged.pt"
    path.write_bytes(damage((run_dir / "checkpoints" / "last.pt").read_bytes()))
    with pytest.raises(CheckpointError, match=f"checkpoint {path}: {expected}"):
        checkpoint.load(path)
    with pytest.raises(CheckpointError, match="damaged.pt"):
        load_policy(path)


def test_content_that_does_not_match_its_checksum_is_refused(run_dir, tmp_path):
    outer = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    payload = outer["payload"].clone()
    payload[len(payload) // 2] ^= 0x01
    torch.save({**outer, "payload": payload}, tmp_path / "flipped.pt")
    with pytest.raises(CheckpointError, match="flipped.pt: corrupt: the content does not match its sha256 checksum"):
        checkpoint.load(tmp_path / "flipped.pt")


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pt: no such file"):
        checkpoint.load(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="no such file"):
        load_policy(tmp_path)  # a dir without checkpoints/
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="other.pt: not a her-fetch-checkpoint file"):
        checkpoint.load(tmp_path / "other.pt")


def test_a_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "x.pt"
    checkpoint.write_atomic(path, b"old")

    def fail(f):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_file, "_sync", fail)
    with pytest.raises(checkpoint_file.WriteError, match="cannot write .*x.pt: disk full"):
        checkpoint.write_atomic(path, b"new")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["x.pt"]


def resaved(run_dir, tmp_path, change) -> str:
    saved = checkpoint.load(run_dir / "checkpoints" / "best.pt")
    change(saved)
    path = tmp_path / "changed.pt"
    checkpoint.save(path, saved)
    return path


def test_other_network_sizes_are_never_half_loaded(run_dir, tmp_path):
    path = resaved(run_dir, tmp_path, lambda s: s["agent_kwargs"].update(hidden=[32]))
    with pytest.raises(CheckpointError, match=r"changed.pt: the agent state does not fit the agent: .*size mismatch"):
        load_policy(path)


def test_a_checkpoint_cannot_name_code_outside_agents(run_dir, tmp_path):
    path = resaved(run_dir, tmp_path, lambda s: s.update(agent_class="os.system"))
    with pytest.raises(CheckpointError, match="agent class 'os.system' is not in the 'agents' package"):
        load_policy(path)


def test_a_policy_checkpoint_cannot_be_resumed(run_dir, tmp_path):
    shutil.copytree(run_dir, tmp_path / "run")
    shutil.copy(run_dir / "policy.pt", tmp_path / "run" / "checkpoints" / "last.pt")
    with pytest.raises(CheckpointError, match="last.pt: is a policy checkpoint: resuming needs a training one"):
        train(compose_config(*TINY, f"resume={tmp_path / 'run'}"), tmp_path / "run")


def test_the_policy_acts_on_observation_dicts(run_dir):
    policy = load_policy(run_dir)
    assert policy.counters == {"epoch": 2, "env_steps": 100, "updates": 4}
    env = make_env("PointReach-v0")
    obs, _ = env.reset(seed=0)
    action = policy.act(obs)
    assert action.shape == (2,) and action.dtype == np.float32 and np.all(np.abs(action) <= 1.0)
    batch = {k: np.stack([v] * 3) for k, v in obs.items()}
    np.testing.assert_allclose(
        policy.act(batch), np.stack([action] * 3), atol=1e-6
    )  # batched kernels round differently
    with pytest.raises(ValueError, match="desired_goal has shape \\(3,\\), expected \\[2\\] or \\[n, 2\\]"):
        policy.act({"observation": obs["observation"], "desired_goal": np.zeros(3)})
    with pytest.raises(ValueError, match="no 'desired_goal'"):
        policy.act({"observation": obs["observation"]})


def test_a_policy_for_another_env_is_refused(run_dir):
    policy = load_policy(run_dir)
    fetch = checkpoint.env_record("FetchReach-v4", env_info(make_env("FetchReach-v4")))
    with pytest.raises(CheckpointError, match="a policy for PointReach-v0 does not fit FetchReach-v4: .*obs_dim: 2"):
        policy.check_env_sizes(fetch, "x.pt")
