from __future__ import annotations

import numpy as np
import pytest

from envs import env_info, make_env
from her import HerReplayBuffer, OptionError, relabel_probability, sample_her_transitions
from her.relabel import GoalStrategy, MixtureStrategy, resolve_strategy

T = 10
N = 6


def tagged_episodes() -> dict[str, np.ndarray]:
    """Achieved goal ``ag[e, k] = (k, e)`` and observation ``obs[e, k] = (k, e)``: every sample carries its
    step and episode index. Real goals are ``(-1, -1)`` so relabeled rows are easy to tell."""
    steps = np.arange(T + 1, dtype=np.float32)
    eps = np.arange(N, dtype=np.float32)
    tags = np.stack(np.broadcast_arrays(steps[None, :], eps[:, None]), axis=-1)  # [N, T+1, 2]
    return {
        "obs": tags.copy(),
        "ag": tags.copy(),
        "g": -np.ones((N, T, 2), np.float32),
        "action": np.zeros((N, T, 1), np.float32),
    }


def reward_fn(ag, g, info):
    return -(np.linalg.norm(ag - g, axis=-1) > 0.5).astype(np.float32)


def binomial_margin(p: float, n: int) -> float:
    """Four standard errors of a fraction estimated from ``n`` draws of probability ``p``."""
    return 4.0 * np.sqrt(p * (1.0 - p) / n)


def sample(strategy: str, relabel_p: float = 1.0, batch: int = 4000, seed: int = 0):
    return sample_her_transitions(
        tagged_episodes(), batch, resolve_strategy(strategy), relabel_p, reward_fn, np.random.default_rng(seed)
    )


def test_future_goal_never_comes_from_an_earlier_step():
    tr = sample("future")
    t, ep = tr.obs[:, 0], tr.obs[:, 1]
    goal_step, goal_ep = tr.goal[:, 0], tr.goal[:, 1]
    assert np.all(goal_ep == ep)
    assert np.all(goal_step >= t + 1) and np.all(goal_step <= T)
    # every future step is reachable, including the next one and the last one
    assert set(np.unique(goal_step - t)) >= {1.0, float(T)}
    np.testing.assert_array_equal(tr.next_obs[:, 0], t + 1)


def test_final_goal_is_the_last_achieved_goal():
    tr = sample("final")
    np.testing.assert_array_equal(tr.goal[:, 0], T)
    np.testing.assert_array_equal(tr.goal[:, 1], tr.obs[:, 1])


def test_episode_goal_is_from_the_same_episode_and_random_goal_from_any():
    tr = sample("episode")
    np.testing.assert_array_equal(tr.goal[:, 1], tr.obs[:, 1])
    assert set(np.unique(tr.goal[:, 0])) == set(range(T + 1))
    tr = sample("random")
    other = 1 - 1 / N  # the goal's episode is uniform over the N stored ones
    assert np.mean(tr.goal[:, 1] != tr.obs[:, 1]) == pytest.approx(other, abs=binomial_margin(other, len(tr.goal)))
    assert set(np.unique(tr.goal[:, 1])) == set(range(N)) and set(np.unique(tr.goal[:, 0])) == set(range(T + 1))


@pytest.mark.parametrize("replay_k, expected", [(0, 0.0), (1, 0.5), (4, 0.8)])
def test_relabel_fraction_follows_replay_k(replay_k, expected):
    p = relabel_probability(replay_k)
    assert p == pytest.approx(expected)
    tr = sample("future", p, batch=20000)
    relabeled = np.mean(tr.goal[:, 0] != -1)
    assert relabeled == pytest.approx(expected, abs=max(binomial_margin(expected, 20000), 1e-12))


def test_rewards_are_recomputed_for_the_new_goals():
    tr = sample("future", 0.5)
    np.testing.assert_array_equal(tr.reward, reward_fn(tr.next_obs, tr.goal, None))
    # a goal equal to the next achieved goal is a success
    assert np.all(tr.reward[np.all(tr.goal == tr.next_obs, axis=1)] == 0)


def test_sampling_is_deterministic_for_a_seed():
    a, b = sample("future", 0.8, seed=3), sample("future", 0.8, seed=3)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_custom_callable_strategy():
    def first_goal(episodes, ep, t, rng):
        return episodes["ag"][ep, 0]

    tr = sample_her_transitions(
        tagged_episodes(), 100, resolve_strategy(first_goal), 1.0, reward_fn, np.random.default_rng(0)
    )
    np.testing.assert_array_equal(tr.goal[:, 0], 0)


