"""TD3 and SAC on a fixed batch, and what all three agents share (targets clipped, polyak exact, persistence)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from helpers.agents_small import make, set_critic_outputs
from helpers.fixed_batch import OBS, A, B, G, batch
from helpers.state_dicts import assert_states_equal

from agents import DDPG, SAC, TD3, ActorCriticAgent
from agents.base import frozen
from agents.networks import squashed_gaussian
from her import OptionError

AGENTS = [DDPG, TD3, SAC]


def binomial_margin(p: float, n: int) -> float:
    """Four standard errors of a fraction estimated from ``n`` draws of probability ``p``."""
    return 4.0 * np.sqrt(p * (1.0 - p) / n)


def params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def same(a: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a, module.parameters()))


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
    discount = torch.full((3,), 0.98)
    clipped = make(cls, gamma=0.98, clip_target=True).td_target(reward, next_value, discount)
    np.testing.assert_allclose(clipped.numpy(), [0.0, -50.0, -3.94], rtol=1e-6)
    raw = make(cls, gamma=0.98, clip_target=False).td_target(reward, next_value, discount)
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
def test_critics_see_actions_divided_by_action_max(cls):
    ag = make(cls)  # action_max = 2; the batch's actions are uniform in [-2, 2]
    b = ag.batch_to_tensors(batch())
    x, next_x = ag.inputs(b.obs, b.goal), ag.inputs(b.next_obs, b.goal)
    _, q = ag.critic_loss(x, next_x, b)
    with torch.no_grad():
        torch.testing.assert_close(q, ag.critic(x, b.action / 2.0))
        assert not torch.allclose(q, ag.critic(x, b.action))


@pytest.mark.parametrize("cls", [DDPG, TD3])
def test_actor_loss_follows_the_first_critic_plus_the_weighted_action_penalty(cls):
    ag = make(cls, n_critics=2, action_l2=0.7)
    x = next_x(ag)
    set_critic_outputs(ag.critic, [-1.0, -3.0])  # the first critic, not the minimum
    with torch.no_grad():
        pi = ag.actor(x)
        expected = 1.0 + 0.7 * pi.pow(2).mean()
        assert pi.abs().min() > 0
        torch.testing.assert_close(ag.actor_loss(x), expected)


@pytest.mark.parametrize("cls", [DDPG, TD3, SAC])
def test_an_actor_step_raises_the_value_the_actor_follows(cls):
    """One small actor step moves the policy uphill on its critic (``Q_1`` for DDPG/TD3, ``min_i Q_i`` of the
    same reparameterized sample for SAC, with a negligible entropy weight) and leaves the critics alone."""
    ag = make(cls, n_critics=2, action_l2=0.0, lr_actor=1e-4, **({"init_alpha": 1e-6} if cls is SAC else {}))
    b = ag.batch_to_tensors(batch())
    x = ag.inputs(b.obs, b.goal)

    def value() -> float:
        with torch.no_grad():
            if cls is not SAC:
                return ag.critic.first(x, ag.actor(x)).mean().item()
            return ag.critic.min(x, ag.sample(x)[0]).mean().item()

    critic = params(ag.critic)
    state = ag.generator.get_state() if ag.generator is not None else None
    before = value()
    if state is not None:
        ag.generator.set_state(state)  # SAC: the step samples the same noise as the value above
    with frozen(ag.critic):
        ag.actor_update(x)
    if state is not None:
        ag.generator.set_state(state)
    assert value() > before
    assert same(critic, ag.critic)


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
def test_greedy_actions_are_deterministic_and_exploration_is_seeded(cls):
    ag = make(cls)
    obs, goal = np.random.default_rng(0).normal(size=(200, OBS)), np.zeros((200, G))
    obs = obs.astype(np.float32)
    goal = goal.astype(np.float32)
    greedy = ag.act(obs, goal, explore=False)
    assert greedy.shape == (200, A) and greedy.dtype == np.float32
    np.testing.assert_array_equal(greedy, ag.act(obs, goal, explore=False))
    explored = ag.act(obs, goal, explore=True, rng=np.random.default_rng(0))
    assert np.all(np.abs(explored) <= 2.0) and not np.allclose(explored, greedy)
    np.testing.assert_array_equal(explored, ag.act(obs, goal, explore=True, rng=np.random.default_rng(0)))
    assert not np.array_equal(explored, ag.act(obs, goal, explore=True, rng=np.random.default_rng(1)))


# --- DDPG/TD3 exploration (action_max = 2) ----------------------------------------------------------
N_EXPLORE = 20_000


def explore_from_one_state(ag: ActorCriticAgent) -> tuple[np.ndarray, np.ndarray]:
    """Greedy and exploring actions ``[N, A]`` of ``N_EXPLORE`` copies of one state."""
    obs, goal = np.zeros((N_EXPLORE, OBS), np.float32), np.zeros((N_EXPLORE, G), np.float32)
    greedy = ag.act(obs, goal, explore=False)
    assert np.all(np.abs(greedy) < 1.0)  # half-way inside the bounds: the noise is almost never clipped
    return greedy, ag.act(obs, goal, explore=True, rng=np.random.default_rng(0))


@pytest.mark.parametrize("cls", [DDPG, TD3])
def test_exploration_noise_std_is_noise_eps_times_action_max(cls):
    greedy, explored = explore_from_one_state(make(cls, random_eps=0.0, noise_eps=0.1))
    noise = (explored - greedy).ravel()
    n = len(noise)
    assert noise.mean() == pytest.approx(0.0, abs=4 * 0.2 / np.sqrt(n))
    assert noise.std() == pytest.approx(0.1 * 2.0, rel=4 / np.sqrt(2 * n))  # the std error of a std: std/sqrt(2n)


@pytest.mark.parametrize("cls", [DDPG, TD3])
def test_a_random_eps_fraction_of_exploring_actions_is_uniform(cls):
    greedy, explored = explore_from_one_state(make(cls, random_eps=0.3, noise_eps=0.0))
    random_rows = np.any(explored != greedy, axis=1)
    assert random_rows.mean() == pytest.approx(0.3, abs=binomial_margin(0.3, N_EXPLORE))
    np.testing.assert_array_equal(explored[~random_rows], greedy[~random_rows])
    uniform = explored[random_rows].ravel()  # uniform on [-2, 2]: mean 0, std 4 / sqrt(12)
    assert uniform.min() >= -2.0 and uniform.max() <= 2.0
    assert uniform.mean() == pytest.approx(0.0, abs=4 * 1.155 / np.sqrt(len(uniform)))
    # the std error of a uniform sample's std is sqrt(0.8) / 2 = 0.45 of the std over sqrt(n)
    assert uniform.std() == pytest.approx(4 / np.sqrt(12), rel=4 * 0.45 / np.sqrt(len(uniform)))


@pytest.mark.parametrize("cls", AGENTS)
def test_state_dict_round_trip_continues_identically(cls):
    """Everything an agent learns travels in its state dict: networks, targets, optimizer moments, normalizer
    statistics, SAC's temperature and its optimizer, noise generators, counters."""
    rng = np.random.default_rng(0)
    a = make(cls)
    a.update_normalizers(rng.normal(3.0, 2.0, (300, OBS)), rng.normal(-1.0, 0.5, (300, G)))
    a.update(batch(0))
    a.update_targets()
    a.update(batch(3))
    b = make(cls, seed=1, lr_actor=0.5, **({"init_alpha": 0.5} if cls is SAC else {}))
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    assert_states_equal(a.state_dict(), b.state_dict())
    obs, goal = rng.normal(3.0, 2.0, (16, OBS)).astype(np.float32), rng.normal(-1.0, 0.5, (16, G)).astype(np.float32)
    np.testing.assert_array_equal(a.act(obs, goal, False), b.act(obs, goal, False))
    more_obs, more_goals = rng.normal(size=(50, OBS)), rng.normal(size=(50, G))
    for ag in (a, b):  # same noise streams, same delays, same optimizer moments from here on
        ag.update_normalizers(more_obs, more_goals)
        ag.update(batch(1))
        ag.update_targets()
        ag.update(batch(2))
    assert_states_equal(a.state_dict(), b.state_dict())
    targets = ["critic_target"] + (["actor_target"] if cls is not SAC else [])
    for name in ("actor", "critic", *targets):  # (also part of the state dicts compared above)
        for p, q in zip(getattr(a, name).parameters(), getattr(b, name).parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=0)
    if cls is SAC:
        assert a.temperature().item() == b.temperature().item() != 0.5


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
        actor_t, critic_t = params(ag.actor_target), params(ag.critic_target)
        ag.update_targets()  # one update per "cycle": targets move only after an actor step
        for before, target, online in ((actor_t, ag.actor_target, ag.actor), (critic_t, ag.critic_target, ag.critic)):
            if i % 2 == 0:
                for t, t0, o in zip(target.parameters(), before, online.parameters()):
                    torch.testing.assert_close(t, 0.5 * t0 + 0.5 * o, rtol=0, atol=1e-7)
            else:
                assert same(before, target), i


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


