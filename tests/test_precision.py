"""``agent.precision``: bf16 on a fixed batch and ``auto``'s measured choice; the runner's target-update and
evaluation cadences and random warm-up steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import compose_config
from helpers.fixed_batch import OBS, A, G, batch

from agents import DDPG, SAC, TD3, ActorCriticAgent
from agents import precision as precision_module
from agents.precision import PrecisionChoice, choose_precision
from her import OptionError, checkpoint_file
from training import cli as training_cli
from training.build import build_runner
from training.cli import train
from training.options import ConfigError

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
    with pytest.raises(OptionError, match="precision='fp16' is invalid: expected one of auto, fp32, bf16"):
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
    # runner.overlap=false: the patched policy below is a local function, which env worker processes cannot take
    runner = point_runner("runner.random_steps=100", "runner.episodes_per_cycle=2", "runner.overlap=false")
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
        ("agent.precision=half", "agent.precision='half' is invalid: expected one of auto, fp32, bf16"),
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


# --- precision=auto: the start-up probe ------------------------------------------------------------------------
def fake_hardware(
    monkeypatch, native: bool, rates: dict[str, float] | None = None, machine: str = "cpu A"
) -> list[tuple[str, ...]]:
    """Patch bf16 detection to ``native``, the kind of machine to ``machine`` and, with ``rates``, the probe's
    timings; returns the precisions each probe measured."""
    measured: list[tuple[str, ...]] = []

    def fake_rates(agent, batch, precisions, *args, **kwargs):
        measured.append(precisions)
        assert len(batch.obs) == 16 or len(batch.obs) > 0
        return {p: rates[p] for p in precisions} if rates is not None else real_rates(agent, batch, precisions)

    real_rates = precision_module.update_rates
    monkeypatch.setattr(precision_module, "bf16_native", lambda device: native)
    monkeypatch.setattr(precision_module, "machine_key", lambda device: machine)
    monkeypatch.setattr(precision_module, "update_rates", fake_rates)
    return measured


def test_auto_chooses_fp32_without_a_probe_where_bf16_is_not_native(monkeypatch):
    measured = fake_hardware(monkeypatch, native=False, rates={"fp32": 10.0, "bf16": 99.0})
    choice = choose_precision("auto", make(DDPG, "auto"), 64)
    assert (choice.chosen, choice.native_bf16, choice.fp32_updates_per_s, choice.bf16_updates_per_s) == (
        "fp32", False, None, None)  # fmt: skip
    assert measured == []


@pytest.mark.parametrize(("rates", "expected"), [({"fp32": 10.0, "bf16": 19.0}, "bf16"),
                                                 ({"fp32": 10.0, "bf16": 9.0}, "fp32")])  # fmt: skip
def test_auto_chooses_the_faster_where_bf16_is_native(monkeypatch, rates, expected):
    measured = fake_hardware(monkeypatch, native=True, rates=rates)
    choice = choose_precision("auto", make(DDPG, "auto"), 64)
    assert choice.chosen == expected and measured == [("fp32", "bf16")]
    assert choice.record()["fp32_updates_per_s"] == 10.0 and choice.warning() is None
    assert f"precision: {expected} (auto; native bf16; updates at batch 64: fp32 10.0/s" in choice.describe()


def test_explicit_bf16_without_native_bf16_runs_with_a_warning_naming_the_slowdown(monkeypatch):
    fake_hardware(monkeypatch, native=False, rates={"fp32": 28.0, "bf16": 2.0})
    choice = choose_precision("bf16", make(DDPG, "bf16"), 1024)
    assert choice.chosen == "bf16"
    assert choice.warning() == (
        "agent.precision=bf16: this device has no native bf16: bf16 updates are 14.0x slower than fp32 here "
        "(2.0/s against 28.0/s at batch 1024); agent.precision=auto chooses the faster"
    )
    assert choose_precision("fp32", make(DDPG, "fp32"), 64).record()["fp32_updates_per_s"] is None  # no probe


def test_the_probe_leaves_the_agent_and_torchs_generators_as_they_were():
    agent = make(SAC, "auto")  # SAC samples actions: its update draws random numbers
    before = {k: v.clone() for k, v in agent.actor.state_dict().items()}
    rng_state = torch.get_rng_state()
    rates = precision_module.update_rates(agent, precision_module.synthetic_batch(agent, 32), ("fp32", "bf16"), 0.05)
    assert set(rates) == {"fp32", "bf16"} and all(r > 0 for r in rates.values())
    assert torch.equal(torch.get_rng_state(), rng_state) and agent.n_updates == 0
    assert all(torch.equal(before[k], v) for k, v in agent.actor.state_dict().items())


def small_run(tmp_path, *overrides: str) -> dict:
    cfg = compose_config("env=PointReach", "buffer.batch_size=16", "torch_threads=1", "progress=false",
                         "runner.epochs=1", "runner.cycles_per_epoch=2", "runner.updates_per_cycle=2",
                         "runner.eval_episodes=2", "logger.tensorboard=false", "agent.precision=auto",
                         *overrides)  # fmt: skip
    return train(cfg, run_dir=tmp_path)


def saved(run_dir) -> dict:
    return checkpoint_file.load(run_dir / "checkpoints" / "last.pt")


def test_the_choice_lands_in_the_saved_config_and_a_resume_chooses_again(monkeypatch, tmp_path, capsys):
    """A run that chose bf16 resumes as fp32 on another kind of machine without native bf16, and back on the
    first kind as bf16; state stays fp32."""
    fake_hardware(monkeypatch, native=True, rates={"fp32": 10.0, "bf16": 30.0})
    small_run(tmp_path)
    probe = saved(tmp_path)["config"]["precision_probe"]
    assert probe["requested"] == "auto" and probe["chosen"] == "bf16" and probe["bf16_updates_per_s"] == 30.0
    assert "precision: bf16 (auto; native bf16" in capsys.readouterr().out
    assert {v.dtype for v in saved(tmp_path)["agent"]["actor"].values()} == {torch.float32}
    chosen: list[str] = []
    build = training_cli.build_runner

    def building(*args, **kwargs):
        runner, info = build(*args, **kwargs)
        chosen.append(runner.agent.precision)
        return runner, info

    monkeypatch.setattr(training_cli, "build_runner", building)
    for native, machine, expected, epochs in ((False, "cpu B", "fp32", 2), (True, "cpu A", "bf16", 3)):
        fake_hardware(monkeypatch, native=native, rates={"fp32": 10.0, "bf16": 30.0}, machine=machine)
        cfg = training_cli.resume_config(tmp_path, [f"runner.epochs={epochs}"])
        assert train(cfg, run_dir=tmp_path)["epoch"] == epochs - 1
        assert chosen[-1] == expected and saved(tmp_path)["config"]["precision_probe"]["chosen"] == expected
        assert saved(tmp_path)["agent_kwargs"]["precision"] == "auto"
    assert chosen == ["fp32", "bf16"]


def test_update_flops_count_the_matrix_products_of_an_update():
    agent = make(DDPG, "auto")
    one, two = precision_module.update_flops(agent, 32), precision_module.update_flops(agent, 64)
    assert two == 2 * one  # linear in the batch
    in_dim, forward = OBS + G, 0
    for dims in ((in_dim, 64, 64, A), (in_dim + A, 64, 64, 1)):  # one forward pass each of actor and critic
        forward += sum(2 * a * b for a, b in zip(dims[:-1], dims[1:])) * 32
    # target actor and critic, critic, actor and critic through it: 5 forward passes, and backward passes
    # that cost up to twice their forward
    assert 2.5 * forward < one < 5 * forward


def test_the_chosen_precision_leaves_every_option_as_given(monkeypatch, tmp_path):
    """The precision choice sets nothing but the precision: the batch given is the batch trained, in either."""
    for native in (False, True):
        fake_hardware(monkeypatch, native=native, rates={"fp32": 10.0, "bf16": 30.0})
        run_dir = tmp_path / str(native)
        small_run(run_dir, "buffer.batch_size=8", "runner.updates_per_cycle=3")
        config = saved(run_dir)["config"]
        assert config["precision_probe"]["chosen"] == ("bf16" if native else "fp32")
        assert (config["buffer"]["batch_size"], config["runner"]["updates_per_cycle"]) == (8, 3)
        assert saved(run_dir)["counters"]["updates"] == 2 * 3  # 2 cycles


def test_a_resume_on_the_same_kind_of_machine_keeps_the_first_choice(monkeypatch, tmp_path, capsys):
    """Exact resume: the probe is not run again where it could now answer otherwise."""
    fake_hardware(monkeypatch, native=True, rates={"fp32": 10.0, "bf16": 10.4})  # within BF16_MARGIN: fp32
    small_run(tmp_path)
    assert saved(tmp_path)["config"]["precision_probe"]["chosen"] == "fp32"
    measured = fake_hardware(monkeypatch, native=True, rates={"fp32": 10.0, "bf16": 30.0})
    train(training_cli.resume_config(tmp_path, ["runner.epochs=2"]), run_dir=tmp_path)
    assert measured == [] and saved(tmp_path)["config"]["precision_probe"]["chosen"] == "fp32"
    assert "precision: fp32 (auto; native bf16; kept from the run's start on this machine" in capsys.readouterr().out


def test_a_kept_choice_made_without_a_probe_reads_as_one_clause():
    kept = PrecisionChoice("auto", "fp32", native_bf16=False, batch_size=512, machine="m", kept=True)
    assert kept.describe() == "precision: fp32 (auto; no native bf16; kept from the run's start on this machine)"
    probed = PrecisionChoice("auto", "bf16", True, 512, "m", 10.0, 20.0, kept=True)
    assert probed.describe().endswith("on this machine: fp32 10.0/s, bf16 20.0/s at batch 512)")