def test_bad_strategy_and_replay_k_are_rejected():
    with pytest.raises(OptionError, match="strategy='futur'.*future, final, episode, random, actual"):
        resolve_strategy("futur")
    with pytest.raises(OptionError, match="replay_k=-1"):
        relabel_probability(-1)
    assert [s.value for s in GoalStrategy] == ["future", "final", "episode", "random", "actual"]
    with pytest.raises(OptionError, match="weights='nope'"):
        MixtureStrategy({"future": 1.0, "nope": 1.0})
    with pytest.raises(OptionError, match="weights"):
        MixtureStrategy({"future": 0.0})
    with pytest.raises(OptionError, match="weights.future=-1"):
        MixtureStrategy({"future": -1})


def test_actual_goals_are_real_goals_of_stored_episodes():
    eps = tagged_episodes()
    eps["g"] = eps["ag"][:, :T] + np.float32([100, 0])  # real goals tagged (step + 100, episode)
    tr = sample_her_transitions(eps, 3000, resolve_strategy("actual"), 1.0, reward_fn, np.random.default_rng(0))
    assert np.all(tr.goal[:, 0] >= 100)
    assert set(np.unique(tr.goal[:, 1])) == set(range(N))


def test_mixture_draws_each_strategy_in_proportion():
    eps = tagged_episodes()
    eps["g"] = eps["ag"][:, :T] + np.float32([100, 0])  # real goals tagged (step + 100, episode)
    mix = MixtureStrategy({"future": 0.5, "actual": 0.25, "final": 0.25})
    tr = sample_her_transitions(eps, 20000, mix, 1.0, reward_fn, np.random.default_rng(0))
    t = tr.obs[:, 0]
    actual = tr.goal[:, 0] >= 100
    assert np.mean(actual) == pytest.approx(0.25, abs=binomial_margin(0.25, len(actual)))
    own = ~actual
    assert np.all(tr.goal[own, 1] == tr.obs[own, 1]) and np.all(tr.goal[own, 0] > t[own])  # future or final
    # Among the own-episode goals, a third are final (step T) and two thirds future; a future goal of step t is
    # uniform over the T - t steps after it, so it is step T with probability 1 / (T - t), t uniform in [0, T).
    future_hits_final = np.mean([1 / (T - step) for step in range(T)])  # H_10 / 10 = 0.293
    expected = 1 / 3 + 2 / 3 * future_hits_final  # 0.529
    final_share = np.mean(tr.goal[own, 0] == T)
    assert final_share == pytest.approx(expected, abs=binomial_margin(expected, int(own.sum())))


@pytest.mark.parametrize("env_id", ["PointReach-v0", "FetchReach-v4"])
def test_recomputed_rewards_equal_the_envs(env_id):
    """Rewards of stored (not relabeled) transitions equal what the env returned while stepping."""
    env = make_env(env_id)
    info = env_info(env)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    o, ag, g, act, rewards = [obs["observation"]], [obs["achieved_goal"]], [], [], []
    for _ in range(info.horizon):
        a = rng.uniform(-1, 1, info.action_dim).astype(np.float32)
        g.append(obs["desired_goal"])
        obs, r, *_ = env.step(a)
        o.append(obs["observation"]), ag.append(obs["achieved_goal"]), act.append(a), rewards.append(r)
    ep = {"obs": np.array([o]), "ag": np.array([ag]), "g": np.array([g]), "action": np.array([act])}
    buf = HerReplayBuffer(
        1000, info.horizon, info.obs_dim, info.goal_dim, info.action_dim, info.compute_reward, "future", 0
    )
    buf.store(ep)
    tr = buf.sample(500, rng)
    steps = [int(np.flatnonzero(np.all(ep["action"][0] == a, axis=1))[0]) for a in tr.action]
    np.testing.assert_array_equal(tr.reward, np.asarray(rewards, np.float32)[steps])
    # and relabeled rewards are the env's compute_reward of the new goals
    buf.relabel_p = 1.0
    tr = buf.sample(500, rng)
    steps = [int(np.flatnonzero(np.all(ep["action"][0] == a, axis=1))[0]) for a in tr.action]
    np.testing.assert_array_equal(
        tr.reward, env.unwrapped.compute_reward(ep["ag"][0][np.array(steps) + 1], tr.goal, {})
    )
    env.close()


def moving_buffer(motion_priority: float, motion_scale: float = 0.05) -> HerReplayBuffer:
    """Four episodes whose achieved goal travels 0, 0.025, 0.05 and 0.5 (along one axis), in a buffer that
    weights them by ``motion_priority``; ``obs[e, k] = (k, e)`` tags each sample's episode."""
    buf = HerReplayBuffer(100 * T, T, 2, 1, 1, reward_fn, "future", 4, motion_priority, motion_scale)
    paths = np.array([0.0, 0.025, 0.05, 0.5])
    ag = np.linspace(0.0, 1.0, T + 1)[None, :, None] * paths[:, None, None]  # [4, T + 1, 1]
    eps = tagged_episodes()
    buf.store({"obs": eps["obs"][:4], "ag": ag.astype(np.float32), "g": np.zeros((4, T, 1), np.float32),
               "action": np.zeros((4, T, 1), np.float32)})  # fmt: skip
    return buf


