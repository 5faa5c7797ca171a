"""``buffer.n_step``: n-step returns recomputed for relabeled goals, cut at the episode end and where the goal is
first reached; the batch's ``discount`` in the agents' TD target; ``n_step=1`` as before."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import compose_config
from helpers.agents_small import make, set_critic_outputs
from helpers.fixed_batch import batch

from agents import DDPG, SAC, TD3
from envs import env_info, make_env
from her import HerReplayBuffer, OptionError, Transitions, relabel_goals, sample_her_transitions
from her.relabel import resolve_strategy
from training.build import build_runner
from training.options import ConfigError
from training.transfer import BatchToDevice

T = 6
GAMMA = 0.9


def line_episode(n: int = 1) -> dict[str, np.ndarray]:
    """``n`` copies of one episode whose achieved goal walks ``0, 1, ..., T`` along a line, real goal ``4``;
    ``obs[e, k] = (k, e)`` tags each state with its step."""
    steps = np.arange(T + 1, dtype=np.float32)
    obs = np.stack(np.broadcast_arrays(steps[None, :], np.arange(n, dtype=np.float32)[:, None]), axis=-1)
    return {
        "obs": obs.copy(),
        "ag": np.broadcast_to(steps[None, :, None], (n, T + 1, 1)).copy(),
        "g": np.full((n, T, 1), 4.0, np.float32),
        "action": np.zeros((n, T, 1), np.float32),
    }


def minus_one_or_zero(ag, g, info):
    """Fetch's convention: ``0`` within 0.5 of the goal, else ``-1``."""
    return -(np.abs(ag - g)[..., 0] > 0.5).astype(np.float32)


def zero_or_one(ag, g, info):
    """PointMaze's convention: ``1`` within 0.5 of the goal, else ``0``."""
    return (np.abs(ag - g)[..., 0] <= 0.5).astype(np.float32)


def expected_row(t: int, goal: float, n: int, reward_fn) -> tuple[float, int]:
    """The n-step reward sum and length ``m`` of the transition from step ``t``, by the definition: rewards
    ``reward_fn(ag[t+k+1], goal)`` summed with ``GAMMA^k`` up to the episode's end or the first success."""
    success = float(reward_fn(np.array([[goal]]), np.array([[goal]]), None)[0])
    total, m = 0.0, 0
    for k in range(min(n, T - t)):
        r = float(reward_fn(np.array([[t + k + 1.0]]), np.array([[goal]]), None)[0])
        total += GAMMA**k * r
        m = k + 1
        if r == success:
            break
    return total, m


def check_rows(tr: Transitions, goal: float, n: int, reward_fn) -> set[int]:
    """Every row of ``tr`` is the n-step transition its start step defines; returns the steps seen."""
    t = tr.obs[:, 0].astype(int)
    for i, step in enumerate(t):
        total, m = expected_row(int(step), goal, n, reward_fn)
        assert tr.reward[i] == np.float32(total), (step, tr.reward[i], total)
        assert tr.next_obs[i, 0] == step + m and tr.next_obs[i, 1] == tr.obs[i, 1]
        assert tr.discount[i] == np.float32(GAMMA**m)
    assert tr.reward.dtype == tr.discount.dtype == np.float32
    return set(t.tolist())


def sample(n_step: int, reward_fn, strategy: str = "future", relabel_p: float = 0.0, size: int = 600):
    return sample_her_transitions(
        line_episode(2), size, resolve_strategy(strategy), relabel_p, reward_fn, np.random.default_rng(0),
        gamma=GAMMA, n_step=n_step,
    )  # fmt: skip


