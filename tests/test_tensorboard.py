"""TensorBoard as the dashboard: the scalars and the HParams view of a sweep as a real ``tensorboard`` server
answers the browser over HTTP, the config as text, one HParams entry per run however often it resumes."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import compose_config
from helpers.train_cli import run_train

from training.cli import train
from training.metrics import TB_TAGS, read_records
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


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A 2-seed PointReach sweep of two tiny epochs, with machine options on its command line."""
    sweep_dir = tmp_path_factory.mktemp("runs") / "2025-01-01_12-00-00"
    proc = run_train("-m", "seed=0,1", "env=PointReach", "device=cpu", *SWEEP_TINY, f"hydra.sweep.dir={sweep_dir}")
    assert proc.returncode == 0, proc.stderr
    return sweep_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tensorboard(sweep):
    """``tensorboard --logdir <sweep>`` on a loopback port; yields ``get(path)`` and ``post(path, body)``, which
    return the server's JSON answers to the requests its web page makes."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(sweep), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def get(path: str):
        with urllib.request.urlopen(base + path, timeout=30) as answer:
            return json.load(answer)

    def post(path: str, body: dict):
        request = urllib.request.Request(base + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.load(answer)

    try:
        deadline = time.monotonic() + 120
        while True:  # until the server answers with both runs loaded
            try:
                if len(get("/data/plugin/scalars/tags")) == 2:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "tensorboard did not start"
            time.sleep(0.5)
        yield get, post
    finally:
        server.terminate()
        server.wait(timeout=30)


RUNS = ("0_PointReach_seed0", "1_PointReach_seed1")


def test_the_scalars_view_lists_success_first_and_plots_each_evaluation_at_its_env_steps(sweep, tensorboard):
    get, _ = tensorboard
    tags = get("/data/plugin/scalars/tags")
    assert sorted(tags) == [f"{run}/tb" for run in RUNS]
    for run in RUNS:
        records = read_records(sweep / run / "metrics.jsonl")
        assert sorted(tags[f"{run}/tb"])[:2] == ["success/eval", "success/train"]  # the first section: success
        assert set(tags[f"{run}/tb"]) == {tag for key, tag in TB_TAGS.items() if key in records[-1]}
        points = get(f"/data/plugin/scalars/scalars?run={run}/tb&tag=success/eval")
        assert [(step, value) for _, step, value in points] == [
            (r["env_steps"], pytest.approx(r["eval_success_rate"])) for r in records
        ]


def test_the_hparams_view_shows_the_sweep_first_rows_named_by_run_and_no_machine_facts(sweep, tensorboard):
    _, post = tensorboard
    experiment = post("/data/plugin/hparams/experiment", {"experimentName": ""})
    names = [h["name"] for h in experiment["hparamInfos"]]
    assert names[0] == "seed" and [h["name"] for h in experiment["hparamInfos"] if h["differs"]] == ["seed"]
    assert {"env", "env.id", "agent._target_", "agent.lr_actor", "runner.epochs", "world_size"} <= set(names)
    machine = [n for n in names if n.split(".")[0] in ("device", "torch_threads", "progress") or "updates_per_s" in n]
    assert machine == []
    assert [m["name"]["tag"] for m in experiment["metricInfos"]][:2] == ["success/eval", "success/train"]
    statuses = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]
    answer = post("/data/plugin/hparams/session_groups",
                  {"experimentName": "", "allowedStatuses": statuses, "startIndex": 0, "sliceSize": 100})  # fmt: skip
    groups = {g["name"]: g for g in answer["sessionGroups"]}
    assert sorted(groups) == [f"{run} ({sweep.name})" for run in RUNS]
    for seed, run in enumerate(RUNS):
        group = groups[f"{run} ({sweep.name})"]
        final = read_records(sweep / run / "metrics.jsonl")[-1]
        assert group["hparams"]["seed"] == seed and group["hparams"]["env"] == "PointReach"
        assert group["hparams"]["agent._target_"] == "agents.DDPG" and group["hparams"]["runner.epochs"] == 2
        [session] = group["sessions"]
        assert session["name"] == f"{run}/tb" and session["status"] == "STATUS_SUCCESS"
        metrics = {m["name"]["tag"]: (m["trainingStep"], m["value"]) for m in session["metricValues"]}
        assert metrics["success/eval"] == (final["env_steps"], pytest.approx(final["eval_success_rate"]))


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
    assert session["metrics"]["success/eval"] == (final["env_steps"], pytest.approx(final["eval_success_rate"]))
