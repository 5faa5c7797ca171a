from __future__ import annotations

import numpy as np
import pytest
import torch

from her import HindsightExperienceReplay, OptionError


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
