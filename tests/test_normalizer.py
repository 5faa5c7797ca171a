from __future__ import annotations

import numpy as np
import pytest
import torch

from agents import RunningNormalizer


def test_mean_and_std_match_numpy_over_several_updates():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (1000, 4))
    norm = RunningNormalizer(4, eps=0.01, clip=100.0)
    for chunk in np.array_split(x, 7):
        norm.update(chunk)
    np.testing.assert_allclose(norm.mean.numpy(), x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(norm.std.numpy(), x.std(0), rtol=1e-4)
    out = norm(torch.as_tensor(x, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(out, (x - x.mean(0)) / x.std(0), atol=1e-4)


def test_std_floor_and_clip():
    norm = RunningNormalizer(2, eps=0.01, clip=5.0)
    norm.update(np.ones((10, 2)))  # zero variance: std is the eps floor
    np.testing.assert_allclose(norm.std.numpy(), [0.01, 0.01])
    out = norm(torch.tensor([[1.0, 1.001], [2.0, 0.0]]))
    np.testing.assert_allclose(out.numpy(), [[0.0, 0.1], [5.0, -5.0]], atol=1e-4)


def test_state_dict_round_trip_and_dim_check():
    a = RunningNormalizer(3)
    a.update(np.random.default_rng(0).random((50, 3)))
    b = RunningNormalizer(3)
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(a.mean, b.mean)
    torch.testing.assert_close(a.std, b.std)
    with pytest.raises(ValueError, match="dim"):
        RunningNormalizer(4).load_state_dict(a.state_dict())
