"""TD3 and SAC on a fixed batch, and what all three agents share (targets clipped, polyak exact, persistence)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from test_ddpg import OBS, A, B, G, batch

from agents import DDPG, SAC, TD3, ActorCriticAgent
from agents.networks import squashed_gaussian
from her import OptionError

AGENTS = [DDPG, TD3, SAC]


def make(cls: type[ActorCriticAgent], **kw) -> ActorCriticAgent:
    torch.manual_seed(0)
    return cls(OBS, G, A, 2.0, **{"hidden": (32, 32), "batch_size": B, **kw})


def params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def same(a: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a, module.parameters()))


def set_critic_outputs(critics: torch.nn.Module, values: list[float]) -> None:
    """Make critic ``i`` output the constant ``values[i]``: zero its last layer's weights, set its bias."""
    with torch.no_grad():
        for critic, value in zip(critics.critics, values):
            critic.net[-1].weight.zero_()
            critic.net[-1].bias.fill_(value)


def next_x(ag: ActorCriticAgent, seed: int = 0) -> torch.Tensor:
    b = ag.batch_to_tensors(batch(seed))
    return ag.inputs(b.next_obs, b.goal)


# --- shared ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", AGENTS)
def test_polyak_is_exact_and_targets_move_only_in_update_targets(cls):
    ag = make(cls, polyak=0.9)
    names = ["critic"] + (["actor"] if hasattr(ag, "actor_target") else [])
    before = {n: params(getattr(ag, f"{n}_target")) for n in names}
    ag.update(batch())
    for n in names:
        assert same(before[n], getattr(ag, f"{n}_target")), n
    ag.update_targets()
    for n in names:
        for t, t0, o in zip(getattr(ag, f"{n}_target").parameters(), before[n], getattr(ag, n).parameters()):
            torch.testing.assert_close(t, 0.9 * t0 + 0.1 * o, rtol=0, atol=1e-7)


@pytest.mark.parametrize("cls", AGENTS)
def test_td_targets_are_clipped_only_when_asked(cls):
    reward, next_value = torch.tensor([0.0, -1.0, -1.0]), torch.tensor([5.0, -80.0, -3.0])
    clipped = make(cls, gamma=0.98, clip_target=True).td_target(reward, next_value)
    np.testing.assert_allclose(clipped.numpy(), [0.0, -50.0, -3.94], rtol=1e-6)
    raw = make(cls, gamma=0.98, clip_target=False).td_target(reward, next_value)
    np.testing.assert_allclose(raw.numpy(), [4.9, -79.4, -3.94], rtol=1e-6)


@pytest.mark.parametrize("cls", AGENTS)
def test_critics_regress_on_the_clipped_target(cls):
    ag = make(cls, clip_target=True, n_critics=2)
    set_critic_outputs(ag.critic_target, [50.0, 60.0])  # r + gamma * (about 50) > 0 clips to 0 in every row
    b = ag.batch_to_tensors(batch())
    loss, q = ag.critic_loss(ag.inputs(b.obs, b.goal), ag.inputs(b.next_obs, b.goal), b)
    assert q.shape == (2, B)
    torch.testing.assert_close(loss, q.pow(2).mean(-1).sum())


@pytest.mark.parametrize("cls", AGENTS)
def test_one_update_moves_the_online_networks_and_reports_the_logged_keys(cls):
    ag = make(cls)
    actor, critic = params(ag.actor), params(ag.critic)
    stats = ag.update(batch())
    assert {"critic_loss", "actor_loss", "q_mean"} <= set(stats) and all(np.isfinite(list(stats.values())))
    assert not same(actor, ag.actor) and not same(critic, ag.critic)


