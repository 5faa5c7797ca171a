"""scripts/evaluate.py and training.evaluate (episodes, JSON, video) and scripts/plot.py (learning curves per env)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CONFIG_DIR, compose_config
from hydra import compose, initialize_config_dir
from plot import main as plot_main

from envs import make_env, make_vector_env
from her.checkpoint_file import CheckpointError
from training import checkpoint
from training.cli import train
from training.collect import collect_episodes
from training.evaluate import evaluate
from training.options import ConfigError
from training.video import render_episodes, resize_clip

ROOT = Path(__file__).resolve().parent.parent


def evaluate_config(*overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="evaluate", overrides=list(overrides))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A short point-env run whose checkpoints then get a hand-made actor that steers toward the goal, so that
    evaluations reach goals after seed-dependent numbers of steps (returns tell evaluations apart)."""
    run_dir = tmp_path_factory.mktemp("run")
    overrides = ("env=PointReach", "runner.epochs=1", "runner.cycles_per_epoch=1", "runner.updates_per_cycle=2")
    train(compose_config(*overrides, "torch_threads=1", "progress=false", "logger.tensorboard=false"), run_dir)
    for name in ("checkpoints/last.pt", "checkpoints/best.pt", "policy.pt"):
        saved = checkpoint.load(run_dir / name)
        saved["agent"]["actor"] = toward_goal_actor(saved["agent"]["actor"])
        for norm in ("obs_norm", "goal_norm"):  # no statistics: the identity
            saved["agent"][norm] = {"sum": np.zeros(2), "sumsq": np.zeros(2), "count": 0}
        checkpoint.save(run_dir / name, saved)
    return run_dir


def toward_goal_actor(actor: dict) -> dict:
    """Weights of the 2-64-64-2 point-env actor for ``tanh(5 (goal - obs))`` on inputs ``[obs, goal]``: the
    first layer splits each ``goal_i - obs_i`` into its positive and negative part (ReLU), the second passes them
    on, the last joins them."""
    out = {k: torch.zeros_like(v) for k, v in actor.items()}
    for i in range(2):
        out["net.0.weight"][2 * i, [i, 2 + i]] = torch.tensor([-1.0, 1.0])
        out["net.0.weight"][2 * i + 1, [i, 2 + i]] = torch.tensor([1.0, -1.0])
        out["net.2.weight"][2 * i, 2 * i] = out["net.2.weight"][2 * i + 1, 2 * i + 1] = 1.0
        out["net.4.weight"][i, 2 * i], out["net.4.weight"][i, 2 * i + 1] = 5.0, -5.0
    return out


def toward_goal(obs: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """A deterministic point-env controller: ``[n, 2], [n, 2] -> [n, 2]``."""
    return np.clip(5.0 * (goal - obs), -1.0, 1.0).astype(np.float32)


def test_video_episodes_replay_the_first_evaluated_ones():
    envs = make_vector_env("PointReach-v0", 1)
    evaluated = collect_episodes(envs, toward_goal, 4, 50, seed=7)
    rendered = render_episodes(make_env("PointReach-v0", render_mode="rgb_array"), toward_goal, 3, seed=7)
    assert [e.ret for e in rendered] == evaluated.ret[:3].tolist()
    assert [e.success for e in rendered] == evaluated.success[:3].tolist()
    assert rendered[0].frames.shape == (51, 128, 128, 3) and rendered[0].frames.dtype == np.uint8


def test_evaluate_cli_writes_json_and_a_playable_video(run_dir, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "evaluate.py"), f"policy={run_dir}", "episodes=4", "video=true"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads((run_dir / "eval_last.json").read_text())  # the default output: next to the run
    assert result["episodes"] == 4 and result["env_steps"] == 50 and result["seed"] == 1_000_000
    # the same numbers as an in-process evaluation of the same checkpoint on the same seed
    same = evaluate(evaluate_config(f"policy={run_dir}/checkpoints/last.pt", "episodes=4", f"output={tmp_path}/x.json"))
    assert (result["success_rate"], result["mean_return"]) == (same["success_rate"], same["mean_return"])
    assert proc.stdout.startswith(f"success_rate {result['success_rate']:.3f} mean_return {result['mean_return']:.2f}")
    assert "over 4 episodes of PointReach-v0" in proc.stdout
    assert result["video"]["frames"] == 3 * 51 and result["video"]["path"] == str(run_dir / "eval_last.mp4")
    import imageio.v2 as imageio

    frames = [frame for frame in imageio.get_reader(run_dir / "eval_last.mp4")]  # list() trips on len == inf
    assert len(frames) == 3 * 51 and frames[0].shape == (128, 128, 3)

    # The same frames in the run's TensorBoard, as an animated image at the checkpoint's env steps.
    from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer

    assert result["video"]["tensorboard"] == {"log_dir": str(run_dir / "tb"), "tag": "eval/video_last"}
    mux = EventMultiplexer({"run": str(run_dir / "tb")})
    mux.Reload()
    [event] = mux.Tensors("run", "eval/video_last")
    width, height, gif = event.tensor_proto.string_val
    assert (event.step, width, height) == (50, b"128", b"128")
    from PIL import Image, ImageSequence

    with Image.open(io.BytesIO(gif)) as image:  # repeated frames merge into longer ones
        durations = [frame.info["duration"] for frame in ImageSequence.Iterator(image)]
        assert image.size == (128, 128) and sum(durations) == 3 * 51 * 40  # 153 frames at 25 fps


def test_evaluate_cli_exits_2_on_bad_input_without_a_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "evaluate.py"), f"policy={tmp_path}/nope.pt"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: checkpoint {tmp_path}/nope.pt: no such file")
    assert "Traceback" not in proc.stderr