@pytest.mark.parametrize("reward_fn", [minus_one_or_zero, zero_or_one])
def test_n_step_rows_by_hand(reward_fn):
    """Goal 4 on the walk 0..6, n = 3, gamma = 0.9 (Fetch's -1/0 reward; PointMaze's 0/1 in brackets):
    t=0: three misses: -1 - 0.9 - 0.81 = -2.71 (0), next obs 3, discount 0.729;
    t=2: a miss, then the goal at ag 4: m = 2, -1 + 0 (0 + 0.9), next obs 4, discount 0.81, the miss at ag 5
    after it left out; t=3: the goal at once: m = 1; t=4: two misses then the episode ends: m = 2, next obs 6."""
    tr = sample(3, reward_fn)
    assert check_rows(tr, 4.0, 3, reward_fn) == set(range(T))
    by_step = {int(s): (float(r), float(o), float(d)) for s, r, o, d in zip(tr.obs[:, 0], tr.reward, tr.next_obs[:, 0],
                                                                             tr.discount)}  # fmt: skip
    if reward_fn is minus_one_or_zero:
        assert by_step[0] == (np.float32(-2.71), 3.0, np.float32(0.729))
        assert by_step[2] == (-1.0, 4.0, np.float32(0.81))
        assert by_step[3] == (0.0, 4.0, np.float32(0.9))
        assert by_step[4] == (np.float32(-1.9), 6.0, np.float32(0.81))
        assert by_step[5] == (-1.0, 6.0, np.float32(0.9))
    else:
        assert by_step[0] == (0.0, 3.0, np.float32(0.729))
        assert by_step[2] == (np.float32(0.9), 4.0, np.float32(0.81))
        assert by_step[3] == (1.0, 4.0, np.float32(0.9))


def test_n_step_rewards_are_recomputed_for_relabeled_goals():
    """``final`` relabels every goal to ag[T] = 6: from t = 3, misses at 4 and 5 and the goal at 6 (m = 3,
    -1 - 0.9 + 0); from t = 0 three misses."""
    tr = sample(3, minus_one_or_zero, "final", 1.0)
    assert np.all(tr.goal == 6.0)
    assert check_rows(tr, 6.0, 3, minus_one_or_zero) == set(range(T))
    row = np.flatnonzero(tr.obs[:, 0] == 3)[0]
    assert (tr.reward[row], tr.next_obs[row, 0], tr.discount[row]) == (np.float32(-1.9), 6.0, np.float32(0.729))


def test_future_goals_with_every_n_step_follow_the_definition():
    """Random future goals (each row its own), every length up to T: the rows match the definition."""
    for n in range(1, T + 1):
        tr = sample(n, minus_one_or_zero, "future", 1.0, size=300)
        for goal in np.unique(tr.goal[:, 0]):
            rows = tr.goal[:, 0] == goal
            check_rows(Transitions(*(x[rows] for x in tr)), float(goal), n, minus_one_or_zero)


def test_transitions_are_cut_at_the_episode_end():
    """n = T: a transition from step t lasts T - t steps (no success on the way to goal 100), bootstrapping from
    the last stored state."""
    eps = line_episode(1)
    eps["g"][:] = 100.0
    tr = sample_her_transitions(
        eps, 300, resolve_strategy("future"), 0.0, minus_one_or_zero, np.random.default_rng(0), gamma=GAMMA, n_step=T
    )
    t = tr.obs[:, 0].astype(int)
    assert set(t.tolist()) == set(range(T))
    np.testing.assert_array_equal(tr.next_obs[:, 0], T)
    np.testing.assert_array_equal(tr.discount, np.float32([GAMMA ** (T - s) for s in t]))
    np.testing.assert_array_equal(tr.reward, np.float32([-sum(GAMMA**k for k in range(T - s)) for s in t]))


