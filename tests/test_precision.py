"""``agent.precision=bf16`` on a fixed batch, the runner's target-update and evaluation cadences and random warm-up
steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import compose_config
from helpers.fixed_batch import OBS, A, G, batch

from agents import DDPG, SAC, TD3, ActorCriticAgent
from her import OptionError
from training.cli import ConfigError, build_runner

AGENTS = [DDPG, TD3, SAC]


def make(cls: type[ActorCriticAgent], precision: str) -> ActorCriticAgent:
    torch.manual_seed(0)
    return cls(OBS, G, A, 2.0, hidden=(64, 64), precision=precision)


def flat(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


@pytest.mark.parametrize("cls", AGENTS)
def test_bf16_updates_are_finite_close_to_fp32_and_keep_fp32_state(cls):
    """From the same weights, one bf16 update moves the parameters as the fp32 update does: bf16 keeps ~3
    significant digits, so the losses agree to 5% and the parameter steps point the same way (cosine > 0.95);
    weights, gradients and Adam's moments stay float32."""
    fp32, bf16 = make(cls, "fp32"), make(cls, "bf16")
    before = {name: flat(getattr(fp32, name)) for name in ("actor", "critic")}
    assert all(torch.equal(before[n], flat(getattr(bf16, n))) for n in before)
    s32, s16 = fp32.update(batch()), bf16.update(batch())
    for key in ("critic_loss", "actor_loss", "q_mean"):
        assert np.isfinite(s16[key])
        assert s16[key] == pytest.approx(s32[key], rel=0.05, abs=1e-3), key
    for name in ("actor", "critic"):
        step32, step16 = flat(getattr(fp32, name)) - before[name], flat(getattr(bf16, name)) - before[name]
        assert step16.abs().sum() > 0
        assert torch.nn.functional.cosine_similarity(step32, step16, dim=0) > 0.95, name
    for _ in range(5):
        assert all(np.isfinite(v) for v in bf16.update(batch(1)).values())
    tensors = [*bf16.actor.parameters(), *bf16.critic.parameters(), *bf16.critic_target.parameters()]
    tensors += [p.grad for p in bf16.critic.parameters()]
    tensors += bf16.actor_opt.exp_avg + bf16.critic_opt.exp_avg_sq
    assert {t.dtype for t in tensors} == {torch.float32}


def test_bf16_runs_the_matrix_products_in_bf16():
    """The option does something: under ``precision=bf16`` the critic's layers see bfloat16 inputs."""
    seen: list[torch.dtype] = []
    for precision in ("fp32", "bf16"):
        ag = make(DDPG, precision)
        hook = ag.critic.critics[0].net[2].register_forward_pre_hook(lambda m, args: seen.append(args[0].dtype))
        ag.update(batch())
        hook.remove()
    assert seen[0] == torch.float32 and seen[-1] == torch.bfloat16


def test_precision_rejects_other_values():
    with pytest.raises(OptionError, match="precision='fp16' is invalid: expected one of fp32, bf16"):
        make(DDPG, "fp16")


def point_runner(*overrides: str):
    cfg = compose_config("env=PointReach", "buffer.batch_size=16", "torch_threads=1", "progress=false", *overrides)
    return build_runner(cfg, run_dir=None)[0]


def test_target_updates_every_n_updates_count_over_cycles():
    runner = point_runner("runner.target_update_every=3")
    runner.collect()
    calls: list[int] = []
    runner.agent.update_targets = lambda: calls.append(runner.agent.n_updates)  # type: ignore[method-assign]
    for _ in range(2):  # as _run_cycles does: 5 updates a cycle, the counter moves after each cycle
        runner.updates += len(runner.learn(5))
    assert calls == [3, 6, 9]
    runner.close()


def test_random_steps_act_uniformly_until_that_many_env_steps():
    runner = point_runner("runner.random_steps=100", "runner.episodes_per_cycle=2")
    horizon = runner.horizon
    assert horizon == 50
    runner.agent.acting_policy = lambda: (lambda obs, goal, explore, rng: np.zeros((len(obs), 2), np.float32))
    first, second = runner.collect(), runner.collect()  # 100 env steps random, then the (zero) policy
    space = runner.train_env.single_action_space
    actions = first.episodes["action"]
    assert np.all(actions >= space.low) and np.all(actions <= space.high)
    assert actions.std() == pytest.approx((space.high - space.low).mean() / np.sqrt(12), rel=0.1)  # uniform
    assert np.all(second.episodes["action"] == 0.0)
    runner.close()


@pytest.mark.parametrize(
    "override, expected",
    [
        ("runner.target_update_every=0", "runner.target_update_every=0 is invalid: expected an integer > 0"),
        ("runner.random_steps=-1", "runner.random_steps=-1 is invalid: expected an integer >= 0"),
        ("runner.eval_every=0", "runner.eval_every=0 is invalid: expected an integer > 0"),
        ("runner.eval_every=1.5", "runner.eval_every=1.5 is invalid: expected an integer > 0"),
        ("buffer.motion_priority=-1", r"buffer.motion_priority=-1 is invalid: expected a number in \[0.0, inf\)"),
        ("buffer.motion_scale=0", "buffer.motion_scale=0 is invalid"),
        ("agent.precision=half", "agent.precision='half' is invalid: expected one of fp32, bf16"),
    ],
)
def test_new_options_reject_bad_values_naming_them(override, expected):
    with pytest.raises((ConfigError, OptionError), match=expected):
        point_runner(override)


def eval_every_records(*overrides: str) -> list[dict]:
    """The records of a 6-epoch PointReach run of 100 env steps per epoch and no updates (fast)."""
    runner = point_runner("runner.epochs=6", "runner.cycles_per_epoch=1", "runner.episodes_per_cycle=2",
                          "runner.updates_per_cycle=0", "runner.eval_episodes=4", *overrides)  # fmt: skip
    records: list[dict] = []
    runner.epoch_end_hooks.append(lambda _, record: records.append(record))
    try:
        runner.run()
    finally:
        runner.close()
    return records


def test_eval_every_evaluates_at_the_epochs_that_pass_a_multiple_and_the_last():
    records = eval_every_records("runner.eval_every=250")
    assert [r["env_steps"] for r in records] == [100, 200, 300, 400, 500, 600]
    evaluated = [r["eval_success_rate"] is not None for r in records]
    assert evaluated == [False, False, True, False, True, True]  # 300 passes 250, 500 reaches 500, 600 is last
    assert all((r["eval_mean_return"] is None) == (not e) for r, e in zip(records, evaluated))
    assert all((r["eval_s"] > 0) == e for r, e in zip(records, evaluated))
    every_epoch = eval_every_records()
    assert all(r["eval_success_rate"] is not None for r in every_epoch)
    # The first evaluation seeds the eval env, whatever its epoch: a second run evaluates the same episodes (an
    # unseeded eval env would differ from run to run).
    again = eval_every_records("runner.eval_every=250")
    assert [r["eval_mean_return"] for r in again] == [r["eval_mean_return"] for r in records]


def test_presets_with_bf16_run_a_cycle():
    runner = point_runner("agent.precision=bf16", "runner.target_update_every=2", "runner.random_steps=50")
    runner.collect()
    stats = runner.learn(4)
    assert len(stats) == 4 and all(np.isfinite(s["critic_loss"]) for s in stats)
    runner.close()