def test_evaluate_is_deterministic_and_writes_where_asked(run_dir, tmp_path):
    def run(*overrides: str) -> dict:
        return evaluate(evaluate_config(f"policy={run_dir}/checkpoints/best.pt", "episodes=6", *overrides))

    a, b = run(f"output={tmp_path}/a.json"), run(f"output={tmp_path}/b.json")
    assert a["episodes"] == 6 and {**a, "output": None} == {**b, "output": None}
    assert json.loads((tmp_path / "a.json").read_text()) == {k: v for k, v in a.items() if k != "output"}
    assert a["success_rate"] > 0.5 and a["mean_return"] > -50  # (the hand-made actor steers to the goals)
    other = run(f"output={tmp_path}/c.json", "seed=5")
    assert other["seed"] == 5 and other["mean_return"] != a["mean_return"]  # other episodes
    default = run()  # next to the run, named after the checkpoint
    assert default["output"] == str(run_dir / "eval_best.json") and (run_dir / "eval_best.json").exists()
    assert default["checkpoint"] == str(run_dir / "checkpoints" / "best.pt")
    assert default["mean_return"] == a["mean_return"]


def test_video_format_gif_writes_the_rendered_episodes_resized_as_a_looping_gif(run_dir, tmp_path):
    overrides = ("episodes=2", "video=true", "video_episodes=2", "tensorboard=false", f"output={tmp_path}/e.json")
    result = evaluate(evaluate_config(f"policy={run_dir}", *overrides, "video_format=gif", "video_size=64"))
    gif = run_dir / "eval_last.gif"
    assert result["video"]["path"] == str(gif) and result["video"]["size"] == [64, 64]
    assert result["video"]["frames"] == 2 * 51 and result["video"]["bytes"] == gif.stat().st_size
    from PIL import Image, ImageSequence

    with Image.open(gif) as image:  # repeated frames merge into longer ones
        durations = [frame.info["duration"] for frame in ImageSequence.Iterator(image)]
        assert image.size == (64, 64) and image.info["loop"] == 0 and sum(durations) == 2 * 51 * 40
        first = np.asarray(image.convert("RGB"))
    rendered = render_episodes(make_env("PointReach-v0", render_mode="rgb_array"), lambda o, g: o * 0, 1, 1_000_000)
    expected = resize_clip(rendered[0].frames[:1], 64)[0].astype(int)  # the reset frame, before any action
    assert np.abs(first.astype(int) - expected).mean() < 8  # the same picture, up to the GIF's 256 colours


@pytest.mark.parametrize(
    "overrides, error, message",
    [
        ((), ConfigError, "policy is required"),
        (("policy=RUN/nope.pt",), CheckpointError, "nope.pt: no such file"),
        (("policy=RUN", "episodes=3", "num_envs=2"), ConfigError, "episodes=3 is invalid: expected a multiple of"),
        (("policy=RUN", "episodes=0"), ConfigError, "episodes=0 is invalid: expected an integer > 0"),
        (("policy=RUN", "env_id=Nope-v0"), ConfigError, "env_id='Nope-v0' is invalid: expected a registered env id"),
        (("policy=RUN", "env_id=FetchReach-v4"), CheckpointError, "PointReach-v0 does not fit FetchReach-v4"),
        (("policy=RUN", "video_format=avi"), ConfigError, "video_format='avi' is invalid: expected one of mp4, gif"),
        (("policy=RUN", "video_size=0"), ConfigError, "video_size=0 is invalid: expected an integer > 0"),
    ],
)
def test_evaluate_bad_input(run_dir, overrides, error, message):
    with pytest.raises(error, match=message):
        evaluate(evaluate_config(*(o.replace("RUN", str(run_dir)) for o in overrides)))


