"""Data-parallel training on ``torch.distributed``: one process per rank, started by ``torchrun``.

Every rank has its own envs (seeded per rank), its own replay buffer and a replica of the agent. The replicas
stay identical because they start from rank 0's parameters and every optimizer step applies the same
all-reduced gradient; normalizer statistics are summed over ranks, so every rank normalizes with the
statistics of all ranks' data. This is the scheme of the HER baselines (MPI workers), on torch.distributed:
gloo on CPU, nccl on GPU.

Why not ``DistributedDataParallel``: DDPG's actor loss runs through the critic, so a DDP-wrapped critic would
all-reduce critic gradients that the actor step never applies, and DDP reduces per module on backward; an
optimizer step hook reduces exactly the gradients an optimizer is about to apply, for any agent.

Without torchrun (no ``RANK``/``WORLD_SIZE`` in the environment) ``init_distributed`` returns a one-process
``Distributed`` whose operations do nothing, so a plain run behaves as before.
"""

from __future__ import annotations

import datetime
import math
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from agents.normalizer import RunningNormalizer
from agents.optim import Adam
from her import validation
from her.checkpoint_file import brief


class GradReduce(str, Enum):
    """How gradients combine over ranks: ``mean`` (a batch ``world_size`` times larger) or ``sum`` (baselines'
    choice, which under Adam mostly acts as the same larger batch, since Adam is invariant to gradient scale)."""

    MEAN = "mean"
    SUM = "sum"


# How each per-epoch metric combines over ranks (see ``Distributed.reduce_record``); other numbers are averaged.
SUMMED_METRICS = frozenset({"env_steps", "env_steps_per_s", "buffer_transitions"})
RANK_ZERO_METRICS = frozenset({"epoch", "updates", "wall_s", "collect_s", "update_s", "eval_s", "updates_per_s"})


class RanksOutOfSync(RuntimeError):
    """Replicas that should be identical differ between ranks."""


class CollectiveFailed(RuntimeError):
    """A collective operation failed: another rank died (its connections closed) or did not answer within
    ``distributed.timeout_s``. Every surviving rank raises it instead of waiting forever."""


def rank_seed(seed: int, rank: int) -> int:
    """The seed of ``rank``'s envs, exploration and sampling: ``seed`` itself on rank 0 (so a one-rank run is the
    plain run), otherwise a value drawn from ``SeedSequence((seed, rank))``, independent of other seeds and ranks."""
    if rank == 0:
        return seed
    return int(np.random.SeedSequence((seed, rank)).generate_state(1)[0])


@dataclass(frozen=True)
class AgentParts:
    """The state of an agent that must agree across ranks: the parts its ``stateful()`` lists, by kind."""

    modules: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer | Adam]
    normalizers: dict[str, RunningNormalizer]


class Stateful(Protocol):
    def stateful(self) -> dict[str, Any]: ...


def agent_parts(agent: Stateful) -> AgentParts:
    """Networks (SAC's temperature among them), optimizers and normalizers of ``agent.stateful()``, in name
    order (the same on every rank)."""
    parts = sorted(agent.stateful().items())
    known = (nn.Module, torch.optim.Optimizer, Adam, RunningNormalizer)
    if unknown := [f"{n} ({type(v).__name__})" for n, v in parts if not isinstance(v, known)]:
        raise TypeError(f"cannot keep these parts of {type(agent).__name__} in sync across ranks: {', '.join(unknown)}")
    return AgentParts(
        modules={n: v for n, v in parts if isinstance(v, nn.Module)},
        optimizers={n: v for n, v in parts if isinstance(v, (torch.optim.Optimizer, Adam))},
        normalizers={n: v for n, v in parts if isinstance(v, RunningNormalizer)},
    )


