"""One process writes an SQLite database: the holder's lock beside the file.

Two processes (or two engines in one process) learning into one file would each keep a live
model of its own and number their learns from the same sequence: one of them loses the race
for every number, and the models diverge. So the store takes an exclusive ``flock`` on
``<database>.lock`` when it opens the file and keeps it until it closes; a second store on
the same file is refused with :class:`DatabaseInUse`, which names the holder (its process id
and command line, written into the lock file). The kernel drops the lock when the holder
exits, however it exits: a ``kill -9`` leaves no stale lock behind.

The lock is a file of its own because SQLite's own locks are POSIX record locks on the
database file, which a process loses when it closes *any* descriptor of that file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time

__all__ = ["DatabaseInUse", "DatabaseLock"]


class DatabaseInUse(ValueError):
    """Another riverbed process (or engine) has this database open for writing."""


class DatabaseLock:
    """The exclusive hold on one database file, released by :meth:`release`."""

    def __init__(self, path: str) -> None:
        self.path = path + ".lock"
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            message = _refusal(path, fd)
            os.close(fd)
            raise DatabaseInUse(message) from None
        except BaseException:
            os.close(fd)
            raise
        holder = {"pid": os.getpid(), "argv": sys.argv, "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing the descriptor drops the flock


def _refusal(path: str, fd: int) -> str:
    """Why ``path`` cannot be opened, naming the holder from what it wrote into the lock."""
    try:
        holder = json.loads(os.pread(fd, 65536, 0) or b"{}")
        pid = int(holder["pid"])
        argv = [str(arg) for arg in holder.get("argv") or []]
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(holder["since"])))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        who = "another process"
    else:
        if pid == os.getpid():
            return (
                f"{path} is already open by another riverbed Engine in this process: "
                "close that one first, or share it"
            )
        command = " ".join([_program(argv[0]), *argv[1:]]) if argv else "python"
        who = f"process {pid} ({command}, since {since})"
    return (
        f"{path} is already open by {who}: one process writes a database at a time. "
        "Stop that one, use its server (every client can share it), or give this one "
        "another --database"
    )


def _program(path: str) -> str:
    """The name a person typed for a program: ``riverbed`` for ``python -m riverbed``."""
    if path.endswith(os.path.join("riverbed", "__main__.py")):
        return "riverbed"
    return os.path.basename(path)