def test_actor_averaged_evaluates_the_polyak_average_into_its_own_file(run_dir, tmp_path):
    saved = checkpoint.load(run_dir / "policy.pt")
    saved["agent_kwargs"] = {**saved["agent_kwargs"], "eval_polyak": 0.99}
    # The average steers to the goals, the actor stands still (zero weights): the two evaluations tell them apart.
    saved["agent"]["actor_average"] = saved["agent"]["actor"]
    saved["agent"]["actor"] = {k: torch.zeros_like(v) for k, v in saved["agent"]["actor"].items()}
    averaged_dir = tmp_path / "averaged"
    averaged_dir.mkdir()
    checkpoint.save(averaged_dir / "policy.pt", saved)
    policy = f"policy={averaged_dir}/policy.pt"
    online, averaged = (evaluate(evaluate_config(policy, "episodes=6", f"actor={a}")) for a in ("online", "averaged"))
    assert online["actor"] == "online" and online["success_rate"] < 0.5
    assert online["output"] == str(averaged_dir / "eval_policy.json")
    assert averaged["actor"] == "averaged" and averaged["success_rate"] > 0.5
    assert averaged["output"] == str(averaged_dir / "eval_policy_averaged.json")
    with pytest.raises(CheckpointError, match="keeps no averaged actor \\(train with agent.eval_polyak=<number>"):
        evaluate(evaluate_config(f"policy={run_dir}", "actor=averaged"))
    with pytest.raises(ConfigError, match="actor='best' is invalid: expected one of online, averaged"):
        evaluate(evaluate_config(f"policy={run_dir}", "actor=best"))


def test_evaluate_checks_where_it_writes_and_refuses_options_it_does_not_use(run_dir, tmp_path, monkeypatch):
    from training import evaluate as script

    def no_episodes(*args, **kwargs):
        raise AssertionError("episodes ran before the options were checked")

    monkeypatch.setattr(script, "collect_episodes", no_episodes)
    missing = tmp_path / "missing" / "x.json"
    with pytest.raises(ConfigError, match=rf"output={missing} is invalid: cannot write {missing}: its folder .* exist"):
        evaluate(evaluate_config(f"policy={run_dir}", f"output={missing}"))
    with pytest.raises(ConfigError, match=rf"output={tmp_path} is invalid: cannot write {tmp_path}: it is a folder"):
        evaluate(evaluate_config(f"policy={run_dir}", f"output={tmp_path}"))
    with pytest.raises(ConfigError, match=r"env is not an option of scripts/evaluate.py: the env to evaluate on is"):
        evaluate(evaluate_config(f"policy={run_dir}", "+env=FetchReach"))
    with pytest.raises(ConfigError, match=r"bogus is not an option of scripts/evaluate.py \(its options: actor, devi"):
        evaluate(evaluate_config(f"policy={run_dir}", "+bogus=1"))


