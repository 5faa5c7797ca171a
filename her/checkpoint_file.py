"""Checkpoint files: a checksummed format that a kill at any moment leaves readable, and atomic writes.

A checkpoint file is ``torch.save({"format", "version", "sha256", "payload"})``: ``payload`` holds the
``torch.save`` bytes of the content (as a uint8 tensor: pickled ``bytes`` would grow by half) and
``sha256`` their digest, so a truncated or damaged file is reported, never half-loaded. Both layers load
with ``weights_only=True`` (no pickled code runs). Files are written to a temporary name, synced, then
renamed over the old one (``os.replace``): the previous checkpoint stays whole until the new one is. The
resumable ``last.pt`` keeps one older generation: each write first renames the file it replaces to
``last.prev.pt``. A write that fails (a full disk, an unwritable dir) raises ``WriteError`` naming the file,
leaves the previous one in place and no temporary file behind.

The content: ``kind`` (``training``: resumable; ``policy``: agent only), ``env`` (id and sizes),
``agent_class`` and ``agent_kwargs`` (what rebuilds the agent), ``agent`` (its ``state_dict``), ``config``
(the resolved run config), ``counters`` (epoch, env steps, updates), ``record`` (the last epoch's
metrics) and, for ``training``, ``training``: the runner state (generators of runner and envs, the epoch
in progress), torch's generator states, the best eval success so far and, when saved, the replay buffer
(its arrays ``np.savez_compressed``). What fills it is ``training.checkpoint``; this module reads and
writes the files and is all that loading a policy needs.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

FORMAT = "her-fetch-checkpoint"
VERSION = 2
"""Version 1 files (the batch size an agent option, the run machinery under ``her.run``) are read and
upgraded to version 2 on loading (``upgrade_v1``)."""
CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"
LAST_PREV = "last.prev.pt"
BEST = "best.pt"
KINDS = ("training", "policy")
CONTENT_KEYS = ("kind", "env", "agent_class", "agent_kwargs", "agent", "config", "counters", "record", "training")


class CheckpointError(Exception):
    """A checkpoint that is missing, unreadable, or does not fit the run; the message names the file."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"checkpoint {path}: {problem}")


class WriteError(Exception):
    """A file that could not be written (disk full, no permission, ...); the message names it and the reason."""

    def __init__(self, path: str | Path, err: OSError, kept: str = "its previous content is kept") -> None:
        self.path = Path(path)
        self.errno = err.errno
        code = errno.errorcode.get(err.errno, "") if err.errno is not None else ""
        reason = f"{err.strerror or err}" + (f" ({code})" if code else "")
        super().__init__(f"cannot write {path}: {reason}; {kept}")


# --- files ----------------------------------------------------------------------------------------
def _sync(f: BinaryIO) -> None:
    """Push ``f``'s buffered bytes to the disk."""
    f.flush()
    os.fsync(f.fileno())


