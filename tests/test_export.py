"""A policy exported to ONNX or TorchScript gives the actions of ``agents.policy.load_policy``: the normalizers (their
clipping too) and the action scaling are inside the file, for DDPG, TD3 and SAC; DQN's gives its action indices."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers.agents_small import make
from helpers.fixed_batch import OBS, A, G
from helpers.train_cli import ROOT

from agents import DDPG, DQN, SAC, TD3
from agents.export import ExportError, export_policy
from agents.policy import load_policy
from her import checkpoint_file
from her.checkpoint_file import CheckpointError

ort = pytest.importorskip("onnxruntime")


def write_checkpoint(run_dir, cls, **kwargs):
    """A policy checkpoint ``run_dir/policy.pt`` of a small ``cls`` agent (``action_max`` 2, options ``kwargs``) whose
    normalizers have seen data around 3 with std 0.5 (so that inputs far away are clipped)."""
    agent = make(cls, seed=1, **kwargs)
    rng = np.random.default_rng(0)
    agent.update_normalizers(rng.normal(3.0, 0.5, (256, OBS)), rng.normal(-1.0, 0.5, (256, G)))
    with torch.no_grad():  # large last-layer weights: actions near the bounds, where tanh and the scaling matter
        agent.actor.net[-1].weight.mul_(20.0)
    env = {"id": "Toy-v0", "obs_dim": OBS, "goal_dim": G, "action_dim": A, "action_max": 2.0, "horizon": 10}
    content = {
        "kind": "policy", "env": env, "agent_class": f"agents.{cls.__name__}",
        "agent_kwargs": {"hidden": [32, 32], **kwargs},
        "agent": agent.state_dict(), "config": {}, "counters": {"epoch": 1, "env_steps": 10, "updates": 2},
        "record": {}, "training": None,
    }  # fmt: skip
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_file.save(run_dir / "policy.pt", content)
    return run_dir / "policy.pt"


def inputs(n=64, seed=0):
    """``[n, OBS]`` observations and ``[n, G]`` goals: a third near the normalizers' data, the rest up to 100 away."""
    rng = np.random.default_rng(seed)
    scale = np.where(np.arange(n)[:, None] < n // 3, 0.5, 100.0)
    obs = (3.0 + scale * rng.standard_normal((n, OBS))).astype(np.float32)
    goal = (-1.0 + scale * rng.standard_normal((n, G))).astype(np.float32)
    return obs, goal


@pytest.mark.parametrize("cls", [DDPG, TD3, SAC])
def test_an_onnx_policy_acts_as_the_loaded_policy(tmp_path, cls):
    checkpoint = write_checkpoint(tmp_path / "run", cls)
    path = export_policy(checkpoint, "onnx")
    assert path == tmp_path / "run" / "policy.onnx"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["observation", "desired_goal"]
    assert [o.name for o in session.get_outputs()] == ["action"]
    policy = load_policy(checkpoint)
    for n in (1, 64):  # the batch size is free
        obs, goal = inputs(n)
        expected = policy.act({"observation": obs, "desired_goal": goal})
        (action,) = session.run(None, {"observation": obs, "desired_goal": goal})
        assert action.shape == (n, A) and action.dtype == np.float32
        assert np.abs(action - expected).max() <= 1e-4
    assert np.abs(expected).max() > 1.5  # actions scaled beyond [-1, 1]: the test sees the action scaling
    assert len(list((tmp_path / "run").iterdir())) == 2  # one file written: no external weights beside it


def test_a_dqn_policy_exports_its_greedy_action_indices(tmp_path):
    """DQN's file gives ``load_policy``'s int64 indices, the greedy action of its normalized Q-network."""
    agent = DQN(OBS, G, 6, hidden=(32,))
    rng = np.random.default_rng(0)
    agent.update_normalizers(rng.normal(3.0, 0.5, (256, OBS)), rng.normal(-1.0, 0.5, (256, G)))
    env = {"id": "Toy-v0", "obs_dim": OBS, "goal_dim": G, "action_dim": 1, "action_max": 5.0, "n_actions": 6,
           "horizon": 10}  # fmt: skip
    content = {
        "kind": "policy", "env": env, "agent_class": "agents.DQN", "agent_kwargs": {"hidden": [32]},
        "agent": agent.state_dict(), "config": {}, "counters": {"epoch": 1, "env_steps": 10, "updates": 2},
        "record": {}, "training": None,
    }  # fmt: skip
    checkpoint = tmp_path / "run" / "policy.pt"
    checkpoint.parent.mkdir()
    checkpoint_file.save(checkpoint, content)
    obs, goal = inputs()
    expected = load_policy(checkpoint).act({"observation": obs, "desired_goal": goal})
    assert len(set(expected.tolist())) > 1  # the inputs lead to different actions
    session = ort.InferenceSession(str(export_policy(checkpoint, "onnx")), providers=["CPUExecutionProvider"])
    (action,) = session.run(None, {"observation": obs, "desired_goal": goal})
    assert action.dtype == np.int64 and action.shape == (64,)
    np.testing.assert_array_equal(action, expected)
    module = torch.jit.load(str(export_policy(checkpoint, "torchscript")))
    np.testing.assert_array_equal(module(torch.as_tensor(obs), torch.as_tensor(goal)).numpy(), expected)


def test_actor_averaged_exports_the_polyak_average_and_is_refused_without_one(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "run", TD3, eval_polyak=0.5)
    saved = checkpoint_file.load(checkpoint)
    saved["agent"]["actor_average"] = {k: -v for k, v in saved["agent"]["actor"].items()}  # another actor
    checkpoint_file.save(checkpoint, saved)
    obs, goal = inputs()
    for actor in ("online", "averaged"):
        path = export_policy(checkpoint, "onnx", tmp_path / f"{actor}.onnx", actor=actor)
        (action,) = ort.InferenceSession(str(path)).run(None, {"observation": obs, "desired_goal": goal})
        expected = load_policy(checkpoint, actor=actor).act({"observation": obs, "desired_goal": goal})
        assert np.abs(action - expected).max() <= 1e-4
    online = load_policy(checkpoint).act({"observation": obs, "desired_goal": goal})
    assert np.abs(online - expected).max() > 0.5  # the averaged actor is another policy

    plain = write_checkpoint(tmp_path / "plain", TD3)
    with pytest.raises(CheckpointError, match="this TD3 keeps no averaged actor"):
        export_policy(plain, "onnx", tmp_path / "p.onnx", actor="averaged")
    with pytest.raises(ExportError, match="actor='mean' is invalid: expected one of online, averaged"):
        export_policy(plain, "onnx", tmp_path / "p.onnx", actor="mean")


def test_a_torchscript_policy_acts_as_the_loaded_policy(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "run", SAC)
    path = export_policy(tmp_path / "run" / "policy.pt", "torchscript", tmp_path / "sac.pt")
    module = torch.jit.load(str(path))
    obs, goal = inputs()
    action = module(torch.as_tensor(obs), torch.as_tensor(goal)).numpy()
    expected = load_policy(checkpoint).act({"observation": obs, "desired_goal": goal})
    assert np.abs(action - expected).max() <= 1e-4


def test_the_export_cli_writes_into_the_run_dir(tmp_path):
    run_dir = tmp_path / "run"
    write_checkpoint(run_dir / "checkpoints", DDPG).rename(run_dir / "checkpoints" / "last.pt")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "export.py"), f"policy={run_dir}", "format=torchscript"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"exported {run_dir} -> {run_dir / 'last.torchscript.pt'}"
    assert torch.jit.load(str(run_dir / "last.torchscript.pt")) is not None


