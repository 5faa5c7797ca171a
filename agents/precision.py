"""Which numeric precision an agent's updates run fastest in on the hardware at hand, and what an update costs.

``precision=auto`` is resolved here, once per run at start-up: bf16 only where the device has native bf16
matrix products (a CUDA device that supports bf16; a CPU whose oneDNN has bf16 kernels: AVX-512 BF16 or
AMX), and only when a short measured probe of the run's own update at its own batch size finds it faster
than fp32. Everywhere else fp32: emulated bf16 (an AVX2-only CPU) is many times slower.

A resumed run keeps the choice of its first start when it resumes on the same kind of machine (same device
model and instruction set), so that it trains exactly as an uninterrupted run; on another kind it chooses
again. bf16 is chosen only when it is at least ``BF16_MARGIN`` times as fast, so that two runs on one machine
rarely choose differently where the two are about as fast.

The probe times copies of the agent on a synthetic batch inside ``torch.random.fork_rng``: the agent, its
generators and torch's global generators are left as they were, so a run that chose bf16 by probe trains
exactly as one given ``precision=bf16``.
"""

from __future__ import annotations

import copy
import platform
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from her.relabel import Transitions

PRECISIONS = ("auto", "fp32", "bf16")
"""``auto`` (measured at start-up), ``fp32``, ``bf16`` (matrix products under ``torch.autocast`` in bfloat16)."""
BF16_MARGIN = 1.05
"""``auto`` chooses bf16 where its updates are at least this many times as fast as fp32's."""
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
"""The CPU flags that decide fp32 and bf16 matrix-product speed."""


class Updating(Protocol):
    """What the probe needs of an agent: its sizes, random actions, device, precision and ``update``."""

    obs_dim: int
    goal_dim: int
    gamma: float
    device: torch.device
    precision: str

    def random_actions(self, rng: np.random.Generator, n: int) -> np.ndarray: ...
    def update(self, batch: Transitions) -> dict[str, float]: ...


def cpu_model() -> tuple[str, list[str]]:
    """The CPU's model name (with family and model numbers) and which of ``ISA_FLAGS`` it has, from
    ``/proc/cpuinfo`` on Linux; elsewhere what ``platform`` knows."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or platform.machine(), []
    name = fields.get("model name", platform.machine())
    if "cpu family" in fields:
        name += f" (family {fields['cpu family']}, model {fields.get('model', '?')})"
    flags = set(fields.get("flags", "").split())
    return name, [f for f in ISA_FLAGS if f in flags]


def machine_key(device: torch.device) -> str:
    """The kind of machine a precision choice holds for: the GPU's name, or the CPU's model and the
    instruction set torch's CPU kernels use."""
    if device.type == "cuda":
        return f"cuda {torch.cuda.get_device_name(device)}"
    return f"cpu {cpu_model()[0]} {torch.backends.cpu.get_cpu_capability()}"


