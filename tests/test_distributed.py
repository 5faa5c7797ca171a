"""Data-parallel training over torch.distributed (gloo, 2 ranks on the point env) and its one-process default."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from helpers.state_dicts import assert_states_equal
from torch import nn

from agents import DDPG, SAC, TD3
from envs import env_info, make_env, make_vector_env
from her import HerReplayBuffer
from training import checkpoint
from training.distributed import Distributed, GradReduce, RanksOutOfSync, agent_parts, init_distributed, rank_seed
from training.metrics import read_records
from training.rng import generator_from_state
from training.runner import Runner

ROOT = Path(__file__).resolve().parent.parent
WORLD = 2
EPOCHS, CYCLES, EPISODES = 2, 2, 1  # per rank; PointReach episodes are 50 steps


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_main(rank: int, port: int, out: Path) -> None:
    """One rank: train a point-env agent whose networks start from a rank-specific seed, then record its state,
    mean and sum reductions of known gradients, and whether a deliberate desync is caught."""
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(WORLD),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    distributed = init_distributed(torch.device("cpu"), check_every=1, timeout_s=120)
    info = env_info(make_env("PointReach-v0"))
    torch.manual_seed(100 + rank)  # different on purpose: attach() must copy rank 0's networks
    agent = DDPG(info.obs_dim, info.goal_dim, info.action_dim, info.action_max, hidden=(16, 16))
    distributed.attach(agent)
    buffer = HerReplayBuffer(10_000, info.horizon, info.obs_dim, info.goal_dim, info.action_dim, info.compute_reward)
    env = make_vector_env("PointReach-v0", 1, "sync")
    runner = Runner(
        agent,
        buffer,
        env,
        env,
        info.horizon,
        epochs=EPOCHS,
        cycles_per_epoch=CYCLES,
        episodes_per_cycle=EPISODES,
        updates_per_cycle=3,
        eval_episodes=2,
        seed=rank_seed(0, rank),
        progress=False,
        distributed=distributed,
    )
    record = runner.run()  # checks the replicas after every epoch (check_every=1)
    state = copy.deepcopy(agent.state_dict())

    reduced = {}
    for mode in GradReduce:
        layer = nn.Linear(3, 1)
        for p in layer.parameters():
            p.grad = torch.full_like(p, float(rank + 1))
        dataclasses.replace(distributed, grad_reduce=mode, _owns_group=False).all_reduce_grads(layer.parameters())
        reduced[mode.value] = layer.weight.grad.clone()

    # one epoch's record, as each rank would have it: summed counts, rank 0's clocks and counters, means of the
    # rest, None where a rank has none, rank 0's strings
    reduced_record = distributed.reduce_record(
        {
            "epoch": 3 + rank,
            "env_steps": 100 * (rank + 1),
            "buffer_transitions": 50 * (rank + 1),
            "updates": 7 + rank,
            "wall_s": 10.0 + rank,
            "updates_per_s": None if rank == 1 else 5.0,
            "eval_success_rate": 0.25 * (rank + 1),
            "q_mean": -1.0 - rank,
            "actor_loss": None if rank == 1 else 0.5,
            "note": f"rank{rank}",
        }
    )

    # TD3 and SAC replicas, on the same process group: short runs from rank-specific initializations
    replicas = {}
    for cls in (TD3, SAC):
        torch.manual_seed(200 + rank)
        other = cls(info.obs_dim, info.goal_dim, info.action_dim, info.action_max, hidden=(16, 16))
        dataclasses.replace(distributed, _parts=None, _owns_group=False).attach(other)
        other_buffer = HerReplayBuffer(
            10_000, info.horizon, info.obs_dim, info.goal_dim, info.action_dim, info.compute_reward
        )
        other_runner = Runner(
            other, other_buffer, env, env, info.horizon, epochs=1, cycles_per_epoch=2, episodes_per_cycle=1,
            updates_per_cycle=3, eval_episodes=1, seed=rank_seed(1, rank), progress=False,
        )  # fmt: skip
        other_runner.run()  # (no distributed= given: the replicas are compared by the test, not checked here)
        replicas[cls.__name__] = copy.deepcopy(other.state_dict())

    with torch.no_grad():  # desync one rank: the check must fail on every rank
        if rank == 1:
            next(agent.actor.parameters()).add_(1.0)
    try:
        distributed.check_in_sync()
        desync_error = ""
    except RanksOutOfSync as err:
        desync_error = str(err)
    # with check_every=2 the periodic check runs after every second epoch only (epochs count from 0)
    every_2nd = dataclasses.replace(distributed, check_every=2, _owns_group=False)
    periodic = []
    for epoch in range(4):
        try:
            every_2nd.periodic_check(epoch)
            periodic.append(False)
        except RanksOutOfSync:
            periodic.append(True)
    torch.save(
        {
            "state": state,
            "first_episode_obs": buffer.storage.stored()["obs"][0],
            "record": record,
            "reduced_grads": reduced,
            "reduced_record": reduced_record,
            "replicas": replicas,
            "desync_error": desync_error,
            "periodic_check_raised": periodic,
        },
        out / f"rank{rank}.pt",
    )
    env.close()
    distributed.close()


def run_ranks(tmp_path: Path) -> list[dict]:
    mp.spawn(rank_main, args=(free_port(), tmp_path), nprocs=WORLD, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def test_two_gloo_ranks_stay_identical_and_share_normalizer_statistics(tmp_path):
    r0, r1 = run_ranks(tmp_path)
    # each rank explored its own envs ...
    assert not np.array_equal(r0["first_episode_obs"], r1["first_episode_obs"])
    # ... yet the replicas (networks, targets, optimizer moments) are bit-identical
    for name in ("actor", "critic", "actor_target", "critic_target"):
        for key, t0 in r0["state"][name].items():
            assert torch.equal(t0, r1["state"][name][key]), f"{name}.{key}"
    for group0, group1 in zip(r0["state"]["critic_opt"]["state"].values(), r1["state"]["critic_opt"]["state"].values()):
        assert torch.equal(group0["exp_avg"], group1["exp_avg"])
    # normalizers hold the statistics of both ranks' relabeled samples: one horizon per episode per rank
    for norm in ("obs_norm", "goal_norm"):
        n0, n1 = r0["state"][norm], r1["state"][norm]
        assert n0["count"] == n1["count"] == WORLD * EPOCHS * CYCLES * EPISODES * 50
        np.testing.assert_array_equal(n0["sum"], n1["sum"])
        np.testing.assert_array_equal(n0["sumsq"], n1["sumsq"])
    # metrics: env steps of all ranks, the same record on both
    assert r0["record"]["env_steps"] == WORLD * EPOCHS * CYCLES * EPISODES * 50
    assert r0["record"]["world_size"] == WORLD
    assert r0["record"]["eval_success_rate"] == r1["record"]["eval_success_rate"]
    # gradients 1 (rank 0) and 2 (rank 1): mean 1.5, sum 3
    for r in (r0, r1):
        torch.testing.assert_close(r["reduced_grads"]["mean"], torch.full((1, 3), 1.5))
        torch.testing.assert_close(r["reduced_grads"]["sum"], torch.full((1, 3), 3.0))
    # a deliberate desync is reported on both ranks, naming the tensor; with check_every=2, after epochs 1 and 3
    for r in (r0, r1):
        assert "differ across 2 ranks: actor." in r["desync_error"], r["desync_error"]
        assert r["periodic_check_raised"] == [False, True, False, True]
    # the record reduction, the same on both ranks
    expected = {
        "epoch": 3,
        "env_steps": 300,
        "buffer_transitions": 150,
        "updates": 7,
        "wall_s": 10.0,
        "updates_per_s": 5.0,
        "eval_success_rate": 0.375,
        "q_mean": -1.5,
        "actor_loss": None,
        "note": "rank0",
        "world_size": 2,
    }
    assert r0["reduced_record"] == expected  # rank 0's record is the one logged
    combined = ("env_steps", "buffer_transitions", "eval_success_rate", "q_mean", "actor_loss", "world_size")
    assert {k: r1["reduced_record"][k] for k in combined} == {k: expected[k] for k in combined}
    assert all(type(r0["reduced_record"][k]) is int for k in ("epoch", "env_steps", "buffer_transitions", "updates"))
    # TD3 and SAC replicas stay identical too, SAC's temperature and its optimizer included (each rank keeps
    # its own noise generator, and TD3's last_actor_loss is the loss on the rank's own batch: a statistic)
    local = ("generator", "last_actor_loss")
    for name in ("TD3", "SAC"):
        a, b = ({k: v for k, v in r["replicas"][name].items() if k not in local} for r in (r0, r1))
        assert_states_equal(a, b, name)
    assert r0["replicas"]["SAC"]["temperature"]["log_alpha"] != math.log(0.1)  # alpha moved from its initial 0.1
    assert r0["replicas"]["SAC"]["alpha_opt"]["state"]


def test_torchrun_cli_writes_one_run_dir(tmp_path):
    """The real command: ``torchrun --nproc_per_node=2 scripts/train.py``; only rank 0 writes a run dir."""
    env = {**os.environ, "TMPDIR": str(tmp_path / "scratch"), "PYTHONPATH": str(ROOT)}
    (tmp_path / "scratch").mkdir()
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}"]
        + [str(ROOT / "scripts" / "train.py"), "env=PointReach", "torch_threads=1", "progress=false"]
        + ["runner.epochs=2", "runner.cycles_per_epoch=2", "runner.updates_per_cycle=2", "runner.eval_episodes=2"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dirs = [p.parent for p in work.rglob("metrics.jsonl")]
    assert len(run_dirs) == 1 and len(list((work / "runs" / "PointReach").iterdir())) == 1
    run_dir = run_dirs[0]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["env_steps"] for r in records] == [200, 400]  # 2 ranks x 2 cycles x 1 episode x 50 steps per epoch
    assert all(r["world_size"] == WORLD for r in records)
    assert (run_dir / "policy.pt").exists() and (run_dir / "tb").is_dir()
    assert proc.stdout.count("done:") == 1
    assert not list((tmp_path / "scratch").rglob("metrics.jsonl"))  # rank 1's scratch holds Hydra's log only


def test_without_torchrun_there_is_one_rank_and_no_communication(monkeypatch):
    for var in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    d = init_distributed(torch.device("cpu"))
    assert (d.rank, d.world_size, d.is_main, d.grad_reduce) == (0, 1, True, GradReduce.MEAN)
    agent = DDPG(2, 2, 2, hidden=(8,))
    before = [p.clone() for p in agent.actor.parameters()]
    d.attach(agent)
    assert all(torch.equal(a, b) for a, b in zip(before, agent.actor.parameters()))
    assert agent.obs_norm.reduce is None
    d.check_in_sync()
    assert d.reduce_record({"env_steps": 100, "eval_success_rate": 0.5}) == {
        "env_steps": 100,
        "eval_success_rate": 0.5,
        "world_size": 1,
    }


def test_rank_seeds_keep_rank_zero_and_differ_elsewhere():
    assert rank_seed(7, 0) == 7
    seeds = {rank_seed(s, r) for s in range(3) for r in range(4)}
    assert len(seeds) == 12


@pytest.mark.parametrize("kwargs, message", [({"grad_reduce": "max"}, "grad_reduce"), ({"check_every": -1}, "check")])
def test_bad_options_name_the_option(kwargs, message):
    from her import OptionError

    with pytest.raises(OptionError, match=message):
        init_distributed(torch.device("cpu"), **kwargs)


def test_distributed_default_is_a_no_op_object():
    assert Distributed().reduce_record({}) == {"world_size": 1}


@pytest.mark.parametrize("cls", [DDPG, TD3, SAC])
def test_agent_parts_are_what_stateful_lists(cls):
    agent = cls(5, 2, 2, 1.0, hidden=(8,))
    parts = agent_parts(agent)
    found = {**parts.modules, **parts.optimizers, **parts.normalizers}
    assert sorted(found) == sorted(agent.stateful()) and all(found[n] is v for n, v in agent.stateful().items())
    assert ("temperature" in parts.modules) == (cls is SAC)


def test_agent_parts_refuse_a_part_they_cannot_sync():
    class ToyAgent:
        def stateful(self):
            return {"policy": nn.Linear(2, 2), "schedule": object()}

    with pytest.raises(TypeError, match=r"ToyAgent in sync across ranks: schedule \(object\)"):
        agent_parts(ToyAgent())


# --- faults of a multi-process run: stop and resume, a dead rank, two nodes ----------------------------------
SMALL = ["env=PointReach", "torch_threads=1", "progress=false", "logger.tensorboard=false", "agent.precision=fp32",
         "runner.cycles_per_epoch=2", "runner.updates_per_cycle=2", "runner.eval_episodes=2"]  # fmt: skip
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
TRAIN = str(ROOT / "scripts" / "train.py")


def job_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a job's processes: ranks > 0 put their Hydra files under ``tmp_path/scratch``."""
    (tmp_path / "scratch").mkdir(exist_ok=True)
    return {**os.environ, "TMPDIR": str(tmp_path / "scratch"), "PYTHONPATH": str(ROOT)}