@pytest.mark.parametrize("cls", AGENTS)
def test_numpy_acting_matches_the_torch_networks(cls):
    """The NumPy snapshot used for acting computes the torch actor's greedy action on normalized inputs, and
    follows later weight and normalizer changes only when a new snapshot is taken."""
    ag = make(cls)
    rng = np.random.default_rng(1)
    ag.update_normalizers(rng.normal(3.0, 2.0, (500, OBS)), rng.normal(-1.0, 0.5, (500, G)))
    obs, goal = rng.normal(3.0, 2.0, (64, OBS)).astype(np.float32), rng.normal(-1.0, 0.5, (64, G)).astype(np.float32)
    policy = ag.acting_policy()
    with torch.no_grad():
        out = ag.actor(ag.inputs(torch.as_tensor(obs), torch.as_tensor(goal)))
        expected = 2.0 * (torch.tanh(out[0]) if cls is SAC else out).numpy()  # action_max = 2
    np.testing.assert_allclose(policy(obs, goal, False), expected, atol=1e-4)
    ag.update(batch(0))
    assert not np.allclose(ag.act(obs, goal, False), policy(obs, goal, False), atol=1e-6)
    np.testing.assert_allclose(ag.act(obs, goal, False), ag.acting_policy()(obs, goal, False))


@pytest.mark.parametrize("cls", AGENTS)
def test_actions_are_bounded_and_greedy_actions_deterministic(cls):
    ag = make(cls)
    obs, goal = np.random.default_rng(0).normal(size=(200, OBS)), np.zeros((200, G))
    obs = obs.astype(np.float32)
    goal = goal.astype(np.float32)
    greedy = ag.act(obs, goal, explore=False)
    assert greedy.shape == (200, A) and np.all(np.abs(greedy) <= 2.0)
    np.testing.assert_array_equal(greedy, ag.act(obs, goal, explore=False))
    explored = ag.act(obs, goal, explore=True, rng=np.random.default_rng(0))
    assert np.all(np.abs(explored) <= 2.0) and not np.allclose(explored, greedy)
    np.testing.assert_array_equal(explored, ag.act(obs, goal, explore=True, rng=np.random.default_rng(0)))


@pytest.mark.parametrize("cls", AGENTS)
def test_state_dict_round_trip_continues_identically(cls):
    a = make(cls)
    a.update(batch(0))
    b = make(cls, lr_actor=0.5)
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    for ag in (a, b):  # same noise streams, same delays, same optimizer moments from here on
        ag.update(batch(1))
        ag.update_targets()
        ag.update(batch(2))
    for name in ("actor", "critic", "critic_target"):
        for p, q in zip(getattr(a, name).parameters(), getattr(b, name).parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=0)


@pytest.mark.parametrize(
    "cls, kw, match",
    [
        (DDPG, {"n_critics": 0}, "n_critics=0"),
        (DDPG, {"critic_layer_norm": "yes"}, "critic_layer_norm"),
        (TD3, {"policy_delay": 0}, "policy_delay=0"),
        (TD3, {"target_policy_noise": -0.1}, "target_policy_noise"),
        (TD3, {"target_noise_clip": float("nan")}, "target_noise_clip"),
        (SAC, {"init_alpha": 0.0}, "init_alpha=0.0"),
        (SAC, {"lr_alpha": -1}, "lr_alpha=-1"),
        (SAC, {"target_entropy": "auto"}, "target_entropy='auto'"),
    ],
)
def test_bad_options_are_named(cls, kw, match):
    with pytest.raises(OptionError, match=match):
        make(cls, **kw)


@pytest.mark.parametrize("cls, option", [(DDPG, "policy_delay"), (DDPG, "init_alpha"), (SAC, "random_eps")])
def test_an_option_of_another_agent_is_refused(cls, option):
    with pytest.raises(TypeError, match=option):
        make(cls, **{option: 1})


@pytest.mark.parametrize("cls", AGENTS)
def test_layer_norm_and_ensemble_size_shape_the_critics(cls):
    ag = make(cls, n_critics=3, critic_layer_norm=True)
    assert len(ag.critic.critics) == 3
    assert sum(isinstance(m, torch.nn.LayerNorm) for m in ag.critic.modules()) == 3 * 2  # 2 hidden layers each
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in ag.actor.modules())
    x = next_x(ag)
    assert ag.critic(x, torch.zeros(B, A)).shape == (3, B)


# --- TD3 ------------------------------------------------------------------------------------------
def test_td3_target_is_the_min_of_the_twin_critics():
    ag = make(TD3)
    set_critic_outputs(ag.critic_target, [-1.0, -3.0])
    torch.testing.assert_close(ag.next_value(next_x(ag)), torch.full((B,), -3.0))
    set_critic_outputs(ag.critic_target, [-4.0, -2.0])
    torch.testing.assert_close(ag.next_value(next_x(ag)), torch.full((B,), -4.0))