def test_sac_actor_loss_follows_the_min_critic_the_entropy_bonus_and_the_action_penalty():
    ag = make(SAC, init_alpha=1.0, action_l2=0.7)
    b = ag.batch_to_tensors(batch())
    x = ag.inputs(b.obs, b.goal)
    set_critic_outputs(ag.critic, [-1.0, -3.0])
    state = ag.generator.get_state()
    _, log_prob, mean = ag.sample(x)
    ag.generator.set_state(state)
    stats = ag.actor_update(x)
    penalty = 0.7 * torch.tanh(mean).pow(2).mean()  # on the mean action
    assert penalty > 0
    assert stats["actor_loss"] == pytest.approx((log_prob + 3.0).mean().item() + penalty.item(), rel=1e-5)


def far_inputs(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """``[n, dim]`` float32 inputs on many scales, most far outside a normalizer's data: plain normals, values up
    to +-1e30, zeros and exact extremes mixed row by row and column by column."""
    scale = 10.0 ** rng.integers(-3, 31, (n, dim))
    x = rng.standard_normal((n, dim)) * scale
    x[rng.random((n, dim)) < 0.1] = 0.0
    x[rng.random((n, dim)) < 0.05] = 1e30
    x[rng.random((n, dim)) < 0.05] = -1e30
    return x.astype(np.float32)


@pytest.mark.parametrize("cls", AGENTS)
@pytest.mark.parametrize("seed", range(5))
def test_acting_and_training_paths_agree_far_outside_the_normalizer_data(cls, seed):
    """Property over random inputs, extremes included: the NumPy acting path (``HostPolicy``) and the torch
    training path (``agent.inputs``, ``agent.actor``) give the same normalized inputs and greedy actions, for
    normalizers fitted on wide data and on data so narrow that the std sits at its floor."""
    rng = np.random.default_rng(seed)
    ag = make(cls, seed)
    spread = 1e-6 if seed % 2 else 3.0  # odd seeds: the std floor (norm_eps), nearly every input clipped
    ag.update_normalizers(rng.normal(2.0, spread, (300, OBS)), rng.normal(-1.0, spread, (300, G)))
    ag.update(batch(seed))  # weights away from their initialization
    obs, goal = far_inputs(rng, 256, OBS), far_inputs(rng, 256, G)
    policy = ag.acting_policy()
    with torch.no_grad():
        x = ag.inputs(torch.as_tensor(obs), torch.as_tensor(goal))
        out = ag.actor(x)
        expected = 2.0 * (torch.tanh(out[0]) if cls is SAC else out).numpy()  # action_max = 2
    host_x = policy.inputs(obs, goal)
    np.testing.assert_allclose(host_x, x.numpy(), rtol=1e-6, atol=1e-6)
    assert np.abs(host_x).max() <= ag.obs_norm.clip and np.isfinite(host_x).all()
    np.testing.assert_allclose(policy(obs, goal, False), expected, atol=1e-4)
