"""Adam for the agents' networks: the fused kernel of ``torch.optim.Adam(fused=True)``, called directly.

Why not ``torch.optim.Adam`` itself: its first use imports ``torch._dynamo`` (~2 s on a 2-core CPU, a fifth of
the time a FetchReach run needs from process start to success), and on small networks its Python wrapper
costs more than the kernel (3x128 MLP, one step on a CPU: ~140 µs through ``torch.optim``, ~65 µs direct).
The kernel is the same, so the numbers are the same bit for bit (tests/test_optim.py), and ``state_dict`` has
``torch.optim.Adam``'s layout: each loads the other's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from her import validation

StepPreHook = Callable[["Adam", tuple[Any, ...], dict[str, Any]], None]


class Adam:
    """Adam (Kingma & Ba, 2015) without weight decay or amsgrad, over one device's float tensors.

    ``step()`` updates the parameters that have a ``.grad`` (the others keep their state untouched), after
    calling the hooks added with ``register_step_pre_hook`` as ``hook(optimizer, (), {})`` (the signature of
    torch's optimizer hooks; distributed training all-reduces gradients there).

    Args:
        params: the tensors to optimize (all on one device, one floating dtype).
        lr: learning rate (``initial_lr`` keeps it: a schedule sets ``lr`` to a fraction of it, and a loaded state
            sets ``lr``, not ``initial_lr``). betas: decay rates of the first and second moment averages. eps:
            denominator term.
    """

    def __init__(
        self, params: Iterable[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
    ) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("Adam got an empty parameter list")
        kinds = sorted({f"{p.dtype} on {p.device}" for p in self.params})
        if len(kinds) > 1 or not self.params[0].is_floating_point():
            raise ValueError(f"Adam's parameters must share one device and one floating dtype, got {', '.join(kinds)}")
        self.lr = self.initial_lr = validation.positive_real("lr", lr)
        self.betas = (
            validation.real_in_range("beta1", betas[0], 0.0, 1.0, high_open=True),
            validation.real_in_range("beta2", betas[1], 0.0, 1.0, high_open=True),
        )
        self.eps = validation.positive_real("eps", eps)
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        # One step counter per parameter, float32 on the parameters' device, as the fused kernel reads them.
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]
        self._pre_hooks: list[StepPreHook] = []

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        """One group, as ``torch.optim`` optimizers list theirs: ``params`` and the options."""
        return [{"params": self.params, "lr": self.lr, "betas": self.betas, "eps": self.eps}]

    def register_step_pre_hook(self, hook: StepPreHook) -> None:
        self._pre_hooks.append(hook)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for hook in self._pre_hooks:
            hook(self, (), {})
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not live:
            return
        steps = [self.steps[i] for i in live]
        torch._foreach_add_(steps, 1.0)
        torch._fused_adam_(
            [self.params[i] for i in live],
            [self.params[i].grad for i in live],
            [self.exp_avg[i] for i in live],
            [self.exp_avg_sq[i] for i in live],
            [],  # max_exp_avg_sqs: amsgrad only
            steps,
            lr=self.lr,
            beta1=self.betas[0],
            beta2=self.betas[1],
            weight_decay=0.0,
            eps=self.eps,
            amsgrad=False,
            maximize=False,
        )

    # --- persistence: torch.optim.Adam's layout -------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """``{"state": {i: {"step", "exp_avg", "exp_avg_sq"}}, "param_groups": [...]}`` for the parameters
        stepped so far (copies), as ``torch.optim.Adam.state_dict`` writes it."""
        state = {
            i: {"step": step.clone(), "exp_avg": self.exp_avg[i].clone(), "exp_avg_sq": self.exp_avg_sq[i].clone()}
            for i, step in enumerate(self.steps)
            if step.item() > 0
        }
        group = {"lr": self.lr, "betas": self.betas, "eps": self.eps, "weight_decay": 0.0, "amsgrad": False}
        return {"state": state, "param_groups": [{**group, "params": list(range(len(self.params)))}]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load what ``state_dict`` (or ``torch.optim.Adam``'s, with one param group) wrote: the moments, the
        step counts and, as torch does, the learning rate, betas and eps."""
        groups = state_dict["param_groups"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(self.params):
            sizes = [len(g["params"]) for g in groups]
            raise ValueError(f"optimizer state has param groups of sizes {sizes}, expected one of {len(self.params)}")
        group = groups[0]
        self.lr, self.betas, self.eps = (
            float(group["lr"]),
            (float(group["betas"][0]), float(group["betas"][1])),
            float(group["eps"]),
        )
        for i, key in enumerate(group["params"]):
            saved = state_dict["state"].get(key)
            if saved is None:  # never stepped
                self.steps[i].zero_()
                self.exp_avg[i].zero_()
                self.exp_avg_sq[i].zero_()
                continue
            self.steps[i].copy_(torch.as_tensor(saved["step"], dtype=torch.float32))
            self.exp_avg[i].copy_(saved["exp_avg"])
            self.exp_avg_sq[i].copy_(saved["exp_avg_sq"])
