from __future__ import annotations

import numpy as np
import pytest
import torch

from her import HindsightExperienceReplay, OptionError, sparse_reward


def test_readme_example_runs_as_written():
    def goal_sampling_strategy(goals):
        noise = torch.randn_like(goals) * 0.1
        return goals + noise

    her = HindsightExperienceReplay(10, 2, 10000, 64, goal_sampling_strategy)
    her.store_transition(
        np.random.rand(10), np.random.rand(2), np.random.rand(), np.random.rand(10), False, np.random.rand(10)
    )
    batch = her.sample()  # None until 64 transitions are stored
    assert batch is None
    for _ in range(31):
        her.store_transition(
            np.random.rand(10), np.random.rand(2), np.random.rand(), np.random.rand(10), False, np.random.rand(10)
        )
    batch = her.sample()
    assert batch is not None
    states, actions, rewards, next_states, dones, goals = batch
    assert (
        states.shape == (64, 10)
        and actions.shape == (64, 2)
        and next_states.shape == (64, 10)
        and goals.shape == (64, 10)
    )
    assert rewards.shape == (64,) and dones.shape == (64,)
    assert all(t.dtype == torch.float32 for t in batch)
    # the stored rewards were uniform in [0, 1): every returned one is recomputed for the returned goal
    expected = sparse_reward(0.05)(next_states.numpy(), goals.numpy(), {})
    np.testing.assert_array_equal(rewards.numpy(), expected)


def rand_transition(rng, s=4, a=2):
    return rng.random(s), rng.random(a), -1.0, rng.random(s), False, rng.random(s)


def test_len_grows_by_two_up_to_buffer_size_then_oldest_are_overwritten():
    rng = np.random.default_rng(0)
    her = HindsightExperienceReplay(4, 2, 10, 2)
    for i in range(1, 6):
        her.store_transition(*rand_transition(rng))
        assert len(her) == 2 * i
    first = her.storage.data["obs"][0].copy()
    her.store_transition(*rand_transition(rng))
    assert len(her) == 10
    assert not np.array_equal(her.storage.data["obs"][0], first)


def test_hindsight_copy_has_the_achieved_state_as_goal_and_a_success_reward():
    her = HindsightExperienceReplay(3, 1, 100, 2, seed=0)
    s, s2, g = np.zeros(3), np.ones(3), np.full(3, 5.0)
    her.store_transition(s, np.zeros(1), -1.0, s2, True, g)
    data = her.storage.stored()
    np.testing.assert_array_equal(data["g"][:, 0], [g, s2])
    np.testing.assert_array_equal(data["reward"][:, 0, 0], [-1.0, 0.0])
    np.testing.assert_array_equal(data["done"][:, 0, 0], [1.0, 1.0])
    states, actions, rewards, next_states, dones, goals = her.sample()
    for row in range(2):  # rewards always match the goals they are returned with
        expected = 0.0 if torch.equal(goals[row], next_states[row]) else -1.0
        assert rewards[row].item() == expected


def test_custom_reward_fn_and_named_strategy():
    calls = []

    def reward_fn(achieved, goal, info):
        calls.append(len(achieved))
        return np.full(len(achieved), 7.0, np.float32)

    her = HindsightExperienceReplay(3, 1, 100, 8, "final", reward_fn=reward_fn, relabel_p=1.0, seed=0)
    rng = np.random.default_rng(1)
    for _ in range(4):
        her.store_transition(*rand_transition(rng, 3, 1))
    states, _, rewards, next_states, _, goals = her.sample()
    torch.testing.assert_close(goals, next_states)  # final == next state for one-step episodes
    assert torch.all(rewards == 7.0) and calls


@pytest.mark.parametrize(
    "arg, index, value",
    [
        ("state", 0, np.zeros(5)),
        ("action", 1, np.array([np.nan, 0.0])),
        ("reward", 2, float("nan")),
        ("next_state", 3, np.full(4, np.inf)),
        ("goal", 5, np.zeros((2, 4))),
    ],
)
def test_bad_inputs_raise_value_error_naming_the_argument_and_store_nothing(arg, index, value):
    rng = np.random.default_rng(0)
    her = HindsightExperienceReplay(4, 2, 10, 2)
    args = list(rand_transition(rng))
    args[index] = value
    with pytest.raises(ValueError, match=arg):
        her.store_transition(*args)
    assert len(her) == 0 and not her.storage.data["obs"].any()


def test_bad_constructor_arguments():
    with pytest.raises(OptionError, match="buffer_size=0"):
        HindsightExperienceReplay(4, 2, 0, 2)
    with pytest.raises(OptionError, match="goal_sampling_strategy='nope'"):
        HindsightExperienceReplay(4, 2, 10, 2, "nope")
    with pytest.raises(OptionError, match="goal_sampling_strategy=3"):
        HindsightExperienceReplay(4, 2, 10, 2, 3)


