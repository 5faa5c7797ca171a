"""runner.overlap: env worker processes run a cycle's episodes while its updates run. The schedule (batches drawn
before the cycle's episodes are stored), repeatable runs, exact resume, and the config checks."""

from __future__ import annotations

import os
import pickle
import signal

import numpy as np
import pytest
from conftest import compose_config
from helpers.stopped_runs import without_timing

from agents import DDPG, DQN, SAC
from envs import env_info, make_env, make_vector_env
from training import build, checkpoint
from training.build import build_runner
from training.cli import train
from training.collect import EpisodeWorker, UniformPolicy, collect_episodes, has_episode_workers, start_in_workers
from training.options import ConfigError
from training.resume import resume_config
from training.runner import Runner

OVERLAP = (
    "env=PointReach",
    "seed=3",
    "runner.overlap=true",
    "runner.epochs=3",
    "runner.cycles_per_epoch=3",
    "runner.updates_per_cycle=4",
    "runner.eval_episodes=2",
    "buffer.batch_size=32",
    "torch_threads=1",
    "progress=false",
    "logger.tensorboard=false",
    "agent.precision=fp32",
)


def collected_here_and_in_a_worker(env_id: str, kwargs: dict, agent, episodes: int, horizon: int):
    """The same exploring episodes of ``agent``'s pickled acting policy, collected in this process and in an env
    worker process (same seeds)."""
    policy = pickle.loads(pickle.dumps(agent.acting_policy()))
    local = make_vector_env(env_id, 1, kwargs=kwargs)
    workers = make_vector_env(env_id, 1, "async", kwargs, wrapper=EpisodeWorker)
    try:
        assert has_episode_workers(workers) and not has_episode_workers(local)
        rng = np.random.default_rng(7)
        here = collect_episodes(local, lambda o, g: policy(o, g, True, rng), episodes, horizon, seed=11)
        there = start_in_workers(workers, policy, True, [7], episodes, horizon, seed=11)()
    finally:
        local.close()
        workers.close()
    return here, there


@pytest.mark.parametrize("cls", [DDPG, SAC])
def test_a_policy_snapshot_pickles_and_acts_the_same_in_a_worker(cls):
    """What ``start_in_workers`` sends: the host policy (arrays and a small head) pickles, and a worker's episodes
    equal those collected here with a generator of the same seed."""
    info = env_info(make_env("PointReach-v0"))
    agent = cls(info.obs_dim, info.goal_dim, info.action_dim, info.action_max, hidden=(16, 16))
    here, there = collected_here_and_in_a_worker("PointReach-v0", {}, agent, episodes=2, horizon=50)
    for key in here.episodes:
        np.testing.assert_array_equal(here.episodes[key], there.episodes[key])
    np.testing.assert_array_equal(here.ret, there.ret)


def test_a_dqn_snapshot_pickles_and_flips_the_same_bits_in_a_worker():
    """DQN's epsilon-greedy head travels to a worker too, and a ``Discrete`` env's episodes (float indices) there
    equal those collected here."""
    agent = DQN(6, 6, 6, hidden=(16,), random_eps=0.5)
    here, there = collected_here_and_in_a_worker("BitFlipping-v0", {"n_bits": 6}, agent, episodes=3, horizon=6)
    assert here.episodes["action"].shape == (3, 6, 1) and len(np.unique(here.episodes["action"])) > 1
    for key in here.episodes:
        np.testing.assert_array_equal(here.episodes[key], there.episodes[key])


def test_uniform_policy_draws_in_the_bounds_from_the_given_rng():
    policy = UniformPolicy(np.array([-1.0, 0.0]), np.array([1.0, 2.0]))
    a, b = (policy(np.zeros((500, 3)), np.zeros((500, 1)), True, np.random.default_rng(0)) for _ in range(2))
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and (a[:, 0] >= -1).all() and (a[:, 1] >= 0).all() and (a[:, 1] <= 2).all()
    with pytest.raises(ValueError, match="need an rng"):
        policy(np.zeros((1, 3)), np.zeros((1, 1)), True, None)


