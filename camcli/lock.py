"""One run per output folder: a lock file held for the whole run.

The lock is an ``flock`` on ``OUT/.camcli-lock``: the kernel releases it when the process ends,
however it ends, so a run killed with SIGKILL never blocks the next one. The file's content
(PID, start time, host) is only for the message that names the run holding it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import IO

from .errors import RunLocked

LOCK_NAME = ".camcli-lock"


def _message(path: Path, fh: IO[str]) -> str:
    """Names the run holding the lock, from what it wrote into the file."""
    fh.seek(0)
    try:
        info = json.loads(fh.read() or "{}")
    except ValueError:
        info = {}
    pid, started, host = info.get("pid", "?"), info.get("started", "?"), info.get("host", "?")
    return (
        f"Another camcli run (PID {pid} on {host}, started {started}) is writing to '{path.parent}'. "
        "Wait for it to finish, or pass another --out."
    )


class RunLock:
    """``with RunLock(out, name):`` holds the folder's lock, or raises RunLocked naming the holder.

    ``name`` separates locks that may be held together (the shards of a job array each take their own).
    """

    def __init__(self, out: Path, name: str = LOCK_NAME) -> None:
        self.path = out / name
        self._fh: IO[str] | None = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 (held open: the lock lives as long as it)
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            message = _message(self.path, fh)
            fh.close()
            raise RunLocked(message) from None
        fh.seek(0)
        fh.truncate()
        started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started}))
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
