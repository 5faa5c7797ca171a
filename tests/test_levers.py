"""Levers against a late fall in success: evaluation with a Polyak average of the actor (``agent.eval_polyak``) and
a linear learning-rate decay over the run (``runner.lr_decay_to``), with exact resume for both."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import compose_config
from helpers.agents_small import make
from helpers.fixed_batch import batch
from helpers.stopped_runs import SMALL, interrupt_at_cycles, without_timing

from agents import DDPG, SAC, TD3
from her import validation
from training.build import build_runner
from training.cli import train
from training.resume import resume_config


def flat(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


@pytest.mark.parametrize("cls", [DDPG, TD3, SAC])
def test_the_averaged_actor_follows_the_actor_by_eval_polyak_at_each_target_update(cls):
    agent = make(cls, eval_polyak=0.9)
    average = flat(agent.actor)
    assert torch.equal(flat(agent.actor_average), average)  # it starts as the actor
    for step in range(6):
        agent.update(batch(step))
        moves = cls is not TD3 or agent.actor_stepped  # TD3 moves its targets only after an actor step
        agent.update_targets()
        if moves:
            average = 0.9 * average + 0.1 * flat(agent.actor)
        assert torch.allclose(flat(agent.actor_average), average, atol=1e-6)
    assert not torch.allclose(average, flat(agent.actor), atol=1e-3)  # it lags behind the actor
    obs, goal = batch(0).obs[:5], batch(0).goal[:5]
    acting = agent.host_policy(agent.actor_average.net)(obs, goal, False, None)
    assert np.array_equal(agent.averaged_policy()(obs, goal, False, None), acting)
    assert not np.allclose(acting, agent.act(obs, goal, False))

    restored = make(cls, seed=1, eval_polyak=0.9)
    restored.load_state_dict(agent.state_dict())
    assert torch.equal(flat(restored.actor_average), flat(agent.actor_average))


def test_without_eval_polyak_there_is_no_average_and_a_bad_value_is_named():
    agent = make(DDPG)
    assert agent.actor_average is None and agent.averaged_policy() is None and "actor_average" not in agent.state_dict()
    with pytest.raises(validation.OptionError, match=r"eval_polyak=1.5 is invalid: expected a number in \[0, 1\] or"):
        make(DDPG, eval_polyak=1.5)


def test_scaled_learning_rates_are_fractions_of_the_configured_ones_and_survive_a_loaded_state():
    agent = make(SAC, lr_actor=1e-3, lr_critic=2e-3, lr_alpha=4e-3)
    assert set(agent.optimizers()) == {"actor_opt", "critic_opt", "alpha_opt"}
    agent.scale_learning_rates(0.25)
    assert [o.lr for o in agent.optimizers().values()] == pytest.approx([2.5e-4, 5e-4, 1e-3])
    other = make(SAC, seed=1, lr_actor=1e-3, lr_critic=2e-3, lr_alpha=4e-3)
    other.load_state_dict(agent.state_dict())  # the state holds the scaled rates, the schedule the configured ones
    assert other.actor_opt.lr == pytest.approx(2.5e-4)
    other.scale_learning_rates(0.5)
    assert other.actor_opt.lr == pytest.approx(5e-4) and other.alpha_opt.lr == pytest.approx(2e-3)


RUN = ("env=PointReach", "runner.epochs=2", "runner.cycles_per_epoch=3", "runner.updates_per_cycle=4",
       "runner.eval_episodes=2", "buffer.batch_size=16", "torch_threads=1", "progress=false",
       "runner.overlap=false")  # fmt: skip


def test_the_learning_rate_falls_linearly_from_the_first_update_to_the_last():
    runner, _ = build_runner(compose_config(*RUN, "runner.lr_decay_to=0.1", "agent.lr_critic=0.002"), run_dir=None)
    rates, update = [], runner.agent.update
    runner.agent.update = lambda b: rates.append((runner.agent.actor_opt.lr, runner.agent.critic_opt.lr)) or update(b)
    try:
        runner.run()
    finally:
        runner.close()
    actor, critic = np.array(rates).T
    cycles = 2 * 3
    assert len(actor) == cycles * 4
    # Set once per cycle from the updates before it, on the line from 1.0 at the first update to 0.1 at the last.
    expected = np.repeat(1.0 - 0.9 * np.arange(cycles) * 4 / (cycles * 4 - 1), 4)
    assert actor == pytest.approx(1e-3 * expected) and critic == pytest.approx(2e-3 * expected)
    assert actor[0] == pytest.approx(1e-3) and actor[-1] == pytest.approx(1e-3 * (1 - 0.9 * 20 / 23))


def test_records_hold_the_averaged_actors_evaluation_only_with_eval_polyak(tmp_path):
    with_average = train(compose_config(*RUN, "agent.eval_polyak=0.0", "logger.tensorboard=false"), tmp_path / "a")
    without = train(compose_config(*RUN, "logger.tensorboard=false"), tmp_path / "b")
    assert "eval_avg_success_rate" not in without and "eval_avg_mean_return" not in without
    assert 0.0 <= with_average["eval_avg_success_rate"] <= 1.0 and with_average["eval_avg_mean_return"] <= 0.0

    runner, _ = build_runner(compose_config(*RUN, "agent.eval_polyak=0.0"), run_dir=None)
    policies, start = [], runner.start_episodes
    runner.start_episodes = lambda env, policy, *a: policies.append(policy) or start(env, policy, *a)
    try:
        record = runner.run()
    finally:
        runner.close()
    # eval_polyak=0: the average is the actor, so the second evaluation acts as the first (on other episodes).
    eval_policies = policies[-2:]
    obs, goal = np.zeros((3, 2), np.float32), np.full((3, 2), 0.5, np.float32)
    assert np.array_equal(eval_policies[0](obs, goal, False, None), eval_policies[1](obs, goal, False, None))
    assert record["eval_s"] > 0 and record["eval_avg_success_rate"] is not None


def test_a_stopped_and_resumed_run_with_both_levers_matches_an_uninterrupted_one(tmp_path, monkeypatch):
    levers = (*SMALL, "agent.eval_polyak=0.8", "runner.lr_decay_to=0.2")
    train(compose_config(*levers, "logger.tensorboard=false"), tmp_path / "once")
    once = without_timing(tmp_path / "once")
    assert len(once) == 4 and "eval_avg_success_rate" in once[0]
    interrupt_at_cycles(monkeypatch, {4, 8})
    run_dir = tmp_path / "run"
    assert train(compose_config(*levers), run_dir)["stopped"]
    assert train(resume_config(run_dir), run_dir)["stopped"]
    assert not train(resume_config(run_dir), run_dir)["stopped"]
    assert without_timing(run_dir) == once