def stored(her: HindsightExperienceReplay, n: int, seed: int = 0, s: int = 4) -> list[tuple]:
    rng = np.random.default_rng(seed)
    transitions = [rand_transition(rng, s) for _ in range(n)]
    for t in transitions:
        her.store_transition(*t)
    return transitions


def test_rewards_are_recomputed_for_the_goals_a_tensor_strategy_returns():
    """A strategy that moves every goal to one point: the rewards are 0 exactly where the next state is there."""
    point = np.full(4, 0.5, np.float32)
    her = HindsightExperienceReplay(4, 2, 100, 32, lambda goals: torch.as_tensor(point).expand_as(goals), seed=0)
    rng = np.random.default_rng(0)
    for i in range(20):  # every other transition ends at the point
        t = list(rand_transition(rng))
        t[3] = point if i % 2 == 0 else t[3]
        her.store_transition(*t)
    for _ in range(5):
        states, _, rewards, next_states, _, goals = her.sample()
        assert torch.all(goals == torch.as_tensor(point))
        at_point = torch.all(next_states == torch.as_tensor(point), dim=1)
        assert 0 < at_point.sum() < 32
        np.testing.assert_array_equal(rewards.numpy(), np.where(at_point.numpy(), 0.0, -1.0))


def test_a_named_strategy_relabels_a_relabel_p_fraction_with_recomputed_rewards():
    """``final`` with ``relabel_p = 0.3``: relabeled goals are the next state (reward 0), the others keep the
    goal they were stored with (a hindsight copy's goal is its next state too, so only real copies tell)."""
    her = HindsightExperienceReplay(4, 2, 1000, 64, "final", relabel_p=0.3, seed=0)
    transitions = stored(her, 200)
    real_goals = {t[3].astype(np.float32).tobytes(): t[5].astype(np.float32) for t in transitions}
    real = 0
    for _ in range(100):
        _, _, rewards, next_states, _, goals = her.sample()
        copies = [i for i in range(64) if not torch.equal(goals[i], next_states[i])]  # kept a real goal
        for i in copies:
            np.testing.assert_array_equal(goals[i].numpy(), real_goals[next_states[i].numpy().tobytes()])
        np.testing.assert_array_equal(rewards.numpy(), sparse_reward(0.05)(next_states.numpy(), goals.numpy(), {}))
        real += len(copies)
    n = 100 * 64
    # Half the stored episodes are real copies, and 0.7 of their rows keep the real goal: 0.35 of all rows
    # (the others, and all hindsight copies, have the next state as their goal).
    assert real / n == pytest.approx(0.35, abs=4 * np.sqrt(0.35 * 0.65 / n))


def test_same_seed_same_batches_and_sampling_never_changes_the_stored_data():
    def strategy(goals):
        return goals + 1.0

    runs = []
    for seed in (3, 3, 4):
        for named in ("future", strategy):
            her = HindsightExperienceReplay(4, 2, 100, 16, named, relabel_p=0.5, seed=seed)
            stored(her, 30)
            before = {k: v.copy() for k, v in her.storage.data.items()}
            runs.append([her.sample() for _ in range(10)])
            for k, v in her.storage.data.items():
                np.testing.assert_array_equal(v, before[k], err_msg=k)
    for a, b in zip(runs[0:2], runs[2:4]):  # seed 3 twice
        for x, y in zip(a, b):
            for u, v in zip(x, y):
                assert torch.equal(u, v)
    for a, c in zip(runs[0:2], runs[4:6]):  # seed 4 draws other batches
        assert not all(torch.equal(x[0], y[0]) for x, y in zip(a, c))


def test_a_batch_larger_than_the_buffer_is_refused():
    with pytest.raises(OptionError, match="batch_size=8 is invalid: expected at most buffer_size=4"):
        HindsightExperienceReplay(3, 1, buffer_size=4, batch_size=8)
    HindsightExperienceReplay(3, 1, buffer_size=4, batch_size=4)


@pytest.mark.parametrize(
    "index, value, message",
    [
        (2, "1", "reward='1' is invalid: expected a finite number"),
        (2, True, "reward=True is invalid"),
        (2, np.zeros(2), "reward=array"),
        (4, 2, r"done=2 is invalid: expected true or false \(or 0 or 1\)"),
        (4, "1", "done='1'"),
        (4, 0.5, "done=0.5"),
        (0, np.array(["1", "2", "3", "4"]), "state must be numeric"),
        (5, [None] * 4, "goal must be numeric"),
    ],
)
def test_non_numeric_rewards_and_non_boolean_dones_are_refused(index, value, message):
    rng = np.random.default_rng(0)
    her = HindsightExperienceReplay(4, 2, 10, 2)
    args = list(rand_transition(rng))
    args[index] = value
    with pytest.raises(ValueError, match=message):
        her.store_transition(*args)
    assert len(her) == 0 and not her.storage.data["obs"].any()