def one_step_sampler(episodes, batch_size, strategy, relabel_p, reward_fn, rng, episode_weights=None):
    """The sampler as it was before n-step returns: the oracle that ``n_step=1`` changes nothing."""
    n, horizon = episodes["g"].shape[:2]
    if episode_weights is None:
        step = rng.integers(0, n * horizon, batch_size)
        ep, t = np.divmod(step, horizon)
    else:
        cum = np.cumsum(episode_weights, dtype=np.float64)
        ep = np.minimum(np.searchsorted(cum, rng.random(batch_size) * cum[-1], side="right"), n - 1)
        t = rng.integers(0, horizon, batch_size)
    goal = episodes["g"][ep, t].copy()
    relabel_goals(episodes, goal, ep, t, strategy, relabel_p, rng)
    reward = np.asarray(reward_fn(episodes["ag"][ep, t + 1], goal, {}), dtype=np.float32)
    return episodes["obs"][ep, t], episodes["action"][ep, t], reward, episodes["obs"][ep, t + 1], goal


@pytest.mark.parametrize("strategy", ["future", "final", "episode", "random", "actual"])
@pytest.mark.parametrize("weighted", [False, True])
def test_one_step_batches_are_the_batches_of_before(strategy, weighted):
    rng = np.random.default_rng(1)
    n = 5
    eps = {"obs": rng.normal(size=(n, T + 1, 4)), "ag": rng.normal(size=(n, T + 1, 3)),
           "g": rng.normal(size=(n, T, 3)), "action": rng.normal(size=(n, T, 2))}  # fmt: skip
    eps = {k: v.astype(np.float32) for k, v in eps.items()}
    weights = rng.random(n) if weighted else None

    def reward_fn(ag, g, info):
        return -(np.linalg.norm(ag - g, axis=-1) > 1.0).astype(np.float32)

    fn = resolve_strategy(strategy)
    new = sample_her_transitions(eps, 2000, fn, 0.8, reward_fn, np.random.default_rng(7), weights, gamma=0.98)
    old = one_step_sampler(eps, 2000, fn, 0.8, reward_fn, np.random.default_rng(7), weights)
    for a, b in zip(new[:5], old):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert new.discount.dtype == np.float32 and np.all(new.discount == np.float32(0.98))


def test_the_buffer_passes_n_step_and_gamma_and_one_step_is_the_default():
    def buffer(**kw) -> HerReplayBuffer:
        buf = HerReplayBuffer(100 * T, T, 2, 1, 1, minus_one_or_zero, "future", 0, **kw)
        buf.store(line_episode(2))
        return buf

    default, explicit = buffer(), buffer(n_step=1, gamma=0.98)
    for a, b in zip(default.sample(500, np.random.default_rng(0)), explicit.sample(500, np.random.default_rng(0))):
        np.testing.assert_array_equal(a, b)
    tr = buffer(n_step=3, gamma=GAMMA).sample(500, np.random.default_rng(0))
    check_rows(tr, 4.0, 3, minus_one_or_zero)
    tr = buffer(n_step=3, gamma=GAMMA).sample_episodes(line_episode(1), 200, np.random.default_rng(0))
    check_rows(tr, 4.0, 3, minus_one_or_zero)


@pytest.mark.parametrize(
    "value, expected",
    [
        (0, "n_step=0 is invalid: expected an integer > 0"),
        (-1, "n_step=-1 is invalid: expected an integer > 0"),
        (1.5, "n_step=1.5 is invalid: expected an integer > 0"),
        ("3", "n_step='3' is invalid: expected an integer > 0"),
        (T + 1, rf"n_step={T + 1} is invalid: expected an integer in \[1, horizon={T}\]"),
    ],
)
def test_bad_n_step_values_are_refused_naming_them(value, expected):
    with pytest.raises(OptionError, match=expected):
        HerReplayBuffer(100 * T, T, 2, 1, 1, minus_one_or_zero, n_step=value)
    if value != T + 1:
        with pytest.raises(OptionError, match=expected):
            sample_her_transitions(line_episode(), 4, resolve_strategy("future"), 0.0, minus_one_or_zero,
                                   np.random.default_rng(0), n_step=value)  # fmt: skip
    with pytest.raises(OptionError, match=r"gamma=1.0 is invalid: expected a number in \[0.0, 1.0\)"):
        HerReplayBuffer(100 * T, T, 2, 1, 1, minus_one_or_zero, gamma=1.0)


