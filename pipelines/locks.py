"""Workspace locks: two runs that write the same outputs never interleave.

A lock is an advisory `flock` on a file under `$NOTALONE_HOME/locks/`; the operating system
releases it when the holder exits, even on SIGKILL, so a crashed run never leaves a stale lock.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from features.errors import NotaloneError

POLL_SECONDS = 0.5


def pid_alive(pid: int) -> bool:
    """Is a process with this id running on this machine? (What a leftover file's writer was.)"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LockBusy(NotaloneError):
    """Another run holds the lock and did not release it in time."""


def _holder(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip() or "unknown"
    except OSError:
        return "unknown"


@contextmanager
def workspace_lock(folder: Path, name: str, wait_seconds: float, on_wait=None) -> Iterator[Path]:
    """Hold the lock `name` in `folder`; wait up to `wait_seconds` for another holder to finish."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.lock"
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the whole block
    try:
        deadline = time.monotonic() + wait_seconds
        told = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockBusy(
                        f"another run is writing {name} (process {_holder(path)}); it still holds "
                        f"{path} after {wait_seconds:.0f} s. Wait for it to finish, then run again."
                    ) from None
                if on_wait is not None and not told:
                    on_wait(f"another run is writing {name} (process {_holder(path)}); waiting")
                    told = True
                time.sleep(POLL_SECONDS)
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield path
    finally:
        handle.close()  # closing releases the flock