@dataclass
class Distributed:
    """This process's place in a data-parallel job, and the collective operations training needs.

    Args:
        rank, world_size: global rank of this process and number of processes.
        local_rank, local_world_size: the same on this node (``local_rank`` picks the GPU).
        device: the device this rank computes on; communication tensors live there.
        grad_reduce: how gradients combine over ranks.
        check_every: epochs between checks that all ranks hold identical parameters (0: never).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    grad_reduce: GradReduce = GradReduce.MEAN
    check_every: int = 1
    _parts: AgentParts | None = field(default=None, repr=False)
    _owns_group: bool = field(default=False, repr=False)

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes metrics, TensorBoard, checkpoints and the policy."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    # --- setup ----------------------------------------------------------------------------------
    def attach(self, agent: Stateful) -> None:
        """Make ``agent`` a replica: copy rank 0's networks and normalizers to every rank, all-reduce gradients
        before each of its optimizers' steps, and sum its normalizer updates over ranks."""
        self._parts = agent_parts(agent)
        if not self.active:
            return
        self._broadcast_state(self._parts)
        for optimizer in self._parts.optimizers.values():
            optimizer.register_step_pre_hook(self._before_optimizer_step)
        for normalizer in self._parts.normalizers.values():
            normalizer.reduce = self.all_reduce_sum

    @contextmanager
    def _collective(self, what: str) -> Iterator[None]:
        """Turn the error of a failed collective (gloo: "Connection closed by peer", a timeout) into
        ``CollectiveFailed`` naming this rank, the operation and how long it waited."""
        start = time.monotonic()
        try:
            yield
        except RuntimeError as err:
            if isinstance(err, (RanksOutOfSync, CollectiveFailed)):
                raise
            raise CollectiveFailed(
                f"rank {self.rank} of {self.world_size}: {what} failed after {time.monotonic() - start:.1f} s: "
                f"another rank has died or stopped answering ({brief(err, 300)})"
            ) from None

    @torch.no_grad()
    def _broadcast_state(self, parts: AgentParts) -> None:
        with self._collective("the broadcast of rank 0's agent"):
            self._broadcast_parts(parts)

    def _broadcast_parts(self, parts: AgentParts) -> None:
        for module in parts.modules.values():
            for tensor in [*module.parameters(), *module.buffers()]:
                self._broadcast_(tensor)
        for normalizer in parts.normalizers.values():
            state = normalizer.state_dict()
            stats = torch.as_tensor(
                np.concatenate([state["sum"], state["sumsq"], [state["count"]]]), device=self.device
            )
            dist.broadcast(stats, src=0)
            sums = stats.cpu().numpy()
            dim = normalizer.dim
            normalizer.load_state_dict({"sum": sums[:dim], "sumsq": sums[dim : 2 * dim], "count": int(sums[-1])})

    def _broadcast_(self, tensor: torch.Tensor) -> None:
        """In-place broadcast from rank 0 (through a copy on ``self.device`` if ``tensor`` lives elsewhere)."""
        buf = tensor.data.to(self.device)
        dist.broadcast(buf, src=0)
        tensor.data.copy_(buf)

    # --- collectives used during training -------------------------------------------------------
    def _before_optimizer_step(self, optimizer: torch.optim.Optimizer | Adam, args: Any, kwargs: Any) -> None:
        self.all_reduce_grads(p for group in optimizer.param_groups for p in group["params"])

    @torch.no_grad()
    def all_reduce_grads(self, params: Iterable[torch.Tensor]) -> None:
        """Replace each parameter's ``.grad`` by its mean (or sum, per ``grad_reduce``) over ranks, in one
        all-reduce of the flattened gradients. Parameters without a gradient are skipped (on every rank alike)."""
        grads = [p.grad for p in params if p.grad is not None]
        if not self.active or not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        with self._collective("the all-reduce of gradients"):
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        if self.grad_reduce is GradReduce.MEAN:
            flat /= self.world_size
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def all_reduce_sum(self, values: np.ndarray) -> np.ndarray:
        """``[n]`` float64 array -> its elementwise sum over ranks (identical on every rank)."""
        if not self.active:
            return values
        t = torch.as_tensor(np.asarray(values, dtype=np.float64), device=self.device).clone()
        with self._collective("an all-reduce of statistics"):
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.cpu().numpy()

    def any_rank(self, *flags: bool) -> tuple[bool, ...]:
        """Each flag or-ed over ranks, in one all-reduce: every rank gets the same answer, so that a stop
        requested on one rank (a signal) or a divergence seen on one rank stops all of them at the same cycle."""
        if not self.active:
            return tuple(bool(f) for f in flags)
        t = torch.tensor([float(f) for f in flags], device=self.device)
        with self._collective("the agreement on stopping"):
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return tuple(bool(v) for v in t.cpu().tolist())

    def reduce_record(self, record: dict[str, Any]) -> dict[str, Any]:
        """Combine one epoch's metrics over ranks and add ``world_size``.

        Counts and throughputs add up (``env_steps`` is the env steps of all ranks together); clocks, the epoch
        and the number of (synchronized) updates are rank 0's; every other number (success rates, returns,
        losses, Q values) is the mean over ranks, which with equal episode counts per rank is the mean over all
        episodes. Non-numbers are rank 0's.
        """
        out = {**record, "world_size": self.world_size}
        if not self.active:
            return out
        keys = [k for k, v in record.items() if k not in RANK_ZERO_METRICS and _is_number_or_none(v)]
        values = np.array([math.nan if record[k] is None else float(record[k]) for k in keys], dtype=np.float64)
        totals = self.all_reduce_sum(values)
        for key, total in zip(keys, totals):
            value = total if key in SUMMED_METRICS else total / self.world_size
            if math.isnan(value):
                out[key] = None
            elif isinstance(record[key], int):
                out[key] = int(round(value))
            else:
                out[key] = float(value)
        return out

    # --- consistency check ----------------------------------------------------------------------
    def periodic_check(self, epoch: int) -> None:
        """``check_in_sync`` after every ``check_every``-th epoch (``epoch`` counts from 0)."""
        if self.active and self.check_every > 0 and (epoch + 1) % self.check_every == 0:
            self.check_in_sync()

    @torch.no_grad()
    def check_in_sync(self) -> None:
        """Raise ``RanksOutOfSync`` on every rank unless all ranks hold bit-identical networks (SAC's temperature too)
        and normalizer statistics. One all-reduce of the max and one of the min of all values; a value differs
        somewhere exactly when its max and min differ."""
        if not self.active:
            return
        if self._parts is None:
            raise RuntimeError("check_in_sync needs attach(agent) first")
        named = self._synced_tensors(self._parts)
        flat = torch.cat([t.reshape(-1) for t in named.values()])
        high, low = flat.clone(), flat.clone()
        with self._collective("the check that ranks are in sync"):
            dist.all_reduce(high, op=dist.ReduceOp.MAX)
            dist.all_reduce(low, op=dist.ReduceOp.MIN)
        differs = (high != low) & ~(torch.isnan(high) & torch.isnan(low))
        if not bool(differs.any()):
            return
        bad, offset = [], 0
        for name, t in named.items():
            part = slice(offset, offset + t.numel())
            if bool(differs[part].any()):
                bad.append(f"{name} (max difference {float((high[part] - low[part]).abs().max()):.3g})")
            offset += t.numel()
        raise RanksOutOfSync(
            f"rank {self.rank}: {len(bad)} tensors differ across {self.world_size} ranks: " + ", ".join(bad[:8])
        )

    def _synced_tensors(self, parts: AgentParts) -> dict[str, torch.Tensor]:
        named: dict[str, torch.Tensor] = {}
        for m_name, module in parts.modules.items():
            for name, t in module.state_dict().items():
                named[f"{m_name}.{name}"] = t.detach().to(self.device, torch.float64)
        for n_name, norm in parts.normalizers.items():
            state = norm.state_dict()
            for key in ("sum", "sumsq", "count"):
                named[f"{n_name}.{key}"] = torch.as_tensor(np.atleast_1d(state[key]), dtype=torch.float64).to(
                    self.device
                )
        return named

    def close(self) -> None:
        """Leave the process group if ``init_distributed`` created it."""
        if self._owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self._owns_group = False