def point_runner(*overrides: str):
    cfg = compose_config("env=PointReach", "buffer.batch_size=16", "torch_threads=1", "progress=false", *overrides)
    return build_runner(cfg, run_dir=None)[0]


@pytest.mark.parametrize(
    "override, expected",
    [
        ("buffer.n_step=0", "buffer.n_step=0 is invalid: expected an integer > 0"),
        ("buffer.n_step=-1", "buffer.n_step=-1 is invalid: expected an integer > 0"),
        ("buffer.n_step=1.5", "buffer.n_step=1.5 is invalid: expected an integer > 0"),
        ("buffer.n_step=three", "buffer.n_step='three' is invalid: expected an integer > 0"),
        ("buffer.n_step=51", r"buffer.n_step=51 is invalid: expected an integer in \[1, horizon=50\]"),
        ("agent.gamma=1.5", r"agent.gamma=1.5 is invalid: expected a number in \[0.0, 1.0\)"),
    ],
)
def test_the_config_refuses_bad_values_naming_the_option(override, expected):
    with pytest.raises(ConfigError, match=expected):
        point_runner(override)


def test_the_buffer_gets_the_agents_gamma_and_the_runner_refuses_another():
    runner = point_runner("buffer.n_step=3", "agent.gamma=0.9")
    assert runner.buffer.gamma == runner.agent.gamma == 0.9 and runner.buffer.n_step == 3
    other = HerReplayBuffer(1000, 50, 2, 2, 2, minus_one_or_zero, gamma=0.98)
    with pytest.raises(ValueError, match="buffer discounts with gamma=0.98 but the agent with gamma=0.9"):
        type(runner)(runner.agent, other, runner.train_env, runner.eval_env, 50)
    runner.close()


def test_a_point_run_with_three_step_returns_trains():
    """A few cycles of PointReach with ``buffer.n_step=3``: batches of 1-3 step transitions reach the agent
    through the device transfer, and every loss is finite."""
    runner = point_runner("buffer.n_step=3", "runner.random_steps=50")
    seen: list[Transitions] = []
    update = runner.agent.update
    runner.agent.update = lambda b: seen.append(b) or update(b)  # type: ignore[method-assign]
    stats = []
    for _ in range(3):
        runner.collect()
        stats += runner.learn(5)
    runner.close()
    assert len(stats) == 15 and all(np.isfinite(s["critic_loss"]) and np.isfinite(s["actor_loss"]) for s in stats)
    discounts = torch.cat([b.discount for b in seen])
    assert isinstance(discounts, torch.Tensor) and discounts.dtype == torch.float32
    assert set(discounts.unique().tolist()) <= {np.float32(0.98**m).item() for m in (1, 2, 3)}
    assert (discounts < np.float32(0.98)).any()  # some transitions of more than one step


