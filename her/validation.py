"""Argument checks shared by every constructor: each failure names the option, the value and what is allowed."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


class OptionError(ValueError):
    """A bad option value. ``name`` is the argument name, which matches the config key; ``problem`` says
    what is wrong (by default ``expected <allowed>``)."""

    def __init__(self, name: str, value: Any, allowed: str, problem: str | None = None) -> None:
        self.name = name
        self.value = value
        self.allowed = allowed
        self.problem = problem or f"expected {allowed}"
        super().__init__(f"{name}={value!r} is invalid: {self.problem}")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def optional(check: Callable[..., T], name: str, value: Any, *args: Any) -> T | None:
    """``None`` for ``None`` (null in a config), else ``check(name, value, *args)``; its error then also says that
    null is allowed."""
    if value is None:
        return None
    try:
        return check(name, value, *args)
    except OptionError as error:
        raise OptionError(name, value, f"{error.allowed} or null") from None


def positive_int(name: str, value: Any) -> int:
    if not _is_int(value) or value <= 0:
        raise OptionError(name, value, "an integer > 0")
    return int(value)


def non_negative_int(name: str, value: Any) -> int:
    if not _is_int(value) or value < 0:
        raise OptionError(name, value, "an integer >= 0")
    return int(value)


def real_in_range(
    name: str, value: Any, low: float, high: float, *, low_open: bool = False, high_open: bool = False
) -> float:
    """Check ``low <(=) value <(=) high``; ``math.inf`` bounds are allowed."""
    ok = _is_real(value) and math.isfinite(float(value))
    if ok:
        v = float(value)
        ok = (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not ok:
        lb = "(" if low_open else "["
        hb = ")" if high_open else "]"
        raise OptionError(name, value, f"a number in {lb}{low}, {high}{hb}")
    return float(value)


def finite_real(name: str, value: Any) -> float:
    """A real number, not NaN or inf (bools and strings are refused)."""
    if not _is_real(value) or not math.isfinite(float(value)):
        raise OptionError(name, value, "a finite number")
    return float(value)


def positive_real(name: str, value: Any) -> float:
    return real_in_range(name, value, 0.0, math.inf, low_open=True, high_open=True)


def choice(name: str, value: Any, allowed: Iterable[str]) -> str:
    allowed = list(allowed)
    if value not in allowed:
        raise OptionError(name, value, "one of " + ", ".join(allowed))
    return str(value)


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise OptionError(name, value, "true or false")
    return bool(value)


def boolean_or_auto(name: str, value: Any) -> bool | str:
    """A bool, or the string ``"auto"`` (the caller decides)."""
    if isinstance(value, str) and value == "auto":
        return value
    if not isinstance(value, (bool, np.bool_)):
        raise OptionError(name, value, 'true, false or "auto"')
    return bool(value)


def flag(name: str, value: Any) -> bool:
    """A bool, or the number 0 or 1 (a done flag stored as a float)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if _is_real(value) and float(value) in (0.0, 1.0):
        return bool(value)
    raise OptionError(name, value, "true or false (or 0 or 1)")


def int_sequence(name: str, value: Any) -> tuple[int, ...]:
    """A non-empty sequence of positive integers, e.g. hidden layer sizes."""
    try:
        items = tuple(value)
    except TypeError:
        items = ()
    if not items or not all(_is_int(v) and v > 0 for v in items):
        raise OptionError(name, value, "a non-empty list of integers > 0")
    return tuple(int(v) for v in items)


def finite_array(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Convert to float32 and check shape and finiteness (no NaN or inf); strings and objects are refused."""
    try:
        raw = np.asarray(value)
        if raw.dtype.kind not in "biuf":
            raise TypeError(f"got {raw.dtype} values")
        arr = raw.astype(np.float32)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be numeric with shape {shape}: {err}") from None
    if arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape}, expected {shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf values")
    return arr


# Where Linux tells the memory a process may still take: the machine's, then a container's limit (cgroup v2, v1).
MEMINFO = Path("/proc/meminfo")
CGROUP_LIMITS = (
    (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory.current")),
    (Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"), Path("/sys/fs/cgroup/memory/memory.usage_in_bytes")),
)


def available_memory() -> int | None:
    """Bytes of memory this process can still allocate: ``MemAvailable`` of ``/proc/meminfo``, or less where a
    container's memory limit (cgroup) leaves less; ``None`` where the system tells neither (not Linux)."""
    candidates = []
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                candidates.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file in CGROUP_LIMITS:
        try:
            limit, usage = limit_file.read_text().strip(), int(usage_file.read_text())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:  # "max" (v2) or a huge number (v1): no limit
            candidates.append(max(int(limit) - usage, 0))
    return min(candidates) if candidates else None


def format_bytes(n: int) -> str:
    """``n`` bytes in binary units, e.g. ``38.0 GiB``."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def fits_in_memory(name: str, value: Any, nbytes: int, what: str = "its arrays") -> None:
    """Raise ``OptionError`` for ``name=value`` when the ``nbytes`` it would allocate (``what``) exceed the
    memory available (``available_memory``): checked before allocating, instead of a ``MemoryError`` later."""
    available = available_memory()
    if available is not None and nbytes > available:
        raise OptionError(
            name,
            value,
            "a size that fits in memory",
            f"{what} need {format_bytes(nbytes)} ({nbytes} bytes), more than the {format_bytes(available)} "
            f"({available} bytes) of memory available",
        )


def keyword_options(fn: Callable[..., Any]) -> set[str] | None:
    """Names ``fn`` takes as keywords; for a class, those of its constructor, following ``**kwargs`` up to the
    base classes that receive them. ``None`` when any keyword is taken."""
    inits = [c.__dict__["__init__"] for c in fn.__mro__ if "__init__" in c.__dict__] if isinstance(fn, type) else [fn]
    names: set[str] = set()
    for init in inits:
        params = list(inspect.signature(init).parameters.values())[1 if isinstance(fn, type) else 0 :]  # no self
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return names
    return None