def test_motion_priority_samples_episodes_by_how_far_their_achieved_goal_moved():
    n = 40_000
    episode = moving_buffer(4.0).sample(n, np.random.default_rng(0)).obs[:, 1]
    weights = np.array([1.0, 3.0, 5.0, 5.0])  # 1 + 4 * min(path / 0.05, 1)
    for e, p in enumerate(weights / weights.sum()):
        assert np.mean(episode == e) == pytest.approx(p, abs=binomial_margin(p, n))
    steps = moving_buffer(4.0).sample(n, np.random.default_rng(1)).obs[:, 0]
    assert set(np.unique(steps)) == set(range(T))  # the step within an episode stays uniform
    uniform = moving_buffer(0.0).sample(n, np.random.default_rng(0)).obs[:, 1]
    assert all(np.mean(uniform == e) == pytest.approx(0.25, abs=binomial_margin(0.25, n)) for e in range(4))


def test_motion_priority_weights_are_rebuilt_from_a_loaded_buffer():
    saved = moving_buffer(4.0)
    loaded = HerReplayBuffer(100 * T, T, 2, 1, 1, reward_fn, "future", 4, 4.0)
    loaded.load_state_dict(saved.state_dict())
    np.testing.assert_allclose(loaded.episode_weights, saved.episode_weights)
    assert list(saved.episode_weights[:4]) == pytest.approx([1.0, 3.0, 5.0, 5.0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"motion_priority": -1.0}, "motion_priority=-1.0 is invalid"),
        ({"motion_priority": float("nan")}, "motion_priority=nan is invalid"),
        ({"motion_scale": 0.0}, "motion_scale=0.0 is invalid"),
        ({"batch_size": 0}, "batch_size=0 is invalid"),
        ({"future_warm_up": -1}, "future_warm_up=-1 is invalid"),
        ({"future_warm_up": 2.5}, "future_warm_up=2.5 is invalid"),
    ],
)
def test_buffer_options_reject_bad_values_naming_them(kwargs, message):
    with pytest.raises(OptionError, match=message):
        HerReplayBuffer(100 * T, T, 2, 1, 1, reward_fn, **kwargs)


def test_sample_batches_is_one_draw_of_batch_size_slices():
    buf = HerReplayBuffer(100 * T, T, 2, 2, 1, reward_fn, batch_size=8)
    buf.store(tagged_episodes())
    drawn = buf.sample_batches(3, np.random.default_rng(1))
    same = buf.sample(24, np.random.default_rng(1))
    assert len(drawn.obs) == 24 and all(np.array_equal(a, b) for a, b in zip(drawn, same))


def test_future_warm_up_relabels_every_goal_with_a_future_one_until_that_many_transitions_were_stored():
    """mrl's future_warm_up: real and ``actual`` goals (here ``(-1, -1)`` and the other episodes' real goals)
    only once the buffer has held ``future_warm_up`` transitions; before, every goal is one the sample's
    own episode achieved after its step."""
    buf = HerReplayBuffer(100 * T, T, 2, 2, 1, reward_fn, "actual", 1, future_warm_up=2 * N * T)
    buf.store(tagged_episodes())  # N * T transitions: still warming up
    rng = np.random.default_rng(0)
    for tr in (buf.sample(2000, rng), buf.sample_episodes(tagged_episodes(), 2000, rng)):
        step, episode = tr.obs[:, 0], tr.obs[:, 1]
        assert np.all(tr.goal[:, 1] == episode) and np.all(tr.goal[:, 0] > step)  # achieved later, same episode
        assert set(np.unique(tr.goal[:, 0] - step)) == set(range(1, T + 1))
    buf.store(tagged_episodes())  # 2 N T transitions: the strategy and replay_k apply
    tr = buf.sample(2000, rng)
    real = np.mean(np.all(tr.goal == -1, axis=1))
    assert real == 1.0  # "actual" draws real goals, and the rest keep theirs: all (-1, -1)
    loaded = HerReplayBuffer(100 * T, T, 2, 2, 1, reward_fn, "actual", 1, future_warm_up=2 * N * T)
    loaded.load_state_dict(buf.state_dict())  # the count of stored transitions travels with the buffer
    assert np.all(loaded.sample(100, rng).goal == -1)