def bf16_native(device: torch.device) -> bool:
    """Whether ``device`` has native bf16 matrix products (on a CPU: oneDNN's bf16 kernels are usable)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def synthetic_batch(agent: Updating, batch_size: int, seed: int = 0) -> Transitions:
    """A ``batch_size`` batch of the agent's sizes: Gaussian observations and goals, uniform actions of its action
    space (``agent.random_actions``), sparse rewards in ``{-1, 0}``, one-step discounts. Drawn from its own
    generator (no run state is touched)."""
    rng = np.random.default_rng(seed)

    def normal(dim: int) -> np.ndarray:
        return rng.standard_normal((batch_size, dim), dtype=np.float32)

    return Transitions(
        obs=normal(agent.obs_dim),
        action=agent.random_actions(rng, batch_size),
        reward=-(rng.random(batch_size) < 0.9).astype(np.float32),
        next_obs=normal(agent.obs_dim),
        goal=normal(agent.goal_dim),
        discount=np.full(batch_size, agent.gamma, np.float32),
    )


def update_rates(
    agent: Updating,
    batch: Transitions,
    precisions: tuple[str, ...],
    budget_s: float = 0.6,
    warmup: int = 2,
    rounds: tuple[int, int] = (3, 20),
) -> dict[str, float]:
    """Updates/s of copies of ``agent`` set to each of ``precisions`` on ``batch``: ``warmup`` untimed updates
    each (oneDNN picks its kernels on the first calls), then alternating rounds of one update each, at least
    ``rounds[0]``, and more until ``budget_s`` has passed, ``rounds[1]`` are done, or the rates differ by more
    than ``CLEAR``; each rate is one over the median seconds of an update."""
    sync = torch.cuda.synchronize if agent.device.type == "cuda" else (lambda: None)
    devices = [agent.device] if agent.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        copies = {}
        for precision in precisions:
            copies[precision] = copy.deepcopy(agent)
            copies[precision].precision = precision
            for _ in range(warmup):
                copies[precision].update(batch)
        seconds: dict[str, list[float]] = {p: [] for p in precisions}
        start = time.perf_counter()
        low, high = rounds
        while (n := len(seconds[precisions[0]])) < low or (
            n < high and time.perf_counter() - start < budget_s and not _clear(seconds)
        ):
            for precision, agent_copy in copies.items():
                sync()
                t0 = time.perf_counter()
                agent_copy.update(batch)
                sync()
                seconds[precision].append(time.perf_counter() - t0)
    return {p: 1.0 / float(np.median(s)) for p, s in seconds.items()}


CLEAR = 1.5
"""A ratio of median update times beyond which more rounds of the probe would not change its answer."""


def _clear(seconds: dict[str, list[float]]) -> bool:
    medians = [float(np.median(s)) for s in seconds.values()]
    return len(medians) > 1 and max(medians) > CLEAR * min(medians)


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a run trains in, how it was chosen, and the measured update rates (updates/s at the
    run's batch size; ``None``: not measured)."""

    requested: str
    chosen: str
    native_bf16: bool
    batch_size: int
    machine: str
    fp32_updates_per_s: float | None = None
    bf16_updates_per_s: float | None = None
    probe_s: float = 0.0
    kept: bool = False  # the choice of the run's first start, kept on resuming on the same kind of machine

    def record(self) -> dict[str, Any]:
        """The choice as plain values (the saved config's ``precision_probe`` and TensorBoard's HParams)."""
        return {
            "requested": self.requested,
            "chosen": self.chosen,
            "native_bf16": self.native_bf16,
            "batch_size": self.batch_size,
            "machine": self.machine,
            "fp32_updates_per_s": _rounded(self.fp32_updates_per_s),
            "bf16_updates_per_s": _rounded(self.bf16_updates_per_s),
            "probe_s": round(self.probe_s, 3),
        }

    def describe(self) -> str:
        """One line for the start of a run's log."""
        rates = ", ".join(
            f"{p} {r:.1f}/s"
            for p, r in (("fp32", self.fp32_updates_per_s), ("bf16", self.bf16_updates_per_s))
            if r is not None
        )
        measured = f"; updates at batch {self.batch_size}: {rates} (probe {self.probe_s:.2f} s)" if rates else ""
        if self.kept:
            at_start = f": {rates} at batch {self.batch_size}" if rates else ""
            measured = f"; kept from the run's start on this machine{at_start}"
        native = "native bf16" if self.native_bf16 else "no native bf16"
        return f"precision: {self.chosen} ({self.requested}; {native}{measured})"

    def warning(self) -> str | None:
        """A warning when bf16 was asked for where it is measured slower than fp32."""
        if self.chosen != "bf16" or self.fp32_updates_per_s is None or self.bf16_updates_per_s is None:
            return None
        slowdown = self.fp32_updates_per_s / self.bf16_updates_per_s
        if slowdown <= 1.0:
            return None
        native = "" if self.native_bf16 else "this device has no native bf16: "
        return (
            f"agent.precision=bf16: {native}bf16 updates are {slowdown:.1f}x slower than fp32 here "
            f"({self.bf16_updates_per_s:.1f}/s against {self.fp32_updates_per_s:.1f}/s at batch {self.batch_size}); "
            "agent.precision=auto chooses the faster"
        )


def choose_precision(
    requested: str,
    agent: Updating,
    batch_size: int,
    budget_s: float = 0.6,
    previous: Mapping[str, Any] | None = None,
) -> PrecisionChoice:
    """Resolve ``requested`` (``auto``, ``fp32`` or ``bf16``) for ``agent`` at ``batch_size``.

    ``auto``: ``previous`` (the ``record()`` of a resumed run's choice) where it was ``auto``'s on this kind of
    machine; else fp32 without a probe where bf16 is not native; else bf16 if a probe of about ``budget_s``
    finds it at least ``BF16_MARGIN`` times as fast. ``bf16`` where it is not native: kept, with both rates
    measured for a warning. ``fp32``, and ``bf16`` where native: kept, no probe."""
    native, machine = bf16_native(agent.device), machine_key(agent.device)
    if (
        requested == "auto"
        and previous is not None
        and previous.get("requested") == "auto"
        and previous.get("machine") == machine
        and previous.get("chosen") in ("fp32", "bf16")
    ):
        rates = previous.get("fp32_updates_per_s"), previous.get("bf16_updates_per_s")
        return PrecisionChoice(requested, str(previous["chosen"]), native, batch_size, machine, *rates, kept=True)
    measure: tuple[str, ...] = ()
    if requested == "auto" and native or requested == "bf16" and not native:
        measure = ("fp32", "bf16")
    start = time.perf_counter()
    rates = update_rates(agent, synthetic_batch(agent, batch_size), measure, budget_s) if measure else {}
    probe_s = time.perf_counter() - start
    chosen = requested
    if requested == "auto":
        chosen = "bf16" if rates and rates["bf16"] >= BF16_MARGIN * rates["fp32"] else "fp32"
    return PrecisionChoice(
        requested, chosen, native, batch_size, machine, rates.get("fp32"), rates.get("bf16"), probe_s
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def update_flops(agent: Updating, batch_size: int, updates: int = 2) -> float:
    """Floating-point operations of one update at ``batch_size``: the mean over ``updates`` updates (2 covers
    TD3's actor updates every other step) of a copy of ``agent`` in fp32, matrix products counted by torch's
    ``FlopCounterMode`` (elementwise work, a few percent, is left out)."""
    with torch.random.fork_rng(devices=[agent.device] if agent.device.type == "cuda" else []):
        agent_copy = copy.deepcopy(agent)
        agent_copy.precision = "fp32"
        batch = synthetic_batch(agent_copy, batch_size)
        with FlopCounterMode(display=False) as counter:
            for _ in range(updates):
                agent_copy.update(batch)
    return counter.get_total_flops() / updates