def fake_run(path: Path, env_id: str, seed: int, success: list[float]) -> None:
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "config.yaml").write_text(f"seed: {seed}\nenv:\n  id: {env_id}\n")
    lines = [
        json.dumps({"epoch": i, "env_steps": 100 * (i + 1), "eval_success_rate": s}) for i, s in enumerate(success)
    ]
    (path / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def test_plot_draws_one_panel_per_env_from_globs(tmp_path, capsys):
    fake_run(tmp_path / "sweep" / "0_A_seed0", "A-v0", 0, [0.0, 0.5, 1.0])
    fake_run(tmp_path / "sweep" / "1_A_seed1", "A-v0", 1, [0.2, 0.7])  # still running: shorter
    fake_run(tmp_path / "other", "B-v0", 0, [0.1, 0.3])
    out = tmp_path / "plot.png"
    assert plot_main([str(tmp_path / "sweep"), str(tmp_path / "oth*"), "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}: A-v0 (2 runs), B-v0 (1 runs)"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_groups_runs_at_the_steps_all_of_them_reached(tmp_path):
    from training.curves import center, common, load_curve

    fake_run(tmp_path / "a", "A-v0", 0, [0.0, 0.5, 1.0])
    fake_run(tmp_path / "b", "A-v0", 1, [0.2, 0.7])
    fake_run(tmp_path / "c", "A-v0", 2, [0.4, 0.9, 1.0])
    curves = [load_curve(tmp_path / d, "eval_success_rate") for d in "abc"]
    steps, values = common(curves[:2])
    np.testing.assert_allclose(steps, [100, 200])
    np.testing.assert_allclose(values, [[0.0, 0.5], [0.2, 0.7]])
    steps, middle, low, high, what = center(curves[:2])  # two runs: their mean, no band
    np.testing.assert_allclose(middle, [0.1, 0.6])
    assert (low, high, what) == (None, None, "mean of 2 runs")
    steps, middle, low, high, what = center(curves)  # three: the IQM (of 3, the mean) and a 95% bootstrap band
    np.testing.assert_allclose(middle, [0.2, 0.7])
    assert what == "IQM of 3 runs, 95% CI" and low is not None and high is not None
    assert np.all(low <= middle) and np.all(middle <= high) and np.all(low >= 0.0) and np.all(high <= 0.9)


def test_plot_draws_each_group_in_its_own_colour_with_its_own_mean(tmp_path, monkeypatch):
    import dataclasses

    from training import curves

    fake_run(tmp_path / "a", "A-v0", 0, [0.0, 0.5, 1.0])
    fake_run(tmp_path / "b", "A-v0", 1, [0.2, 0.7, 0.9])
    fake_run(tmp_path / "c", "A-v0", 0, [1.0, 1.0, 1.0])
    loaded = [curves.load_curve(tmp_path / d, "eval_success_rate") for d in "abc"]
    grouped = [dataclasses.replace(c, group=g) for c, g in zip(loaded, ["k=1", "k=1", "k=2"], strict=True)]
    figures = []
    monkeypatch.setattr(curves.plt, "close", figures.append)
    assert curves.plot(grouped, "eval_success_rate", tmp_path / "p.png") == {"A-v0": 3}
    [ax] = figures[0].axes
    means = {line.get_label(): line for line in ax.get_lines() if line.get_label().startswith("k=")}
    assert sorted(means) == ["k=1 (mean of 2 runs)", "k=2 (seed 0)"]
    np.testing.assert_allclose(means["k=1 (mean of 2 runs)"].get_ydata(), [0.1, 0.6, 0.95])
    np.testing.assert_allclose(means["k=2 (seed 0)"].get_ydata(), [1.0, 1.0, 1.0])
    assert means["k=1 (mean of 2 runs)"].get_color() != means["k=2 (seed 0)"].get_color()
    legend = [text.get_text() for text in ax.get_legend().get_texts()]  # few short entries: inside the panel
    assert legend == ["k=1 (mean of 2 runs)", "k=2 (seed 0)", "each run"]


def test_plot_smoothing_is_a_trailing_mean(tmp_path, capsys):
    from training.curves import load_curve, smoothed, step_label

    fake_run(tmp_path / "a", "A-v0", 0, [0.0, 0.5, 1.0, 0.5])
    curve = smoothed(load_curve(tmp_path / "a", "eval_success_rate"), 2)
    np.testing.assert_allclose(np.stack([curve.steps, curve.values]), [[200, 300, 400], [0.25, 0.75, 0.75]])
    assert [step_label(x) for x in (250, 340_000, 1_500_000)] == ["250", "340k", "1.5M"]
    assert plot_main([str(tmp_path / "a"), "--smooth", "3", "-o", str(tmp_path / "p.png")]) == 0
    assert plot_main([str(tmp_path / "a"), "--smooth", "5"]) == 2
    assert "fewer than --smooth=5 evaluations" in capsys.readouterr().err


def test_plot_bad_input(tmp_path, capsys):
    assert plot_main([str(tmp_path / "nope")]) == 2
    assert f"error: {tmp_path / 'nope'}: no such file or directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert plot_main([str(tmp_path / "empty")]) == 2
    assert "no run dirs (with metrics.jsonl)" in capsys.readouterr().err
    fake_run(tmp_path / "unconfigured", "A-v0", 0, [0.5])
    (tmp_path / "unconfigured" / ".hydra" / "config.yaml").unlink()
    assert plot_main([str(tmp_path / "unconfigured"), "-o", str(tmp_path / "p.png")]) == 2
    assert f"error: {tmp_path / 'unconfigured'}: no .hydra/config.yaml to tell its env" in capsys.readouterr().err
    assert not (tmp_path / "p.png").exists()
    fake_run(tmp_path / "a", "A-v0", 0, [0.5])
    for smooth in ("0", "-2"):
        with pytest.raises(SystemExit) as exit_:
            plot_main([str(tmp_path / "a"), "--smooth", smooth])
        assert exit_.value.code == 2
        assert f"--smooth={smooth}: expected a positive integer" in capsys.readouterr().err
