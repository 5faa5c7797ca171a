"""TensorBoard as the dashboard: the HParams view of a sweep, the config as text, one HParams entry per run
however often it resumes. Everything is read back with TensorBoard's own loaders and its HParams plugin."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import compose_config
from helpers.train_cli import run_train

from training.cli import train
from training.metrics import read_records
from training.resume import resume_config

pytest.importorskip("tensorboard")

from tensorboard import context  # noqa: E402
from tensorboard.backend.event_processing import data_provider, event_file_loader  # noqa: E402
from tensorboard.backend.event_processing import plugin_event_multiplexer as multiplexer  # noqa: E402
from tensorboard.plugins import base_plugin  # noqa: E402
from tensorboard.plugins.hparams import api_pb2, backend_context, list_session_groups, metadata  # noqa: E402

SWEEP_TINY = (
    "runner.epochs=2",
    "runner.cycles_per_epoch=2",
    "runner.episodes_per_cycle=1",
    "runner.updates_per_cycle=2",
    "runner.eval_episodes=2",
    "progress=false",
    "torch_threads=1",
)


def hparams_sessions(logdir: Path) -> dict[str, dict]:
    """What TensorBoard's HParams view lists for ``logdir``: run name -> ``{"hparams": {name: value},
    "metrics": {tag: (step, value)}, "status": ...}``, as its plugin answers the view's request."""
    mux = multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, str(logdir))
    plugin_context = backend_context.Context(base_plugin.TBContext(data_provider=provider, logdir=str(logdir)))
    request = api_pb2.ListSessionGroupsRequest(allowed_statuses=list(api_pb2.Status.values()), slice_size=1000)
    response = list_session_groups.Handler(context.RequestContext(), plugin_context, "", request).run()
    sessions = {}
    for group in response.session_groups:
        for session in group.sessions:
            sessions[session.name] = {
                "hparams": {k: getattr(v, v.WhichOneof("kind")) for k, v in group.hparams.items()},
                "metrics": {m.name.tag: (m.training_step, m.value) for m in session.metric_values},
                "status": session.status,
            }
    return sessions


def tagged_values(tb_dir: Path, tag: str) -> list:
    """Every summary value with ``tag`` in the event files of ``tb_dir``, in file order."""
    values = []
    for path in sorted(tb_dir.glob("events.out.tfevents.*")):
        for event in event_file_loader.EventFileLoader(str(path)).Load():
            values += [v for v in event.summary.value if v.tag == tag]
    return values


def test_sweep_hparams_view_lists_each_run_with_its_seed_and_final_success(tmp_path):
    proc = run_train("-m", "seed=0,1", "env=PointReach", *SWEEP_TINY, f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    sessions = hparams_sessions(tmp_path)
    assert sorted(sessions) == ["0_PointReach_seed0/tb", "1_PointReach_seed1/tb"]
    for seed, name in enumerate(sorted(sessions)):
        session = sessions[name]
        final = read_records(tmp_path / name.split("/")[0] / "metrics.jsonl")[-1]
        assert session["hparams"]["seed"] == seed
        assert session["hparams"]["env"] == "PointReach" and session["hparams"]["env.id"] == "PointReach-v0"
        assert session["hparams"]["agent._target_"] == "agents.DDPG"
        assert session["hparams"]["runner.epochs"] == 2 and session["hparams"]["world_size"] == 1
        step, success = session["metrics"]["eval/success_rate"]
        assert (step, success) == (final["env_steps"], pytest.approx(final["eval_success_rate"]))
        assert session["status"] == api_pb2.STATUS_SUCCESS


def test_config_is_text_on_the_run(tmp_path):
    run_dir = tmp_path / "run"
    cfg = compose_config("env=PointReach", *SWEEP_TINY, "runner.epochs=1")
    train(cfg, run_dir, overrides=["env=PointReach"])
    mux = multiplexer.EventMultiplexer({"run": str(run_dir / "tb")})
    mux.Reload()
    [event] = mux.Tensors("run", "config/text_summary")
    text = event.tensor_proto.string_val[0].decode()
    assert text.startswith("```yaml\n") and text.endswith("\n```")
    assert "id: PointReach-v0" in text and "epochs: 1" in text


def test_a_resumed_run_keeps_one_hparams_entry_whose_metrics_are_its_end(tmp_path):
    run_dir = tmp_path / "run"
    first = compose_config("env=PointReach", "seed=3", *SWEEP_TINY, "runner.epochs=1")
    train(first, run_dir, overrides=["seed=3"])
    train(resume_config(run_dir, ["runner.epochs=3"]), run_dir)
    assert len(list((run_dir / "tb").glob("events.out.tfevents.*"))) == 2  # one file per session
    assert len(tagged_values(run_dir / "tb", metadata.SESSION_START_INFO_TAG)) == 1
    assert len(tagged_values(run_dir / "tb", "config/text_summary")) == 1
    [session] = hparams_sessions(tmp_path).values()
    final = read_records(run_dir / "metrics.jsonl")[-1]
    assert final["epoch"] == 2 and session["hparams"]["seed"] == 3
    assert session["metrics"]["eval/success_rate"] == (final["env_steps"], pytest.approx(final["eval_success_rate"]))
