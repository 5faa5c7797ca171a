"""agents.optim.Adam computes what torch.optim.Adam does, loads its state both ways, and names bad options."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from agents.optim import Adam
from her import OptionError


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 2))


def train(model: nn.Module, opt: Adam | torch.optim.Optimizer, steps: int, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(8, 5, generator=g)
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()


@pytest.mark.parametrize("fused", [True, False])
def test_steps_match_torch_adam(fused: bool):
    ours, theirs = net(), net()
    train(ours, Adam(ours.parameters(), 3e-3, betas=(0.8, 0.99), eps=1e-6), 30)
    train(theirs, torch.optim.Adam(theirs.parameters(), 3e-3, betas=(0.8, 0.99), eps=1e-6, fused=fused), 30)
    moved = max((p - q).abs().max().item() for p, q in zip(ours.parameters(), net().parameters()))
    assert moved > 1e-3  # the parameters did change
    for p, q in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)


def test_state_dict_round_trips_with_torch_adam():
    """Ours -> torch.optim.Adam -> ours: training continues as if never interrupted."""
    model = net()
    opt = Adam(model.parameters(), 1e-2)
    train(model, opt, 10, seed=1)
    theirs = torch.optim.Adam(model.parameters(), 1e-2, fused=True)
    theirs.load_state_dict(opt.state_dict())
    train(model, theirs, 5, seed=2)
    back = Adam(model.parameters(), 1e-2)
    back.load_state_dict(theirs.state_dict())
    train(model, back, 5, seed=3)

    reference = net()
    ref_opt = Adam(reference.parameters(), 1e-2)
    for steps, seed in ((10, 1), (5, 2), (5, 3)):
        train(reference, ref_opt, steps, seed)
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)
    assert all(s.item() == 20 for s in back.steps)


def test_parameters_without_grad_keep_their_state():
    a, b = torch.zeros(3, requires_grad=True), torch.zeros(2, requires_grad=True)
    opt = Adam([a, b], 0.1)
    a.sum().backward()
    opt.step()
    assert a.detach().abs().sum() > 0 and torch.equal(b.detach(), torch.zeros(2))
    assert [s.item() for s in opt.steps] == [1.0, 0.0]
    assert list(opt.state_dict()["state"]) == [0]  # as torch.optim: no state for a parameter never stepped


def test_pre_hooks_run_before_the_step():
    w = torch.ones(2, requires_grad=True)
    opt = Adam([w], 0.1)
    seen = []
    opt.register_step_pre_hook(lambda o, args, kwargs: seen.append(w.grad.clone()))
    w.sum().backward()
    opt.step()
    assert len(seen) == 1 and torch.equal(seen[0], torch.ones(2))


def test_bad_options_and_mismatched_state_are_named():
    w = torch.zeros(2, requires_grad=True)
    with pytest.raises(OptionError, match="lr"):
        Adam([w], -1.0)
    with pytest.raises(OptionError, match="beta2"):
        Adam([w], 1e-3, betas=(0.9, 1.5))
    with pytest.raises(ValueError, match="empty"):
        Adam([], 1e-3)
    with pytest.raises(ValueError, match="torch.float32 on cpu, torch.float64 on cpu"):
        Adam([w, torch.zeros(2, dtype=torch.float64, requires_grad=True)], 1e-3)
    with pytest.raises(ValueError, match="torch.int64"):
        Adam([torch.zeros(2, dtype=torch.int64)], 1e-3)
    with pytest.raises(ValueError, match="expected one of 1"):
        Adam([w], 1e-3).load_state_dict(Adam([w, torch.zeros(1)], 1e-3).state_dict())
