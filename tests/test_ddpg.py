from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from helpers.fixed_batch import OBS, A, G, batch

from agents import DDPG
from her import OptionError


def agent(**kw) -> DDPG:
    torch.manual_seed(0)
    kw = {"hidden": (32, 32), **kw}
    return DDPG(OBS, G, A, 2.0, **kw)


def test_td_targets_are_clipped_to_the_return_range():
    ag = agent(gamma=0.9)
    reward = torch.tensor([0.0, -1.0, 0.0, -1.0])
    next_q = torch.tensor([5.0, -20.0, -3.0, -0.5])
    discount = torch.full((4,), 0.9)
    np.testing.assert_allclose(ag.td_target(reward, next_q, discount).numpy(), [0.0, -10.0, -2.7, -1.45], rtol=1e-6)
    unclipped = agent(gamma=0.9, clip_target=False)
    raw = unclipped.td_target(reward, next_q, discount)
    np.testing.assert_allclose(raw.numpy(), [4.5, -19.0, -2.7, -1.45], rtol=1e-6)


def test_update_moves_online_networks_and_polyak_is_exact():
    ag = agent(polyak=0.9)
    before = {n: copy.deepcopy(getattr(ag, n)) for n in ("actor", "critic", "actor_target", "critic_target")}
    stats = ag.update(batch())
    assert set(stats) == {"critic_loss", "actor_loss", "q_mean"} and all(np.isfinite(list(stats.values())))
    for name in ("actor", "critic"):
        assert any(not torch.equal(p, q) for p, q in zip(getattr(ag, name).parameters(), before[name].parameters()))
    for name in ("actor_target", "critic_target"):  # targets move only in update_targets
        assert all(torch.equal(p, q) for p, q in zip(getattr(ag, name).parameters(), before[name].parameters()))
    ag.update_targets()
    for name, online in (("actor_target", ag.actor), ("critic_target", ag.critic)):
        for t, t0, o in zip(getattr(ag, name).parameters(), before[name].parameters(), online.parameters()):
            torch.testing.assert_close(t, 0.9 * t0 + 0.1 * o, rtol=0, atol=1e-7)


def test_critic_learns_a_fixed_batch():
    ag = agent()
    b = batch()
    ag.update_normalizers(b.obs, b.goal)
    first = ag.update(b)["critic_loss"]
    for _ in range(100):
        last = ag.update(b)["critic_loss"]
    assert last < 0.5 * first


def test_actions_respect_bounds_and_exploration_uses_random_eps():
    ag = agent(random_eps=1.0, noise_eps=0.0)
    obs, goal = np.zeros((500, OBS), np.float32), np.zeros((500, G), np.float32)
    greedy = ag.act(obs, goal, explore=False)
    assert greedy.shape == (500, A) and np.all(np.abs(greedy) <= 2.0)
    assert np.allclose(greedy, greedy[0])  # deterministic policy: same input, same action
    random = ag.act(obs, goal, explore=True, rng=np.random.default_rng(0))
    assert np.all(np.abs(random) <= 2.0) and random.std(0).min() > 0.9  # uniform on [-2, 2]: std 1.15
    no_explore = agent(random_eps=0.0, noise_eps=0.0).act(obs, goal, explore=True, rng=np.random.default_rng(0))
    np.testing.assert_allclose(no_explore, greedy, atol=1e-6)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"gamma": 1.0}, "gamma=1.0"),
        ({"polyak": -0.1}, "polyak"),
        ({"hidden": []}, "hidden"),
        ({"random_eps": 2}, "random_eps=2"),
        ({"clip_target": "yes"}, "clip_target"),
    ],
)
def test_bad_options_are_named(kw, match):
    with pytest.raises(OptionError, match=match):
        agent(**kw)
