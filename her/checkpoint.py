"""Checkpoints that a kill at any moment leaves readable, and that resume a run exactly.

A checkpoint file is ``torch.save({"format", "version", "sha256", "payload"})``: ``payload`` holds the
``torch.save`` bytes of the content (as a uint8 tensor: pickled ``bytes`` would grow by half) and
``sha256`` their digest, so a truncated or damaged file is reported, never half-loaded. Both layers load
with ``weights_only=True`` (no pickled code runs). Files are written to a temporary name, synced, then
renamed over the old one (``os.replace``): the previous checkpoint stays whole until the new one is.

The content: ``kind`` (``training``: resumable; ``policy``: agent only), ``env`` (id and sizes),
``agent_class`` and ``agent_kwargs`` (what rebuilds the agent), ``agent`` (its ``state_dict``), ``config``
(the resolved run config), ``counters`` (epoch, env steps, updates), ``record`` (the last epoch's
metrics) and, for ``training``, ``training``: the runner state (generators of runner and envs, the epoch
in progress), torch's generator states, the best eval success so far and, when saved, the replay buffer
(its arrays ``np.savez_compressed``).
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import torch

from her import validation

if TYPE_CHECKING:
    from envs import EnvInfo
    from her.runner import Runner

FORMAT = "her-fetch-checkpoint"
VERSION = 1
CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"
BEST = "best.pt"
KINDS = ("training", "policy")
CONTENT_KEYS = ("kind", "env", "agent_class", "agent_kwargs", "agent", "config", "counters", "record", "training")


class CheckpointError(Exception):
    """A checkpoint that is missing, unreadable, or does not fit the run; the message names the file."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        super().__init__(f"checkpoint {path}: {problem}")


@dataclass(frozen=True)
class RunInfo:
    """What a checkpoint records about its run besides the states.

    Args:
        env: ``id``, ``obs_dim``, ``goal_dim``, ``action_dim``, ``action_max``, ``horizon``.
        agent_class: import path of the agent class, e.g. ``agents.DDPG``.
        agent_kwargs: its constructor keywords besides the sizes and the device (``hidden``, ``lr_actor``, ...).
        config: the resolved run config, as plain containers.
    """

    env: dict[str, Any]
    agent_class: str
    agent_kwargs: dict[str, Any]
    config: dict[str, Any]


def env_record(env_id: str, info: EnvInfo) -> dict[str, Any]:
    """The env part of a checkpoint: its id and the sizes the networks were built for."""
    return {
        "id": env_id,
        "obs_dim": info.obs_dim,
        "goal_dim": info.goal_dim,
        "action_dim": info.action_dim,
        "action_max": info.action_max,
        "horizon": info.horizon,
    }


# --- files ----------------------------------------------------------------------------------------
def _sync(f: BinaryIO) -> None:
    """Push ``f``'s buffered bytes to the disk."""
    f.flush()
    os.fsync(f.fileno())