def _is_number_or_none(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool))


def _env_int(name: str, default: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None:
        if default is None:
            raise RuntimeError(f"torch.distributed launch: {name} is not set (start the job with torchrun)")
        return default
    try:
        return int(raw)
    except ValueError:
        raise RuntimeError(f"torch.distributed launch: {name}={raw!r} is not an integer") from None


def launched_by_torchrun() -> bool:
    """True when the environment describes a torch.distributed job (torchrun sets ``RANK`` and ``WORLD_SIZE``)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(
    device: torch.device,
    *,
    grad_reduce: str = "mean",
    check_every: int = 1,
    timeout_s: float = 1800.0,
) -> Distributed:
    """Join the torch.distributed job described by torchrun's environment (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``), or return a one-process
    ``Distributed`` when there is none.

    The backend follows ``device``: nccl for CUDA (each rank on GPU ``LOCAL_RANK``), gloo for CPU.

    Args:
        device: the device the run was configured for (``cpu`` or ``cuda``).
        grad_reduce: ``mean`` or ``sum`` of gradients over ranks.
        check_every: epochs between parameter-equality checks over ranks (0: never).
        timeout_s: how long a collective waits for the other ranks before failing.
    """
    grad_reduce = GradReduce(validation.choice("grad_reduce", grad_reduce, [r.value for r in GradReduce]))
    check_every = validation.non_negative_int("check_every", check_every)
    timeout_s = validation.positive_real("timeout_s", timeout_s)
    if not launched_by_torchrun():
        return Distributed(device=device, grad_reduce=grad_reduce, check_every=check_every)
    rank, world_size = _env_int("RANK"), _env_int("WORLD_SIZE")
    local_rank = _env_int("LOCAL_RANK", 0)
    local_world_size = _env_int("LOCAL_WORLD_SIZE", 1)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo",
            rank=rank,
            world_size=world_size,
            timeout=datetime.timedelta(seconds=timeout_s),
        )
    return Distributed(
        rank=rank,
        world_size=world_size,
        local_rank=local_rank,
        local_world_size=local_world_size,
        device=device,
        grad_reduce=grad_reduce,
        check_every=check_every,
        _owns_group=owns_group,
    )
