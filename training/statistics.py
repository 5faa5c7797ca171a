"""Statistics across seeds: the interquartile mean (IQM) and the mean, with 95% bootstrap confidence intervals
(Agarwal et al. 2021, "Deep reinforcement learning at the edge of the statistical precipice").

The IQM is ``scipy.stats.trim_mean(x, 0.25)``: the mean of what is left after cutting ``floor(n / 4)`` values
from each end, so with fewer than 4 seeds it cuts nothing and equals the mean. Intervals are percentile
intervals of ``scipy.stats.bootstrap`` with a seeded generator, so that a report comes out the same each time
it is built. Agarwal et al.'s stratified bootstrap resamples the runs within each task; over the seeds of one
task, which is what each of these statistics covers, it is the plain bootstrap over seeds. Below ``MIN_SEEDS``
seeds no interval is given: from 2 values a bootstrap can only return the range between them.

Lower bounds: where a value only bounds the truth from below (a seed that has not reached a threshold counts
with the env steps it has run so far), so does every statistic over it: the IQM, the mean and each resample's
statistic never decrease when one value grows, and so neither do the percentile interval's ends.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

MIN_SEEDS = 3
"""The fewest seeds an interval is given for."""
CONFIDENCE = 0.95
RESAMPLES = 10_000
"""Bootstrap resamples of a table's statistic."""
CURVE_RESAMPLES = 2_000
"""Bootstrap resamples at each point of a curve's band (many points; the band is drawn, not read off)."""
SEED = 0


def iqm(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``[..., n] -> [...]`` (along ``axis``): the interquartile mean, ``scipy.stats.trim_mean(x, 0.25)``."""
    return np.asarray(stats.trim_mean(x, 0.25, axis=axis))


def mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``[..., n] -> [...]`` (along ``axis``): the mean."""
    return np.asarray(np.mean(x, axis=axis))


Statistic = Callable[..., np.ndarray]
STATISTICS: dict[str, Statistic] = {"IQM": iqm, "mean": mean}
"""The statistics a report gives, by the name it shows."""


@dataclass(frozen=True)
class Estimate:
    """A statistic of ``n`` values and its interval (``low``, ``high``; ``None`` below ``MIN_SEEDS`` values);
    ``lower_bound``: some values were lower bounds, and so is each number here."""

    value: float
    low: float | None
    high: float | None
    n: int
    lower_bound: bool = False

    def text(self, number: Callable[[float], str], unit: str = "") -> str:
        """``'0.94 [0.91, 0.96]'``, ``'>= 255k [240k, 300k]'``, ``'24.6 [22.3, 26.9] min'`` (``number``: one
        value as text; ``unit``: after the interval)."""
        interval = "" if self.low is None or self.high is None else f" [{number(self.low)}, {number(self.high)}]"
        return (">= " if self.lower_bound else "") + number(self.value) + interval + (f" {unit}" if unit else "")


def interval(values: np.ndarray, statistic: Statistic, resamples: int = RESAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """``[n, ...] -> low [...], high [...]``: the 95% percentile bootstrap interval of ``statistic`` over the
    first axis (the seeds), each point of the other axes on its own, from a generator seeded with ``SEED``."""
    result = stats.bootstrap(
        (values,),
        statistic,
        axis=0,
        vectorized=True,
        n_resamples=resamples,
        confidence_level=CONFIDENCE,
        method="percentile",
        rng=np.random.default_rng(SEED),
    )
    return np.asarray(result.confidence_interval.low), np.asarray(result.confidence_interval.high)


def estimate(values: Sequence[float], statistic: str, lower_bound: bool = False) -> Estimate:
    """``statistic`` (a key of ``STATISTICS``) of ``values`` (one per seed) with its 95% interval from
    ``MIN_SEEDS`` values on."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or len(x) == 0:
        raise ValueError(f"expected one value per seed, got shape {x.shape}")
    function = STATISTICS[statistic]
    value = float(function(x))
    if len(x) < MIN_SEEDS:
        return Estimate(value, None, None, len(x), lower_bound)
    low, high = interval(x, function)
    return Estimate(value, float(low), float(high), len(x), lower_bound)


def band(values: np.ndarray, statistic: str) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``[n, k] -> center [k], low [k], high [k]``: ``statistic`` over ``n`` seeds at each of ``k`` points, and
    its 95% bootstrap band (``None, None`` below ``MIN_SEEDS`` seeds)."""
    function = STATISTICS[statistic]
    center = function(values, axis=0)
    if len(values) < MIN_SEEDS:
        return center, None, None
    low, high = interval(values, function, CURVE_RESAMPLES)
    return center, low, high