def write_atomic(path: str | Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` so that at every moment it holds either the old or the new bytes."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as f:
            f.write(data)
            _sync(f)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def remove_stale_temp_files(directory: str | Path) -> None:
    """Delete the temporary files of writes that a kill interrupted."""
    for tmp in Path(directory).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def bytes_tensor(data: bytes) -> torch.Tensor:
    """``[len(data)]`` uint8 tensor of ``data``: stored as is by ``torch.save``."""
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def tensor_bytes(tensor: torch.Tensor) -> bytes:
    return tensor.numpy().tobytes()


def _plain(obj: Any) -> Any:
    """``obj`` with NumPy arrays as tensors, NumPy scalars as Python numbers and bytes as uint8 tensors."""
    if isinstance(obj, bytes):
        return bytes_tensor(obj)
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.array(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    return obj


def _to_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def save(path: str | Path, content: Mapping[str, Any]) -> int:
    """Write ``content`` atomically with its checksum; returns the file size in bytes."""
    payload = _to_bytes(_plain(content))
    digest = hashlib.sha256(payload).hexdigest()
    data = _to_bytes({"format": FORMAT, "version": VERSION, "sha256": digest, "payload": bytes_tensor(payload)})
    write_atomic(path, data)
    return len(data)


def load(path: str | Path) -> dict[str, Any]:
    """Read and verify a checkpoint file; any problem raises ``CheckpointError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such file")
    try:
        outer = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(path, f"unreadable, not a complete checkpoint file ({_brief(err)})") from None
    if not isinstance(outer, dict) or outer.get("format") != FORMAT:
        raise CheckpointError(path, f"not a {FORMAT} file (no format marker)")
    if outer.get("version") != VERSION:
        raise CheckpointError(path, f"format version {outer.get('version')!r}, this code reads version {VERSION}")
    payload = outer.get("payload")
    payload = tensor_bytes(payload) if isinstance(payload, torch.Tensor) and payload.dtype == torch.uint8 else b""
    if hashlib.sha256(payload).hexdigest() != outer.get("sha256"):
        raise CheckpointError(path, "corrupt: the content does not match its sha256 checksum")
    content = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    missing = [k for k in CONTENT_KEYS if k not in content]
    if missing or content["kind"] not in KINDS:
        raise CheckpointError(path, f"incomplete content: missing {missing}, kind {content.get('kind')!r}")
    return content


def _brief(err: BaseException, limit: int = 400) -> str:
    """``Type: message`` on one line, cut at ``limit`` characters."""
    text = f"{type(err).__name__}: {' '.join(str(err).split())}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def resolve_path(path: str | Path, name: str = LAST) -> Path:
    """A checkpoint file given as itself or as the run dir holding ``checkpoints/<name>``."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_DIR / name
    if not path.is_file():
        raise CheckpointError(path, "no such file (expected a run dir with checkpoints/, or a checkpoint file)")
    return path


# --- packing ---------------------------------------------------------------------------------------
def pack_arrays(arrays: Mapping[str, np.ndarray]) -> bytes:
    """``np.savez_compressed`` bytes of named arrays."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def unpack_arrays(data: bytes | torch.Tensor) -> dict[str, np.ndarray]:
    """The arrays of ``pack_arrays`` bytes (or of their uint8 tensor, as loaded from a checkpoint)."""
    if isinstance(data, torch.Tensor):
        data = tensor_bytes(data)
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def _buffer_state(runner: Runner) -> dict[str, Any]:
    state = runner.buffer.state_dict()
    return {**state, "data": pack_arrays(state["data"])}  # type: ignore[arg-type]


# --- content ---------------------------------------------------------------------------------------
def content(
    kind: str, info: RunInfo, runner: Runner, save_buffer: bool = False, best_success: float | None = None
) -> dict[str, Any]:
    """What a ``training`` (resumable) or ``policy`` (agent only) checkpoint of ``runner`` holds."""
    training = None
    if kind == "training":
        training = {
            "runner": runner.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "best_success": best_success,
            "buffer": _buffer_state(runner) if save_buffer else None,
        }
    return {
        "kind": kind,
        "env": dict(info.env),
        "agent_class": info.agent_class,
        "agent_kwargs": dict(info.agent_kwargs),
        "agent": runner.agent.state_dict(),
        "config": info.config,
        "counters": {"epoch": runner.epoch, "env_steps": runner.env_steps, "updates": runner.updates},
        "record": dict(runner.last_record),
        "training": training,
    }


def mismatches(saved: Mapping[str, Any], expected: Mapping[str, Any], prefix: str = "") -> list[str]:
    """``"<prefix><key>: <saved> in the file, <expected> expected"`` for each differing key."""
    keys = sorted(set(saved) | set(expected))
    return [
        f"{prefix}{k}: {saved.get(k)!r} in the file, {expected.get(k)!r} expected"
        for k in keys
        if _normalize(saved.get(k)) != _normalize(expected.get(k))
    ]


def _normalize(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def check_resumable(path: str | Path, saved: Mapping[str, Any], info: RunInfo) -> None:
    """Raise ``CheckpointError`` unless ``saved`` is a training checkpoint whose env and agent are those of
    ``info``; the message lists every difference."""
    _require_training(path, saved)
    problems = mismatches(saved["env"], info.env, "env.")
    if saved["agent_class"] != info.agent_class:
        problems.append(f"agent class: {saved['agent_class']!r} in the file, {info.agent_class!r} expected")
    else:
        problems += mismatches(saved["agent_kwargs"], info.agent_kwargs, "agent.")
    if problems:
        raise CheckpointError(path, "does not fit this run: " + "; ".join(problems))


def load_agent_state(path: str | Path, agent: Any, state: dict[str, Any]) -> None:
    """``agent.load_state_dict(state)``; a state that does not fit raises ``CheckpointError`` naming the file."""
    try:
        agent.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError) as err:
        raise CheckpointError(path, f"the agent state does not fit the agent: {_brief(err)}") from None


def _require_training(path: str | Path, saved: Mapping[str, Any]) -> None:
    if saved["kind"] != "training" or saved["training"] is None:
        raise CheckpointError(path, f"is a {saved['kind']} checkpoint: resuming needs a training one ({LAST})")


def restore(path: str | Path, saved: Mapping[str, Any], runner: Runner) -> float | None:
    """Load a ``training`` checkpoint into ``runner`` (its agent, buffer, counters, generators) and torch's
    generators; returns the best eval success so far. Without a saved buffer, the buffer starts empty."""
    _require_training(path, saved)
    training = saved["training"]
    load_agent_state(path, runner.agent, saved["agent"])
    try:
        if training["buffer"] is not None:
            buffer = dict(training["buffer"])
            runner.buffer.load_state_dict({**buffer, "data": unpack_arrays(buffer["data"])})
        runner.load_state_dict(training["runner"])
    except (KeyError, ValueError, TypeError) as err:
        raise CheckpointError(path, f"the training state does not fit the run: {_brief(err)}") from None
    torch.set_rng_state(training["torch_rng"])
    if training["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(training["cuda_rng"])
    return training["best_success"]


class Checkpointer:
    """Writes ``<run_dir>/checkpoints/last.pt`` (resumable) every ``every`` epochs and at the end, and
    ``best.pt`` (agent only) whenever eval success reaches its best so far (ties go to the later epoch).

    Args:
        run_dir: the run's output directory. info: what the checkpoints record besides the states.
        every: epochs between ``last.pt`` writes. save_buffer: include the replay buffer (exact resume).
        best_success: the best eval success of earlier sessions of this run (resume).
    """

    def __init__(
        self,
        run_dir: str | Path,
        info: RunInfo,
        every: int = 1,
        save_buffer: bool = True,
        best_success: float | None = None,
    ) -> None:
        self.dir = Path(run_dir) / CHECKPOINT_DIR
        self.info = info
        self.every = validation.positive_int("every", every)
        self.save_buffer = validation.boolean("save_buffer", save_buffer)
        self.best_success: float | None = best_success
        self.dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(self.dir)

    @property
    def last_path(self) -> Path:
        return self.dir / LAST

    @property
    def best_path(self) -> Path:
        return self.dir / BEST

    def save_last(self, runner: Runner) -> int:
        """Write the resumable checkpoint now; returns its size in bytes."""
        return save(self.last_path, content("training", self.info, runner, self.save_buffer, self.best_success))

    def save_policy(self, runner: Runner, path: str | Path) -> int:
        """Write the agent alone (no training state) to ``path``; returns its size in bytes."""
        return save(path, content("policy", self.info, runner))

    def on_epoch_end(self, runner: Runner, record: Mapping[str, Any]) -> None:
        """Runner hook: ``best.pt`` on a new best eval success, ``last.pt`` every ``every`` epochs and at the end."""
        success = float(record["eval_success_rate"])
        if self.best_success is None or success >= self.best_success:
            self.best_success = success
            self.save_policy(runner, self.best_path)
        if runner.epoch % self.every == 0 or runner.epoch >= runner.epochs:
            self.save_last(runner)