@pytest.mark.parametrize("env_id", ["PointReach-v0", "FetchReach-v4"])
def test_two_step_rewards_of_stored_goals_sum_the_envs_rewards(env_id):
    """Unrelabeled 2-step transitions of a random episode: ``r_t + gamma r_{t+1}`` from the env's own step
    rewards, or ``r_t`` alone where the goal is reached at ``t`` (the env's success reward, 0)."""
    env = make_env(env_id)
    info = env_info(env)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    o, ag, g, act, rewards = [obs["observation"]], [obs["achieved_goal"]], [], [], []
    for _ in range(info.horizon):
        g.append(obs["desired_goal"])
        a = rng.uniform(-1, 1, info.action_dim).astype(np.float32)
        obs, r, *_ = env.step(a)
        o.append(obs["observation"]), ag.append(obs["achieved_goal"]), act.append(a), rewards.append(r)
    env.close()
    ep = {k: np.array([v], np.float32) for k, v in {"obs": o, "ag": ag, "g": g, "action": act}.items()}
    ep["action"][0, :, 0] = np.arange(info.horizon)  # tags each step
    buf = HerReplayBuffer(1000, info.horizon, info.obs_dim, info.goal_dim, info.action_dim, info.compute_reward,
                          "future", 0, n_step=2, gamma=GAMMA)  # fmt: skip
    buf.store(ep)
    tr = buf.sample(300, rng)
    r = np.asarray(rewards, np.float64)
    for i, t in enumerate(tr.action[:, 0].astype(int)):
        m = 1 if r[t] == 0.0 or t == info.horizon - 1 else 2
        assert tr.reward[i] == np.float32(sum(GAMMA**k * r[t + k] for k in range(m)))
        np.testing.assert_array_equal(tr.next_obs[i], ep["obs"][0, t + m])
        assert tr.discount[i] == np.float32(GAMMA**m)


# --- the agents' TD target -------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [DDPG, TD3, SAC])
def test_td_target_discounts_by_the_batch_and_one_step_is_the_formula_of_before(cls):
    g = torch.Generator().manual_seed(0)
    reward, value = -torch.randint(0, 2, (1000,), generator=g).float(), -60 * torch.rand(1000, generator=g)
    ag = make(cls, gamma=0.98, clip_target=True)
    old = (reward + 0.98 * value).clamp(-50.0, 0.0)  # r + gamma * V(s'), clipped
    assert torch.equal(ag.td_target(reward, value, torch.full((1000,), np.float32(0.98))), old)
    # m-step rows: r + gamma^m V(s'); sums of rewards in [-1, 0] keep the target in [-1/(1-gamma), 0]
    reward, value, discount = (
        torch.tensor([-1.0, -1.98, 0.0]),
        torch.tensor([-50.0, -50.0, -10.0]),
        torch.tensor([0.98, 0.98**2, 0.98**3]),
    )
    target = make(cls, gamma=0.98, clip_target=False).td_target(reward, value, discount)
    torch.testing.assert_close(target, torch.tensor([-50.0, -1.98 - 0.98**2 * 50, -(0.98**3) * 10]))


@pytest.mark.parametrize("cls", [DDPG, TD3, SAC])
def test_the_critic_regresses_on_the_batches_discount(cls):
    """With target critics at a constant -10, the critic's target is ``r + discount * next_value``: for SAC
    that is the whole soft value, entropy term included (its ``next_value``), discounted once."""
    ag = make(cls, clip_target=False, n_critics=2)
    set_critic_outputs(ag.critic_target, [-10.0, -10.0])
    set_critic_outputs(ag.critic, [0.0, 0.0])
    b = ag.batch_to_tensors(batch())
    b = b._replace(discount=torch.linspace(0.5, 0.98, len(b.reward)))
    x, next_x = ag.inputs(b.obs, b.goal), ag.inputs(b.next_obs, b.goal)
    if ag.generator is not None:
        state = ag.generator.get_state()
        with torch.no_grad():
            next_value = ag.next_value(next_x)
        ag.generator.set_state(state)
    else:
        next_value = torch.full_like(b.reward, -10.0)
    loss, q = ag.critic_loss(x, next_x, b)
    expected = (b.reward + b.discount * next_value).pow(2).mean() * 2  # two critics at 0
    torch.testing.assert_close(loss, expected)


def test_the_discount_moves_to_the_device_with_the_batch():
    tr = sample(3, minus_one_or_zero, size=64)
    moved = BatchToDevice("cpu")(tr)
    assert moved._fields == Transitions._fields and torch.equal(moved.discount, torch.from_numpy(tr.discount))
    if torch.cuda.is_available():
        cuda = BatchToDevice("cuda")(tr)
        assert cuda.discount.device.type == "cuda" and torch.equal(cuda.discount.cpu(), moved.discount)
