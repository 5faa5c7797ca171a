"""Checkpoint files: what a run writes, bad files and mismatches, atomic writes, the policy loader."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from conftest import compose_config
from helpers.point_runs import POINT_TINY

from agents.policy import load_policy
from envs import env_info, make_env
from her import checkpoint_file
from her.checkpoint_file import CheckpointError
from training import checkpoint
from training.cli import train

TINY = POINT_TINY


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
    assert action.shape == (2,) and action.dtype == np.float32
    # the saved actor on the saved normalizer statistics, computed here from the file's tensors alone
    saved = checkpoint.load(run_dir / "checkpoints" / "last.pt")["agent"]
    x = []
    for key, norm in (("observation", "obs_norm"), ("desired_goal", "goal_norm")):
        stats = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in saved[norm].items()}
        assert stats["count"] > 0
        mean = stats["sum"] / stats["count"]
        std = torch.sqrt(torch.clamp(stats["sumsq"] / stats["count"] - mean**2, min=0.01**2))
        x.append(torch.clamp((torch.as_tensor(obs[key], dtype=torch.float64) - mean) / std, -5.0, 5.0))
    h = torch.cat(x).float()
    layers = sorted({k.split(".")[1] for k in saved["actor"]}, key=int)
    for i, layer in enumerate(layers):
        h = saved["actor"][f"net.{layer}.weight"] @ h + saved["actor"][f"net.{layer}.bias"]
        h = torch.relu(h) if i < len(layers) - 1 else torch.tanh(h)  # action_max = 1
    np.testing.assert_allclose(action, h.numpy(), atol=1e-5)
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


def test_a_dqn_policy_acts_with_action_indices_and_refuses_another_number_of_bits(tmp_path):
    """``load_policy`` rebuilds DQN from a bit-flipping run's checkpoint: its ``act`` gives the int64 indices of the
    greedy actions (one, or a batch), which step the env; the record has ``n_actions``, which a 9-bit env differs in."""
    overrides = [o for o in POINT_TINY if o != "env=PointReach"]
    train(compose_config(*overrides, "env=BitFlipping", "env.n_bits=8", "agent=dqn"), tmp_path)
    policy = load_policy(tmp_path)
    assert policy.env["n_actions"] == 8 and policy.env["action_dim"] == 1
    env = make_env("BitFlipping-v0", n_bits=8)
    obs, _ = env.reset(seed=0)
    action = policy.act(obs)
    assert action.dtype == np.int64 and action.shape == () and 0 <= action < 8
    with torch.no_grad():
        x = policy.agent.inputs(torch.as_tensor(obs["observation"])[None], torch.as_tensor(obs["desired_goal"])[None])
        assert action == int(policy.agent.q(x).argmax())
    env.step(action)
    batch = {k: np.stack([v] * 3) for k, v in obs.items()}
    np.testing.assert_array_equal(policy.act(batch), [action] * 3)
    nine = checkpoint.env_record("BitFlipping-v0", env_info(make_env("BitFlipping-v0", n_bits=9)), {"n_bits": 9})
    with pytest.raises(CheckpointError, match="does not fit BitFlipping-v0: .*n_actions: 8 in the file, 9 expected"):
        policy.check_env_sizes(nine, "x.pt")
    box = checkpoint.env_record("PointReach-v0", env_info(make_env("PointReach-v0")))
    assert "n_actions" not in box  # a Box env's record is as it was before discrete action spaces


def test_a_file_of_another_format_version_is_refused(run_dir, tmp_path):
    outer = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    torch.save({**outer, "version": checkpoint_file.VERSION + 1}, tmp_path / "newer.pt")
    with pytest.raises(CheckpointError, match=f"newer.pt: format version {checkpoint_file.VERSION + 1}, this code"):
        checkpoint.load(tmp_path / "newer.pt")


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda s: s.pop("record"), r"incomplete content: missing \['record'\]"),
        (lambda s: s.update(kind="weights"), "incomplete content: missing \\[\\], kind 'weights'"),
    ],
    ids=["missing-key", "unknown-kind"],
)
def test_checksummed_but_incomplete_content_is_refused(run_dir, tmp_path, change, expected):
    path = resaved(run_dir, tmp_path, change)
    with pytest.raises(CheckpointError, match=f"changed.pt: {expected}"):
        checkpoint.load(path)


def resumable_copy(run_dir, tmp_path, change=None):
    """A copy of the run dir, its last.pt changed by ``change(content)`` when given."""
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    if change is not None:
        saved = checkpoint.load(copy / "checkpoints" / "last.pt")
        change(saved)
        checkpoint.save(copy / "checkpoints" / "last.pt", saved)
    return copy


def test_resuming_with_another_agent_class_names_both(run_dir, tmp_path):
    copy = resumable_copy(run_dir, tmp_path)
    with pytest.raises(
        CheckpointError, match="does not fit this run: agent class: 'agents.DDPG' in the file, 'agents.TD3'"
    ):
        train(compose_config(*TINY, "agent=td3", f"resume={copy}"), copy)


def test_resuming_into_another_env_names_each_difference(run_dir, tmp_path):
    copy = resumable_copy(run_dir, tmp_path, lambda s: s["env"].update(id="Other-v0", obs_dim=3))
    with pytest.raises(
        CheckpointError, match="env.id: 'Other-v0' in the file, 'PointReach-v0' expected; env.obs_dim: 3 in the file, 2"
    ):
        train(compose_config(*TINY, f"resume={copy}"), copy)


def test_resuming_with_fewer_epochs_than_done_is_an_error_that_writes_nothing(run_dir, tmp_path):
    from training.options import ConfigError

    copy = resumable_copy(run_dir, tmp_path)
    before = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    with pytest.raises(
        ConfigError, match="runner.epochs=1 is invalid: expected at least 2, the epochs .*last.pt has done"
    ):
        train(compose_config(*TINY, "runner.epochs=1", f"resume={copy}"), copy)
    assert {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()} == before
    train(compose_config(*TINY, "runner.epochs=2", f"resume={copy}"), copy)  # as many as done: nothing to do
    assert checkpoint.load(copy / "checkpoints" / "last.pt")["counters"]["epoch"] == 2
