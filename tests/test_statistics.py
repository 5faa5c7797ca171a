"""training.statistics: the IQM and mean across seeds with 95% bootstrap intervals, as the report gives them."""

from __future__ import annotations

import numpy as np
import pytest

from training import statistics
from training.statistics import Estimate, estimate


def test_iqm_is_the_mean_of_the_middle_half():
    np.testing.assert_allclose(statistics.iqm(np.arange(1.0, 9.0)), 4.5)  # 3, 4, 5, 6
    np.testing.assert_allclose(statistics.iqm(np.array([0.0, 0.9, 0.92, 0.94, 10.0])), 0.92)  # cuts 1 a side
    np.testing.assert_allclose(statistics.iqm(np.array([0.0, 1.0, 5.0])), 2.0)  # fewer than 4: the mean
    np.testing.assert_allclose(statistics.iqm(np.array([[1.0, 2.0, 3.0, 100.0]] * 2), axis=-1), [2.5, 2.5])


def test_intervals_on_known_data():
    # Three seeds at 0, 0 and 1: a resample's mean is k/3 with k ~ Binomial(3, 1/3); P(k=0) = 8/27 and
    # P(k=3) = 1/27 both exceed 2.5%, so the 95% interval runs from 0 to 1.
    assert estimate([0.0, 0.0, 1.0], "mean") == Estimate(pytest.approx(1 / 3), 0.0, 1.0, 3)
    # Five seeds: IQM 0.94 (of 0.93, 0.94, 0.95); the interval holds it and lies within the seeds' range.
    result = estimate([0.89, 0.94, 0.97, 0.93, 0.95], "IQM")
    assert result.value == pytest.approx(0.94) and 0.89 <= result.low < 0.94 < result.high <= 0.97
    assert estimate([0.89, 0.94, 0.97, 0.93, 0.95], "IQM") == result  # a seeded generator: the same each time
    assert estimate([0.5, 0.5, 0.5], "IQM") == Estimate(0.5, 0.5, 0.5, 3)


def test_no_interval_below_three_seeds():
    assert estimate([0.2, 0.6], "mean") == Estimate(pytest.approx(0.4), None, None, 2)
    assert estimate([0.2, 0.6], "IQM").text(lambda v: f"{v:.2f}") == "0.40"
    with pytest.raises(ValueError, match="one value per seed"):
        estimate([], "mean")


def test_a_lower_bound_among_the_values_makes_every_number_a_lower_bound():
    """A seed that has not reached a threshold counts with its steps so far: had it run on, its value could
    only grow, and no statistic or interval end may then shrink."""
    values = np.array([235e3, 255e3, 280e3, 310e3, 300e3])  # IQM: 255k, 280k, 300k
    before = estimate(values, "IQM", lower_bound=True)
    assert before.text(lambda v: f"{v / 1e3:.0f}k") == f">= 278k [{before.low / 1e3:.0f}k, {before.high / 1e3:.0f}k]"
    for grown in (350e3, 500e3, 1e6):
        after = estimate(np.array([*values[:4], grown]), "IQM")
        assert after.value >= before.value and after.low >= before.low and after.high >= before.high
    for statistic in ("IQM", "mean"):
        lower, higher = estimate(values, statistic), estimate(values + [0, 0, 0, 0, 1e5], statistic)
        assert higher.low >= lower.low and higher.high >= lower.high


def test_bands_of_curves_are_pointwise():
    rng = np.random.default_rng(1)
    values = rng.random((5, 7))  # [seeds, points]
    center, low, high = statistics.band(values, "IQM")
    assert center.shape == low.shape == high.shape == (7,)
    np.testing.assert_allclose(center, statistics.iqm(values, axis=0))
    assert np.all(low <= center) and np.all(center <= high)
    for k in (0, 6):  # each point as on its own, up to the fewer resamples of a band
        alone = estimate(values[:, k], "IQM")
        assert abs(low[k] - alone.low) < 0.05 and abs(high[k] - alone.high) < 0.05
    assert statistics.band(values[:2], "mean")[1:] == (None, None)
