"""Episode-major replay storage: preallocated float32 arrays, fixed capacity, oldest episodes overwritten."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from her import validation


class EpisodeBuffer:
    """Stores whole episodes of a fixed horizon ``T``.

    Each field has a per-step shape and a number of time slots: ``T + 1`` for per-state fields
    (``obs``, ``ag``: the state after the last action is kept) and ``T`` for per-step fields
    (``g``, ``action``). Storage for field ``k`` is ``[capacity, slots_k, *shape_k]`` float32.

    Args:
        capacity: number of episodes held; when full, new episodes overwrite the oldest.
        fields: ``name -> (slots, dim)``, e.g. ``{"obs": (T + 1, 10), "g": (T, 3)}``.
    """

    def __init__(self, capacity: int, fields: Mapping[str, tuple[int, int]]) -> None:
        self.capacity = validation.positive_int("capacity", capacity)
        if not fields:
            raise ValueError("fields must name at least one array")
        self.data: dict[str, np.ndarray] = {
            name: np.zeros((self.capacity, slots, dim), dtype=np.float32) for name, (slots, dim) in fields.items()
        }
        self._next = 0  # slot the next episode goes to
        self.n_episodes = 0  # episodes held, at most capacity
        self.n_stored_total = 0  # episodes ever stored

    def store(self, episodes: Mapping[str, np.ndarray]) -> np.ndarray:
        """Store a batch of ``n`` episodes; every field must be given, shaped ``[n, slots, dim]``.

        Returns the ``[n]`` slot indices written. All shapes are checked before anything is written.
        """
        if set(episodes) != set(self.data):
            raise ValueError(f"episodes must have fields {sorted(self.data)}, got {sorted(episodes)}")
        n = None
        for name, arr in episodes.items():
            expected = self.data[name].shape[1:]
            if arr.ndim != 3 or arr.shape[1:] != expected or (n is not None and arr.shape[0] != n):
                raise ValueError(
                    f"episodes[{name!r}] has shape {arr.shape}, expected [n, {expected[0]}, {expected[1]}]"
                )
            n = arr.shape[0]
        assert n is not None
        if n > self.capacity:
            raise ValueError(f"cannot store {n} episodes in a buffer of capacity {self.capacity}")
        idx = (self._next + np.arange(n)) % self.capacity
        for name, arr in episodes.items():
            self.data[name][idx] = arr
        self._next = int((self._next + n) % self.capacity)
        self.n_episodes = min(self.n_episodes + n, self.capacity)
        self.n_stored_total += n
        return idx

    def stored(self) -> dict[str, np.ndarray]:
        """Views ``[n_episodes, slots, dim]`` of the filled part of every field (no copy)."""
        return {name: arr[: self.n_episodes] for name, arr in self.data.items()}

    def state_dict(self) -> dict[str, object]:
        return {"data": self.stored(), "next": self._next, "n_stored_total": self.n_stored_total}

    def load_state_dict(self, state: Mapping[str, object]) -> None:
        data = state["data"]
        assert isinstance(data, Mapping)
        for name, arr in data.items():
            if name not in self.data or arr.shape[1:] != self.data[name].shape[1:] or len(arr) > self.capacity:
                raise ValueError(f"buffer field {name!r} of shape {arr.shape} does not fit {self.data[name].shape}")
            self.data[name][: len(arr)] = arr
            self.n_episodes = len(arr)
        self._next = int(state["next"])  # type: ignore[arg-type]
        self.n_stored_total = int(state["n_stored_total"])  # type: ignore[arg-type]
