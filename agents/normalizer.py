"""Running mean/std normalizer with its own state_dict, saved with the policy."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from agents.acting import HostNormalizer
from her import validation


class RunningNormalizer:
    """``clip((x - mean) / std, -clip, clip)`` with ``std = sqrt(max(eps^2, E[x^2] - mean^2))``.

    Statistics are float64 sums on the host; ``mean``/``std`` are float32 tensors on ``device``,
    recomputed after each ``update``.

    ``reduce``, when set, maps the ``[2 * dim + 1]`` increments of an update (sum, sum of squares, count) to the
    increments actually added; distributed training sets it to a sum over ranks, so that every rank holds the
    statistics of all ranks' data (``training.distributed``).

    Args:
        dim: size of the last axis of the inputs. eps: lower bound of the std. clip: output range.
    """

    def __init__(self, dim: int, eps: float = 0.01, clip: float = 5.0, device: str | torch.device = "cpu") -> None:
        self.dim = validation.positive_int("dim", dim)
        self.eps = validation.positive_real("norm_eps", eps)
        self.clip = validation.positive_real("norm_clip", clip)
        self.device = torch.device(device)
        self.sum = np.zeros(dim, dtype=np.float64)
        self.sumsq = np.zeros(dim, dtype=np.float64)
        self.count = 0
        self.reduce: Callable[[np.ndarray], np.ndarray] | None = None
        self._refresh()

    def update(self, x: np.ndarray) -> None:
        """Add ``[..., dim]`` samples to the statistics."""
        x = np.asarray(x, dtype=np.float64).reshape(-1, self.dim)
        increments = np.concatenate([x.sum(axis=0), np.square(x).sum(axis=0), [len(x)]])
        if self.reduce is not None:
            increments = self.reduce(increments)
        d = self.dim
        self.sum += increments[:d]
        self.sumsq += increments[d : 2 * d]
        self.count += int(round(increments[-1]))
        self._refresh()

    def _refresh(self) -> None:
        if self.count == 0:  # no data yet: identity
            mean, std = np.zeros(self.dim), np.ones(self.dim)
        else:
            mean = self.sum / self.count
            std = np.sqrt(np.maximum(self.eps**2, self.sumsq / self.count - np.square(mean)))
        self._host = HostNormalizer(mean.astype(np.float32), std.astype(np.float32), self.clip)
        self.mean = torch.as_tensor(self._host.mean, device=self.device)
        self.std = torch.as_tensor(self._host.std, device=self.device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize a ``[..., dim]`` tensor."""
        return torch.clamp((x - self.mean) / self.std, -self.clip, self.clip)

    def host(self) -> HostNormalizer:
        """The same normalization on NumPy arrays (for acting; see ``agents.acting``)."""
        return self._host

    def state_dict(self) -> dict[str, object]:
        return {"sum": self.sum.copy(), "sumsq": self.sumsq.copy(), "count": self.count}

    def load_state_dict(self, state: dict[str, object]) -> None:
        s = np.asarray(state["sum"], dtype=np.float64)
        if s.shape != (self.dim,):
            raise ValueError(f"normalizer state has dim {s.shape}, expected ({self.dim},)")
        self.sum = s.copy()
        self.sumsq = np.asarray(state["sumsq"], dtype=np.float64).copy()
        self.count = int(state["count"])  # type: ignore[arg-type]
        self._refresh()
