"""A run dir and the one process that writes it.

A run (a new one, a resume, a sweep job) holds ``<run dir>/.lock`` (``fcntl.flock``) from before it writes
anything there until it ends; the file names the process (pid and command line) while it holds it. The OS
drops the lock when the process dies, however it dies, so a SIGKILL leaves no stale lock behind. A second
writer is refused at once with an error naming the dir and the live process (``RunDirError``), and a new run
refuses a dir that already holds a run (its metrics, checkpoints or policy): only ``resume=`` continues one.
New dirs are made exclusively (``new_dir``), so two runs named in the same second get two dirs.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import shlex
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

LOCK_FILE = ".lock"
# What makes a dir hold a run: files only training writes (.hydra/ and tb/ also appear when a start fails).
RUN_FILES = ("metrics.jsonl", "policy.pt", "checkpoints/last.pt", "checkpoints/last.prev.pt", "checkpoints/best.pt")


class RunDirError(Exception):
    """A run dir this process may not write; the message names it and says what to do."""


def run_files(run_dir: str | Path) -> list[str]:
    """The ``RUN_FILES`` that ``run_dir`` holds."""
    return [name for name in RUN_FILES if (Path(run_dir) / name).exists()]


def new_dir(path: str | Path) -> Path:
    """Make and return a new, empty dir: ``path``, or when that exists ``path_2``, ``path_3``, ... (the first name
    free). ``mkdir`` is exclusive, also between processes: no two callers get the same dir."""
    base = Path(path)
    base.parent.mkdir(parents=True, exist_ok=True)
    for n in itertools.count(1):
        candidate = base if n == 1 else base.with_name(f"{base.name}_{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise AssertionError("unreachable")


def holder(run_dir: str | Path, wait_s: float = 1.0) -> str:
    """Who holds ``run_dir``'s lock, as its lock file says: ``process <pid> (<command>)``. A holder writes the
    file right after taking the lock: an empty file is read again for up to ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            text = (Path(run_dir) / LOCK_FILE).read_text()
        except OSError:
            text = ""
        pid, _, command = text.partition("\n")
        if pid or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    return f"process {pid} ({command.strip()})" if pid else "another process"


def busy_message(run_dir: str | Path) -> str:
    who = holder(run_dir)
    pid = who.split()[1] if who.startswith("process ") else "<pid>"
    return (
        f"run dir {run_dir} is in use by {who}: a run or a resume writes there until it ends. Wait for it to end, "
        f"stop it (kill -INT {pid}), or use another dir"
    )


def check_not_busy(run_dir: str | Path) -> None:
    """Raise ``RunDirError`` when a live process holds ``run_dir``'s lock (creates nothing: a dir without a lock
    file has no holder)."""
    try:
        fd = os.open(Path(run_dir) / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RunDirError(busy_message(run_dir)) from None
    finally:
        os.close(fd)  # (and with it the lock, if this call took it)


def _lock(run_dir: Path) -> int:
    """Take ``run_dir``'s lock (making the dir if needed) and write this process into the lock file; returns its
    file descriptor, which holds the lock until closed."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)  # no O_TRUNC: the holder's pid stays
    except OSError as err:
        raise RunDirError(f"cannot use {run_dir} as a run dir: {err.strerror or err}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunDirError(busy_message(run_dir)) from None
    except OSError as err:
        os.close(fd)
        raise RunDirError(f"cannot lock {run_dir / LOCK_FILE}: {err.strerror or err}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n{shlex.join([sys.executable, *sys.argv])}\n".encode(), 0)
    return fd


def _refuse_a_run_there(run_dir: Path) -> None:
    files = run_files(run_dir)
    if files:
        raise RunDirError(
            f"run dir {run_dir} holds a run already ({', '.join(files)}): continue it with resume={run_dir}, or "
            "start the new run in another dir"
        )


_held: dict[Path, int] = {}  # run dir (resolved) -> the lock file descriptor this process holds it with


@contextmanager
def hold(run_dir: str | Path, new_run: bool) -> Iterator[None]:
    """Hold ``run_dir``'s lock while the block runs, or raise ``RunDirError`` when a live process holds it; a new
    run (``new_run``) also refuses a dir that holds a run already. Re-entrant within a process: an inner ``hold``
    of a dir this process holds only checks."""
    path = Path(run_dir)
    key = path.resolve()
    if key in _held:
        if new_run:
            _refuse_a_run_there(path)
        yield
        return
    fd = _lock(path)
    _held[key] = fd
    try:
        if new_run:
            _refuse_a_run_there(path)
        yield
    finally:
        del _held[key]
        os.ftruncate(fd, 0)  # the file names the process only while it holds the dir
        os.close(fd)  # and the lock with it


def write_files(directory: str | Path, files: Mapping[str, str]) -> None:
    """Write ``files`` (name -> text) into ``directory``, made if needed."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
