from __future__ import annotations

import numpy as np
import pytest

from her import EpisodeBuffer, OptionError


def episodes(n: int, start: int, T: int = 3) -> dict[str, np.ndarray]:
    """Episodes whose every entry is the episode's number, so slots show which episode they hold."""
    ids = np.arange(start, start + n, dtype=np.float32)
    return {
        "obs": np.broadcast_to(ids[:, None, None], (n, T + 1, 2)).copy(),
        "g": np.broadcast_to(ids[:, None, None], (n, T, 1)).copy(),
    }


def make(capacity: int = 4, T: int = 3) -> EpisodeBuffer:
    return EpisodeBuffer(capacity, {"obs": (T + 1, 2), "g": (T, 1)})


def test_store_fills_then_wraps_around_overwriting_oldest():
    buf = make(4)
    buf.store(episodes(3, 0))
    assert buf.n_episodes == 3
    buf.store(episodes(3, 3))  # episodes 3, 4, 5: 4 goes to slot 0 and 5 to slot 1
    assert buf.n_episodes == 4 and buf.n_stored_total == 6
    assert buf.data["obs"][:, 0, 0].tolist() == [4, 5, 2, 3]
    assert buf.data["g"][:, -1, 0].tolist() == [4, 5, 2, 3]
    assert buf.stored()["obs"].shape == (4, 4, 2)


def test_storage_is_preallocated_float32():
    buf = make(5)
    assert all(a.dtype == np.float32 and a.shape[0] == 5 for a in buf.data.values())


def test_bad_shapes_are_rejected_and_nothing_is_written():
    buf = make(4)
    bad = episodes(2, 0)
    bad["g"] = np.zeros((2, 99, 1), np.float32)
    with pytest.raises(ValueError, match="g"):
        buf.store(bad)
    assert buf.n_episodes == 0 and not buf.data["obs"].any()
    with pytest.raises(ValueError, match="fields"):
        buf.store({"obs": episodes(1, 0)["obs"]})
    with pytest.raises(ValueError, match="capacity"):
        buf.store(episodes(5, 0))


def test_capacity_must_be_positive():
    with pytest.raises(OptionError, match="capacity=0"):
        make(0)


def test_state_dict_after_wraparound_restores_contents_and_write_position():
    buf = make(4)
    buf.store(episodes(3, 0))
    buf.store(episodes(3, 3))  # wrapped: slots hold episodes 4, 5, 2, 3 and the next write goes to slot 2
    copy = make(4)
    copy.load_state_dict(buf.state_dict())
    assert (copy.n_episodes, copy.n_stored_total) == (4, 6)
    for name in buf.data:
        np.testing.assert_array_equal(copy.stored()[name], buf.stored()[name])
    for b in (buf, copy):
        assert b.store(episodes(1, 6)).tolist() == [2]
    assert copy.data["obs"][:, 0, 0].tolist() == buf.data["obs"][:, 0, 0].tolist() == [4, 5, 6, 3]


def test_state_dict_of_a_partly_filled_buffer_keeps_the_rest_empty():
    buf = make(4)
    buf.store(episodes(2, 0))
    copy = make(4)
    copy.store(episodes(4, 10))  # whatever it held is replaced
    copy.load_state_dict(buf.state_dict())
    assert copy.n_episodes == 2 and copy.store(episodes(1, 2)).tolist() == [2]
    assert copy.stored()["obs"][:, 0, 0].tolist() == [0, 1, 2]