def test_td3_target_action_noise_is_clipped_and_bounded():
    ag = make(TD3, target_policy_noise=10.0, target_noise_clip=0.3)
    x = next_x(ag)
    noise = ag.target_action(x) - ag.actor_target(x)
    assert noise.abs().max() <= 0.3 + 1e-6 and noise.abs().max() > 0.29
    assert ag.target_action(x).abs().max() <= 1.0
    quiet = make(TD3, target_policy_noise=0.0)
    torch.testing.assert_close(quiet.target_action(x), quiet.actor_target(x))


def test_td3_actor_steps_only_every_policy_delay_updates_and_targets_follow_it():
    ag = make(TD3, policy_delay=2, polyak=0.5)
    for i in range(5):
        actor, critic = params(ag.actor), params(ag.critic)
        stats = ag.update(batch(i))
        assert not same(critic, ag.critic)  # the critic steps every update
        assert same(actor, ag.actor) == (i % 2 == 1), i  # the actor on updates 0, 2, 4
        assert np.isfinite(stats["actor_loss"])  # the latest actor loss, also on skipped updates
        targets = params(ag.actor_target) + params(ag.critic_target)
        ag.update_targets()  # one update per "cycle": targets move only after an actor step
        moved = not same(targets[: len(params(ag.actor))], ag.actor_target)
        assert moved == (i % 2 == 0), i


# --- SAC ------------------------------------------------------------------------------------------
def test_squashed_gaussian_log_prob_is_the_change_of_variables():
    torch.manual_seed(0)
    mean, log_std, noise = (torch.randn(64, 3, dtype=torch.float64) for _ in range(3))
    action, log_prob = squashed_gaussian(mean, log_std.clamp(-2, 0.5), noise)
    u = mean + log_std.clamp(-2, 0.5).exp() * noise
    gaussian = torch.distributions.Normal(mean, log_std.clamp(-2, 0.5).exp()).log_prob(u)
    torch.testing.assert_close(action, torch.tanh(u))
    torch.testing.assert_close(log_prob, (gaussian - torch.log1p(-torch.tanh(u).pow(2))).sum(-1))
    extreme = squashed_gaussian(torch.full((1, 1), 30.0), torch.zeros(1, 1), torch.zeros(1, 1))[1]
    assert torch.isfinite(extreme).all()  # no log(0) where tanh saturates


def test_sac_target_is_the_soft_min_of_the_twin_critics():
    ag = make(SAC, init_alpha=0.5)
    set_critic_outputs(ag.critic_target, [-1.0, -3.0])
    x = next_x(ag)
    state = ag.generator.get_state()
    _, log_prob, _ = ag.sample(x)
    ag.generator.set_state(state)  # the same noise again
    torch.testing.assert_close(ag.next_value(x), -3.0 - 0.5 * log_prob)


@pytest.mark.parametrize("target_entropy, direction", [(50.0, 1), (-50.0, -1)])
def test_sac_temperature_moves_toward_its_target_entropy(target_entropy, direction):
    ag = make(SAC, init_alpha=0.2, target_entropy=target_entropy)
    stats = ag.update(batch())
    alpha = ag.temperature().item()
    assert np.sign(alpha - 0.2) == direction  # entropy below the target: alpha grows; above: it shrinks
    assert stats["alpha"] == pytest.approx(0.2) and np.isfinite(stats["entropy"])


def test_sac_default_target_entropy_is_minus_action_dim():
    assert make(SAC).target_entropy == -A
    assert make(SAC, target_entropy=-0.5).target_entropy == -0.5


def test_sac_actor_loss_follows_the_min_critic_and_the_entropy_bonus():
    ag = make(SAC, init_alpha=1.0, action_l2=0.0)
    b = ag.batch_to_tensors(batch())
    x = ag.inputs(b.obs, b.goal)
    set_critic_outputs(ag.critic, [-1.0, -3.0])
    state = ag.generator.get_state()
    _, log_prob, _ = ag.sample(x)
    ag.generator.set_state(state)
    stats = ag.actor_update(x)
    assert stats["actor_loss"] == pytest.approx((log_prob + 3.0).mean().item(), rel=1e-5)