def test_overlapped_cycles_learn_from_the_episodes_of_the_cycles_before(monkeypatch):
    """Each cycle's batches are drawn while the buffer holds the earlier cycles' episodes only; the first cycle
    (an empty buffer) collects first, as without overlap."""
    sizes_at_draw: list[int] = []
    draw = Runner.draw_batches

    def recording_draw(self: Runner, n: int):
        sizes_at_draw.append(self.buffer.n_transitions)
        return draw(self, n)

    monkeypatch.setattr(Runner, "draw_batches", recording_draw)
    runner, _ = build_runner(compose_config(*OVERLAP), run_dir=None)
    try:
        assert runner.overlap and has_episode_workers(runner.train_env)
        for _ in range(3):
            runner.train_cycle()
    finally:
        runner.close()
    assert sizes_at_draw == [50, 50, 100]  # cycle 0 after its episode; cycles 1, 2 before theirs
    assert runner.buffer.n_transitions == 150 and runner.env_steps == 150


def test_overlapped_runs_repeat_and_resume_exactly(tmp_path, monkeypatch):
    """Two runs of one seed log the same metrics; a run stopped mid-epoch and resumed logs them too."""
    once = tmp_path / "once"
    train(compose_config(*OVERLAP), once)
    again = tmp_path / "again"
    train(compose_config(*OVERLAP), again)
    assert without_timing(once) == without_timing(again)

    train_cycle = Runner.train_cycle

    def interrupted_cycle(self: Runner):  # Ctrl-C during the fifth cycle (mid-epoch 1): a stop after it
        if self.epoch * self.cycles_per_epoch + self.partial.cycles == 4:
            os.kill(os.getpid(), signal.SIGINT)
        return train_cycle(self)

    monkeypatch.setattr(Runner, "train_cycle", interrupted_cycle)
    run_dir = tmp_path / "run"
    assert train(compose_config(*OVERLAP), run_dir)["stopped"]
    assert checkpoint.load(run_dir / "checkpoints" / "last.pt")["counters"]["env_steps"] == 250
    assert not train(resume_config(run_dir), run_dir)["stopped"]
    assert without_timing(run_dir) == without_timing(once)


def test_overlap_needs_env_workers():
    with pytest.raises(ConfigError, match=r"env.vectorization='sync' is invalid with runner.overlap=true"):
        build_runner(compose_config(*OVERLAP, "env.vectorization=sync"), run_dir=None)
    with pytest.raises(ConfigError, match=r"env.vectorization='threads' is invalid: expected one of auto, sync"):
        build_runner(compose_config(*OVERLAP, "env.vectorization=threads"), run_dir=None)
    with pytest.raises(ConfigError, match=r"runner.overlap='yes' is invalid: expected true, false or \"auto\""):
        build_runner(compose_config(*OVERLAP, "runner.overlap=yes"), run_dir=None)
    local = make_vector_env("PointReach-v0", 1)
    try:
        runner, _ = build_runner(compose_config(*OVERLAP), run_dir=None)
        runner.close()
        with pytest.raises(Exception, match=r"overlap=True is invalid: expected train and eval envs of worker"):
            Runner(runner.agent, runner.buffer, local, local, 50, overlap=True)
    finally:
        local.close()


def test_auto_vectorization_follows_overlap():
    runner, _ = build_runner(compose_config(*OVERLAP, "env.vectorization=auto"), run_dir=None)
    try:
        assert has_episode_workers(runner.train_env) and has_episode_workers(runner.eval_env)
    finally:
        runner.close()
    runner, _ = build_runner(compose_config(*OVERLAP, "runner.overlap=false", "env.vectorization=auto"), None)
    try:
        assert not has_episode_workers(runner.train_env) and not runner.overlap
    finally:
        runner.close()


@pytest.mark.parametrize(
    ("vectorization", "cores", "expected"),
    [("auto", 2, True), ("auto", 1, False), ("async", 1, True), ("sync", 2, False)],
)
def test_auto_overlap_where_a_core_is_free_for_the_env_worker(monkeypatch, vectorization, cores, expected):
    monkeypatch.setattr(build, "usable_cores", lambda: cores)
    cfg = compose_config(*OVERLAP, "runner.overlap=auto", f"env.vectorization={vectorization}")
    assert build.overlap(cfg) is expected
    assert build.vectorization(cfg) == ("async" if expected or vectorization == "async" else "sync")
    runner, _ = build_runner(cfg, run_dir=None)
    try:
        assert runner.overlap is expected and has_episode_workers(runner.train_env) is expected
    finally:
        runner.close()
    # two ranks on this machine: each needs 2 cores of its own
    assert build.overlap(cfg, processes=2) is (vectorization == "async" or (vectorization == "auto" and cores >= 4))