def test_torch_tensors_and_numpy_scalars_are_accepted():
    her = HindsightExperienceReplay(3, 1, 10, 2, seed=0)
    state = torch.zeros(3, requires_grad=True)
    her.store_transition(state, torch.ones(1), torch.tensor(-1.0), torch.ones(3), torch.tensor(True), torch.ones(3))
    her.store_transition(np.zeros(3), [0.5], np.float32(-1.0), np.ones(3), 1, np.ones(3))
    her.store_transition(np.zeros(3), np.zeros(1), np.array(0.0), np.ones(3), np.bool_(False), np.ones(3))
    assert len(her) == 6
    np.testing.assert_array_equal(her.storage.data["done"][:6, 0, 0], [1, 1, 1, 1, 0, 0])


def test_a_strategy_returning_nan_goals_is_an_error_naming_it():
    def broken(goals):
        goals = goals.clone()
        goals[1] = float("nan")
        return goals

    her = HindsightExperienceReplay(3, 1, 10, 4, broken, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(2):
        her.store_transition(*rand_transition(rng, 3, 1))
    with pytest.raises(ValueError, match=r"strategy .*<locals>\.broken returned NaN or inf goals \(rows \[1\]"):
        her.sample()


# --- faults: a strategy's result, sizes ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "returned, message",
    [
        (lambda g: g.numpy(), r"returned numpy\.ndarray of shape \(4, 3\) on a \(4, 3\) goal tensor: expected a torch"),
        (lambda g: g.tolist(), r"returned builtins\.list of shape \(4, 3\) on a \(4, 3\) goal tensor"),
        (lambda g: None, r"returned builtins\.NoneType on a \(4, 3\) goal tensor: expected a torch\.Tensor"),
        (lambda g: g > 0, r"returned a torch\.bool tensor: expected real numbers"),
        (lambda g: g[:2], r"returned shape \(2, 3\) for 4 goals, expected \(4, 3\): a goal per row"),
        (lambda g: g.T, r"returned shape \(3, 4\) \(transposed\?\) for 4 goals, expected \(4, 3\)"),
    ],
    ids=["numpy", "list", "none", "bool", "rows-missing", "transposed"],
)
def test_a_strategy_result_of_the_wrong_type_or_shape_is_an_error_naming_the_strategy(returned, message):
    her = HindsightExperienceReplay(3, 2, 10, 4, returned, seed=0)
    stored(her, 2, s=3)
    name = r"goal_sampling_strategy test_transition_api\.<lambda> "
    with pytest.raises((TypeError, ValueError), match=name + message):
        her.sample()


def test_a_transposed_result_is_caught_when_the_batch_equals_the_state_dim():
    """With ``batch_size == state_dim`` a transposed ``[B, s]`` result has the right shape: the first sample also
    calls the strategy on ``B + 1`` goals, where it has not."""
    calls = []

    def transposed(goals):
        calls.append(len(goals))
        return goals.T

    her = HindsightExperienceReplay(3, 2, 10, 3, transposed, seed=0)
    stored(her, 2, s=3)
    with pytest.raises(ValueError, match=r"transposed returned shape \(3, 4\) \(transposed\?\) for 4 goals"):
        her.sample()
    rows = HindsightExperienceReplay(3, 2, 10, 3, lambda g: g + 1, seed=0)  # a row-wise one passes, and is probed once
    stored(rows, 2, s=3)
    assert rows.sample() is not None and rows.sample() is not None and not rows._check_rows


@pytest.mark.parametrize("size", [1, 3, 11])
def test_buffer_sizes_that_cannot_hold_whole_pairs_are_refused(size):
    with pytest.raises(OptionError, match=rf"buffer_size={size} is invalid: expected an even integer >= 2: each"):
        HindsightExperienceReplay(3, 1, size, 1)


def test_a_buffer_larger_than_the_memory_available_is_refused_before_allocating(monkeypatch):
    from her import validation

    monkeypatch.setattr(validation, "available_memory", lambda: 2**30)
    with pytest.raises(
        OptionError,
        match=r"buffer_size=1000000000 is invalid: its arrays need 44\.7 GiB \(48000000000 bytes\), more than the "
        r"1\.0 GiB \(1073741824 bytes\) of memory available",
    ):
        HindsightExperienceReplay(3, 1, 10**9, 64)
    HindsightExperienceReplay(3, 1, 10**6, 64)  # 48 MB