def test_the_export_cli_refuses_bad_input_without_a_traceback(tmp_path, capsys):
    from export import main  # scripts/export.py

    write_checkpoint(tmp_path / "run", SAC)
    missing = tmp_path / "nowhere"
    for args, message in [
        ((f"policy={tmp_path / 'run'}", "format=tflite"), "format='tflite' is invalid: expected one of onnx, torchscr"),
        ((f"policy={missing}",), f"checkpoint {missing}: no such file (expected a run dir with checkpoints/, or a"),
        (("policy=x", "fromat=onnx"), "fromat=onnx: expected key=value with a key of policy, format, output"),
        (("format=onnx",), "policy= is required: a run dir or a checkpoint file"),
    ]:  # fmt: skip
        assert main(list(args)) == 2
        assert capsys.readouterr().err.startswith(f"error: {message}")


def test_export_refuses_an_output_it_cannot_write(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "run", TD3)
    with pytest.raises(ExportError, match="output=.* is invalid: expected a file path in an existing folder"):
        export_policy(checkpoint, "onnx", tmp_path / "missing" / "p.onnx")
    with pytest.raises(ExportError, match="output=.* is invalid: it is the checkpoint exported"):
        export_policy(checkpoint, "torchscript", checkpoint)
    with pytest.raises(CheckpointError, match="no such file"):
        export_policy(tmp_path / "run" / "best.pt", "onnx")


def test_the_onnxruntime_example_of_the_docs_runs_with_numpy_alone(tmp_path, capsys):
    text = (ROOT / "docs" / "runs.md").read_text()
    [block] = [b for b in re.findall(r"^```python\n(.*?)^```", text, re.S | re.M) if "import onnxruntime" in b]
    assert re.findall(r"^(?:import|from) (\w+)", block, re.M) == ["numpy", "onnxruntime"]
    path = export_policy(write_checkpoint(tmp_path / "run", TD3), "onnx")
    block = block.replace("runs/FetchReach/2025-01-01_12-00-00/last.onnx", str(path))
    exec(compile(block, "<docs/runs.md>", "exec"), {"__name__": "doc_example"})
    assert capsys.readouterr().out.strip() == f"(4, {A})"