def wait_for_first_epoch(run_dir: Path, procs: list[subprocess.Popen]) -> None:
    metrics = run_dir / "metrics.jsonl"
    while not (metrics.exists() and read_records(metrics)):
        for proc in procs:
            assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)


def test_sigterm_to_torchrun_stops_every_rank_after_one_cycle_and_the_resume_stays_in_sync(tmp_path):
    """SIGTERM to the launcher reaches both ranks, at different moments: they agree on the cycle to stop after,
    rank 0 writes the checkpoint, and ``torchrun ... resume=<run dir>`` continues with the equality check of
    every epoch (``distributed.check_every=1``) passing."""
    env, run_dir = job_env(tmp_path), tmp_path / "run"
    launch = [*TORCHRUN, "--standalone", f"--nproc_per_node={WORLD}", TRAIN]
    proc = subprocess.Popen(
        [*launch, *SMALL, "runner.epochs=1000", f"hydra.run.dir={run_dir}"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_first_epoch(run_dir, [proc])
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    stops = re.findall(r"rank (\d): stopped after cycle (\d+)", err)
    assert sorted(rank for rank, _ in stops) == ["0", "1"], err[-3000:]
    assert len({cycle for _, cycle in stops}) == 1, stops  # the same cycle on both ranks
    assert out.count("stopped; checkpoint saved. Resume with:") == 1 and "error:" not in err
    saved = checkpoint.load(run_dir / "checkpoints" / "last.pt")
    epoch, cycles = saved["counters"]["epoch"], saved["training"]["runner"]["partial_epoch"]["cycles"]
    assert epoch * 2 + cycles == int(stops[0][1])
    assert not list((tmp_path / "scratch").rglob("*.pt"))  # rank 1 writes no checkpoint

    resumed = subprocess.run(
        [*launch, f"resume={run_dir}", f"runner.epochs={epoch + 2}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.count("done:") == 1
    records = read_records(run_dir / "metrics.jsonl")
    assert [r["epoch"] for r in records] == list(range(epoch + 2))
    assert all(r["world_size"] == WORLD for r in records)


def start_ranks(tmp_path: Path, run_dir: Path, *args: str) -> list[subprocess.Popen]:
    """The processes of a 2-rank job started as torchrun starts them (its environment variables), without the
    launcher in between, so that a signal reaches exactly the rank it is sent to."""
    env, port = job_env(tmp_path), free_port()
    procs = []
    for rank in range(WORLD):
        rank_env = {**env, "RANK": str(rank), "WORLD_SIZE": str(WORLD), "LOCAL_RANK": str(rank),
                    "LOCAL_WORLD_SIZE": str(WORLD), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                    "TORCHELASTIC_RUN_ID": "fault-test"}  # fmt: skip
        command = [sys.executable, TRAIN, *SMALL, *args, f"hydra.run.dir={run_dir}"]
        procs.append(subprocess.Popen(command, env=rank_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def test_sigterm_to_one_rank_stops_both_after_the_same_cycle(tmp_path):
    run_dir = tmp_path / "run"
    procs = start_ranks(tmp_path, run_dir, "runner.epochs=1000")
    wait_for_first_epoch(run_dir, procs)
    procs[1].send_signal(signal.SIGTERM)  # rank 1 only: rank 0 learns of it from the agreement after the cycle
    outputs = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    cycles = [
        re.search(rf"rank {rank}: stopped after cycle (\d+)", err).group(1) for rank, (_, err) in enumerate(outputs)
    ]
    assert cycles[0] == cycles[1]
    assert "stopped; checkpoint saved" in outputs[0][0]


def test_a_rank_killed_with_sigkill_makes_the_other_exit_with_an_error(tmp_path):
    """After a SIGKILL of rank 1, rank 0's next collective fails at once (gloo sees the connection close), well
    inside ``distributed.timeout_s``, and it exits with an error instead of waiting."""
    run_dir = tmp_path / "run"
    procs = start_ranks(tmp_path, run_dir, "runner.epochs=1000", "distributed.timeout_s=60")
    wait_for_first_epoch(run_dir, procs)
    procs[1].kill()
    procs[1].communicate()
    _, err = procs[0].communicate(timeout=120)  # a hang would end here, after twice distributed.timeout_s
    assert procs[0].returncode == 1, err[-3000:]
    assert re.search(r"error: rank 0 of 2: .* failed after [\d.]+ s: another rank has died or stopped answering", err)
    assert "Traceback" not in err
    checkpoint.load(run_dir / "checkpoints" / "last.pt")


def test_two_nodes_meet_through_the_c10d_rendezvous_on_loopback(tmp_path):
    """Two launchers, one rank each, as on two machines (``--nnodes=2``): one run dir, and the parameters of
    both ranks are bit-identical after every epoch (the check of ``distributed.check_every=1`` passes)."""
    env, work, port = job_env(tmp_path), tmp_path / "work", free_port()
    work.mkdir()
    launch = [*TORCHRUN, "--nnodes=2", "--nproc_per_node=1", "--rdzv_backend=c10d",
              f"--rdzv_endpoint=127.0.0.1:{port}", "--rdzv_id=two-nodes", "--local-addr=127.0.0.1"]  # fmt: skip
    nodes = [
        subprocess.Popen(
            [*launch, TRAIN, *SMALL, "runner.epochs=2"],
            cwd=work,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [node.communicate(timeout=300) for node in nodes]
    for node, (_, err) in zip(nodes, outputs):
        assert node.returncode == 0, err[-3000:]
    assert sum(out.count("done:") for out, _ in outputs) == 1
    run_dirs = [p.parent for p in work.rglob("metrics.jsonl")]
    assert len(run_dirs) == 1
    records = read_records(run_dirs[0] / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [0, 1] and all(r["world_size"] == 2 for r in records)
    assert records[-1]["env_steps"] == 2 * 2 * 2 * 50  # both nodes' envs: 2 epochs x 2 cycles x 50 steps each


def test_after_a_resume_ranks_above_zero_draw_from_generators_of_their_own():
    """A checkpoint holds rank 0's generators; rank 1 loading it must not repeat rank 0's episodes."""
    info = env_info(make_env("PointReach-v0"))

    def runner(rank: int) -> Runner:
        agent = DDPG(info.obs_dim, info.goal_dim, info.action_dim, hidden=(8,))
        buffer = HerReplayBuffer(1000, info.horizon, info.obs_dim, info.goal_dim, info.action_dim, info.compute_reward)
        env = make_vector_env("PointReach-v0", 1, "sync")
        return Runner(agent, buffer, env, env, info.horizon, seed=rank_seed(0, rank), progress=False,
                      distributed=Distributed(rank=rank, world_size=WORLD))  # fmt: skip

    saved = runner(0).state_dict()
    same, other = runner(0), runner(1)
    same.load_state_dict(saved)
    other.load_state_dict(saved)
    assert same.rng.random() == generator_from_state(saved["rng"]).random()
    assert other.rng.random() != generator_from_state(saved["rng"]).random()
    assert other.train_env.envs[0].np_random.random() != same.train_env.envs[0].np_random.random()
