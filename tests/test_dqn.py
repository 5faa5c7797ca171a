"""DQN on a fixed batch: the double-DQN target, the loss, epsilon-greedy acting, persistence, and the errors for an
agent of the other kind of action space."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from helpers.state_dicts import assert_states_equal

from agents import DDPG, DQN, SAC, TD3, ActionSpaceMismatch
from agents.policy import make_agent
from agents.precision import synthetic_batch
from her import OptionError, Transitions

OBS, G, N, B = 6, 6, 6, 32  # observation, goal sizes, actions, batch


def make(seed: int = 0, **kw) -> DQN:
    torch.manual_seed(seed)
    return DQN(OBS, G, N, **{"hidden": (32,), **kw})


def batch(seed: int = 0) -> Transitions:
    """``B`` bit-flipping-like transitions: 0/1 bits, actions ``[B, 1]`` float indices, rewards in ``{-1, 0}``."""
    rng = np.random.default_rng(seed)
    return Transitions(
        obs=rng.integers(0, 2, (B, OBS)).astype(np.float32),
        action=rng.integers(0, N, (B, 1)).astype(np.float32),
        reward=-rng.integers(0, 2, B).astype(np.float32),
        next_obs=rng.integers(0, 2, (B, OBS)).astype(np.float32),
        goal=rng.integers(0, 2, (B, G)).astype(np.float32),
        discount=np.full(B, 0.98, np.float32),
    )


def set_outputs(q: torch.nn.Module, values: list[float]) -> None:
    """Make a Q-network output the constant ``values`` (one per action) in every state."""
    with torch.no_grad():
        q.net[-1].weight.zero_()
        q.net[-1].bias.copy_(torch.tensor(values))


def params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def test_the_next_value_is_the_target_networks_value_of_the_online_networks_choice():
    ag = make()
    set_outputs(ag.q, [0.0, -5.0, -1.0, -9.0, -9.0, -9.0])  # the online network picks action 0
    set_outputs(ag.q_target, [-3.0, 0.0, -2.0, 0.0, 0.0, 0.0])  # whose target value is -3, not the target's max 0
    b = ag.batch_to_tensors(batch())
    next_x = ag.inputs(b.next_obs, b.goal)
    torch.testing.assert_close(ag.next_value(next_x), torch.full((B,), -3.0))


@pytest.mark.parametrize("clip", [True, False])
def test_the_loss_regresses_the_taken_actions_values_on_the_td_target(clip):
    ag = make(clip_target=clip)
    set_outputs(ag.q_target, [60.0] * N)  # r + 0.98 * 60 > 0: clipped to 0 when asked
    b = ag.batch_to_tensors(batch())
    x, next_x = ag.inputs(b.obs, b.goal), ag.inputs(b.next_obs, b.goal)
    loss, q = ag.q_loss(x, next_x, b)
    with torch.no_grad():
        expected_q = ag.q(x)[torch.arange(B), b.action[:, 0].long()]
    torch.testing.assert_close(q, expected_q)
    target = torch.zeros(B) if clip else b.reward + 0.98 * 60.0
    torch.testing.assert_close(loss, (expected_q - target).pow(2).mean())


def test_polyak_is_exact_and_the_target_moves_only_in_update_targets():
    ag = make(polyak=0.9)
    before = params(ag.q_target)
    stats = ag.update(batch())
    assert set(stats) == {"q_loss", "q_mean"} and all(np.isfinite(list(stats.values())))
    assert all(torch.equal(p, q) for p, q in zip(before, ag.q_target.parameters()))
    ag.update_targets()
    for t, t0, o in zip(ag.q_target.parameters(), before, ag.q.parameters()):
        torch.testing.assert_close(t, 0.9 * t0 + 0.1 * o, rtol=0, atol=1e-7)


def test_updates_lower_the_td_error_on_a_fixed_batch():
    ag = make(lr=1e-2)
    losses = [ag.update(batch())["q_loss"] for _ in range(50)]
    assert losses[-1] < 0.5 * losses[0]


def test_greedy_acting_is_the_argmax_of_the_torch_network_as_a_float_index():
    ag = make()
    rng = np.random.default_rng(1)
    ag.update_normalizers(rng.integers(0, 2, (500, OBS)), rng.integers(0, 2, (500, G)))
    obs, goal = rng.integers(0, 2, (64, OBS)).astype(np.float32), rng.integers(0, 2, (64, G)).astype(np.float32)
    with torch.no_grad():
        expected = ag.q(ag.inputs(torch.as_tensor(obs), torch.as_tensor(goal))).argmax(-1).numpy()
    action = ag.act(obs, goal, explore=False)
    assert action.shape == (64, 1) and action.dtype == np.float32
    np.testing.assert_array_equal(action[:, 0], expected)


def test_a_random_eps_fraction_of_exploring_actions_is_uniform_and_drawn_from_the_rng():
    ag = make(random_eps=0.3)
    n = 20_000
    obs, goal = np.zeros((n, OBS), np.float32), np.ones((n, G), np.float32)
    greedy = ag.act(obs, goal, explore=False)[:, 0]
    assert np.all(greedy == greedy[0])  # one state: one greedy action
    explored = ag.act(obs, goal, explore=True, rng=np.random.default_rng(0))[:, 0]
    np.testing.assert_array_equal(explored, ag.act(obs, goal, explore=True, rng=np.random.default_rng(0))[:, 0])
    # A random action is the greedy one with probability 1/N: exploring actions differ from it at 0.3 (N-1)/N.
    other = explored != greedy
    p = 0.3 * (N - 1) / N
    assert other.mean() == pytest.approx(p, abs=4 * np.sqrt(p * (1 - p) / n))
    counts = np.bincount(explored[other].astype(int), minlength=N)
    assert counts[int(greedy[0])] == 0
    assert np.all(np.abs(counts[counts > 0] / other.sum() - 1 / (N - 1)) < 0.02)
    assert np.array_equal(make(random_eps=0.0).act(obs, goal, explore=True, rng=np.random.default_rng(0)),
                          make(random_eps=0.0).act(obs, goal, explore=False))  # fmt: skip


def test_state_dict_round_trip_continues_identically():
    rng = np.random.default_rng(0)
    a = make()
    a.update_normalizers(rng.integers(0, 2, (300, OBS)), rng.integers(0, 2, (300, G)))
    a.update(batch(0))
    a.update_targets()
    a.update(batch(3))
    b = make(seed=1, lr=0.5)
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    assert_states_equal(a.state_dict(), b.state_dict())
    assert b.q_opt.lr == a.q_opt.lr
    for ag in (a, b):
        ag.update(batch(1))
        ag.update_targets()
        ag.update(batch(2))
    assert_states_equal(a.state_dict(), b.state_dict())


def test_bf16_updates_track_fp32_ones():
    fp32, bf16 = make(precision="fp32"), make(precision="bf16")
    for i in range(3):
        s32, s16 = fp32.update(batch(i)), bf16.update(batch(i))
    assert s16["q_loss"] == pytest.approx(s32["q_loss"], rel=0.1)
    for p, q in zip(fp32.q.parameters(), bf16.q.parameters()):
        assert p.dtype == q.dtype == torch.float32
        torch.testing.assert_close(p, q, rtol=0.05, atol=0.02)


def test_the_probe_batch_holds_valid_action_indices():
    b = synthetic_batch(make(), 256)
    assert b.action.shape == (256, 1) and set(np.unique(b.action)) == set(range(N))


@pytest.mark.parametrize(
    "kw, match",
    [({"random_eps": 1.5}, "random_eps=1.5"), ({"lr": 0}, "lr=0"), ({"hidden": []}, "hidden"), ({"gamma": 1}, "gamma")],
)
def test_bad_options_are_named(kw, match):
    with pytest.raises(OptionError, match=match):
        make(**kw)


BITS = {"id": "BitFlipping-v0", "obs_dim": 6, "goal_dim": 6, "action_dim": 1, "action_max": 5.0, "n_actions": 6}
REACH = {"id": "FetchReach-v4", "obs_dim": 10, "goal_dim": 3, "action_dim": 4, "action_max": 1.0, "horizon": 50}


def test_make_agent_builds_dqn_from_a_discrete_env_record_and_refuses_a_continuous_one():
    agent = make_agent("agents.DQN", BITS, {"hidden": [8]})
    assert isinstance(agent, DQN) and agent.n_actions == 6 and agent.obs_dim == 6
    with pytest.raises(ActionSpaceMismatch) as err:
        make_agent("agents.DQN", REACH, {})
    assert str(err.value) == (
        "agents.DQN acts with discrete actions (a gymnasium Discrete space), and FetchReach-v4 has Box(-1.0, 1.0, (4,))"
    )


@pytest.mark.parametrize("cls", [DDPG, TD3, SAC])
def test_a_continuous_agent_refuses_a_discrete_env_record(cls):
    with pytest.raises(ActionSpaceMismatch) as err:
        make_agent(f"agents.{cls.__name__}", BITS, {})
    assert str(err.value) == (
        f"agents.{cls.__name__} acts with continuous actions (a Box), and BitFlipping-v0 has Discrete(6)"
    )