def write_atomic(path: str | Path, data: bytes, previous: str | Path | None = None) -> None:
    """Replace ``path`` by ``data`` so that at every moment it holds either the old or the new bytes.

    With ``previous``, the file being replaced is renamed to ``previous`` first (replacing it), so the two
    latest generations are kept; a kill between the two renames leaves the old one as ``previous`` only.
    Any failure raises ``WriteError`` and removes the temporary file.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as f:
            f.write(data)
            _sync(f)
        if previous is not None and path.exists():
            os.replace(path, previous)
        os.replace(tmp, path)
        _sync_dir(path.parent)  # make the renames themselves durable
    except OSError as err:
        raise WriteError(path, err) from None
    finally:
        tmp.unlink(missing_ok=True)


def _sync_dir(directory: Path) -> None:
    if hasattr(os, "O_DIRECTORY"):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def append_atomic(path: str | Path, data: bytes) -> None:
    """Append ``data`` to ``path`` (created if missing) whole or not at all: a failed write (disk full) is cut
    off again, so that no partial line is left, and raises ``WriteError``."""
    path = Path(path)
    try:
        with path.open("ab", buffering=0) as f:
            start = f.seek(0, os.SEEK_END)
            try:
                view = memoryview(data)
                while view:
                    view = view[f.write(view) :]
            except OSError:
                f.truncate(start)
                raise
    except OSError as err:
        raise WriteError(path, err, "the lines before are kept") from None


def remove_stale_temp_files(directory: str | Path) -> None:
    """Delete the temporary files (``.<name>.<pid>.tmp``, see ``write_atomic``) that writes of this process or of
    a process that has ended left behind (a kill mid-write); those of a live process are its writes in progress."""
    for tmp in Path(directory).glob(".*.*.tmp"):
        pid = tmp.name.removesuffix(".tmp").rpartition(".")[2]
        if pid.isdigit() and int(pid) > 0 and (int(pid) == os.getpid() or not process_alive(int(pid))):
            tmp.unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


def save(path: str | Path, content: Mapping[str, Any], previous: str | Path | None = None) -> int:
    """Write ``content`` atomically with its checksum, keeping the replaced file as ``previous`` if given;
    returns the file size in bytes."""
    payload = _to_bytes(_plain(content))
    digest = hashlib.sha256(payload).hexdigest()
    data = _to_bytes({"format": FORMAT, "version": VERSION, "sha256": digest, "payload": bytes_tensor(payload)})
    write_atomic(path, data, previous)
    return len(data)


def load(path: str | Path) -> dict[str, Any]:
    """Read and verify a checkpoint file; any problem raises ``CheckpointError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such file")
    try:
        outer = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(path, f"unreadable, not a complete checkpoint file ({brief(err)})") from None
    if not isinstance(outer, dict) or outer.get("format") != FORMAT:
        raise CheckpointError(path, f"not a {FORMAT} file (no format marker)")
    if outer.get("version") not in (1, VERSION):
        raise CheckpointError(
            path, f"format version {outer.get('version')!r}, this code reads versions 1 and {VERSION}"
        )
    payload = outer.get("payload")
    payload = tensor_bytes(payload) if isinstance(payload, torch.Tensor) and payload.dtype == torch.uint8 else b""
    if hashlib.sha256(payload).hexdigest() != outer.get("sha256"):
        raise CheckpointError(path, "corrupt: the content does not match its sha256 checksum")
    content = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    missing = [k for k in CONTENT_KEYS if k not in content]
    if missing or content["kind"] not in KINDS:
        raise CheckpointError(path, f"incomplete content: missing {missing}, kind {content.get('kind')!r}")
    return upgrade_v1(content) if outer["version"] == 1 else content


def upgrade_v1(content: dict[str, Any]) -> dict[str, Any]:
    """Version 1 content as version 2 holds it: ``batch_size`` moves from the agent's options to the buffer's
    (``agent_kwargs`` and ``config``), and config targets under ``her.run.`` to ``training.``."""
    batch_size = content["agent_kwargs"].pop("batch_size", None)
    config = content["config"]
    if isinstance(config, dict):
        config = _renamed_targets(config)
        batch_size = config.get("agent", {}).pop("batch_size", batch_size)
        if batch_size is not None and isinstance(config.get("buffer"), dict):
            config["buffer"]["batch_size"] = batch_size
        content["config"] = config
    return content


def _renamed_targets(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: (
                "training." + v[len("her.run.") :]
                if k == "_target_" and isinstance(v, str) and v.startswith("her.run.")
                else _renamed_targets(v)
            )
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_renamed_targets(v) for v in node]
    return node


def brief(err: BaseException, limit: int = 400) -> str:
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


def load_agent_state(path: str | Path, agent: Any, state: dict[str, Any]) -> None:
    """``agent.load_state_dict(state)``; a state that does not fit raises ``CheckpointError`` naming the file."""
    try:
        agent.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError) as err:
        raise CheckpointError(path, f"the agent state does not fit the agent: {brief(err)}") from None
