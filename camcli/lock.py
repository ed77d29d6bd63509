"""One writer per output folder, whatever the command or shard: ``flock`` locks held for the whole run.

- A run over the whole folder (explain, evaluate, ``evaluate --from``, merge) holds ``OUT/.camcli-lock``
  exclusively.
- A shard of a job array (``--shard I/N``) holds it shared, and its own ``.camcli-lock-shard-I-of-N``
  exclusively: the shards of one split run side by side (their images are disjoint), nothing else runs
  with them, and a shard of another split (whose images would overlap) is refused.

The kernel releases a ``flock`` when the process ends, however it ends, so a run killed with SIGKILL
never blocks the next one. A lock file's content (PID, start time, host) only names its holder in the
message of the run it stops.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import IO

from .errors import RunLocked
from .outputs import LOCK, parse_json

_SHARD_LOCK = re.compile(rf"^{re.escape(LOCK)}-shard-(\d+)-of-(\d+)$")


def shard_lock_name(shard: tuple[int, int]) -> str:
    return f"{LOCK}-shard-{shard[0]}-of-{shard[1]}"


def _holder(fh: IO[str]) -> str:
    """Who holds a lock, from what its holder wrote into the file (bounded: it may be anything)."""
    fh.seek(0)
    try:
        info = parse_json(fh.read(4096) or "{}")
    except ValueError:
        info = {}
    info = info if isinstance(info, dict) else {}
    return f"PID {info.get('pid', '?')} on {info.get('host', '?')}, started {info.get('started', '?')}"


def _try(path: Path, mode: int) -> IO[str] | None:
    """The file opened and locked in ``mode`` (LOCK_EX or LOCK_SH) without waiting, or None if held."""
    fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held open: the lock lives as long as it)
    try:
        fcntl.flock(fh, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    return fh


def _sign(fh: IO[str]) -> None:
    fh.seek(0)
    fh.truncate()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started}))
    fh.flush()


class RunLock:
    """``with RunLock(out, shard):`` holds the folder's locks, or raises RunLocked naming the holder."""

    def __init__(self, out: Path, shard: tuple[int, int] | None = None) -> None:
        self.out = out
        self.shard = shard
        self.path = out / LOCK
        self._held: list[IO[str]] = []

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()

    def acquire(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        try:
            if self.shard is None:
                main = _try(self.path, fcntl.LOCK_EX)
                if main is None:
                    raise RunLocked(self._busy())
                _sign(main)
                self._held.append(main)
                return
            main = _try(self.path, fcntl.LOCK_SH)
            if main is None:
                raise RunLocked(self._busy())
            self._held.append(main)
            mine = _try(self.out / shard_lock_name(self.shard), fcntl.LOCK_EX)
            if mine is None:
                raise RunLocked(self._busy(f"shard {self.shard[0]}/{self.shard[1]}"))
            _sign(mine)
            self._held.append(mine)
            for other in self._running_shards():
                found = _SHARD_LOCK.match(other.name)
                if found and int(found[2]) != self.shard[1]:
                    raise RunLocked(
                        f"Shard {found[1]}/{found[2]} of another split is writing to '{self.out}'; shards of "
                        f"{self.shard[1]} parts would overlap its images. Use one split per output folder."
                    )
        except BaseException:
            self.release()
            raise

    def _running_shards(self) -> list[Path]:
        """Shard lock files of this folder whose shard is running now (other than ours)."""
        running = []
        for path in sorted(self.out.glob(f"{LOCK}-shard-*-of-*")):
            if self.shard is not None and path.name == shard_lock_name(self.shard):
                continue
            probe = _try(path, fcntl.LOCK_SH)
            if probe is None:
                running.append(path)
            else:
                probe.close()
        return running

    def _busy(self, what: str = "") -> str:
        """Names the run(s) holding the folder."""
        shards = self._running_shards()
        if shards and not what:
            names = ", ".join(f"{m[1]}/{m[2]}" for p in shards for m in [_SHARD_LOCK.match(p.name)] if m is not None)
            holder = f"Shards {names} of a job array are"
        else:
            try:
                name = shard_lock_name(self.shard) if what and self.shard else LOCK
                with open(self.out / name, encoding="utf-8") as fh:
                    who = _holder(fh)
            except OSError:
                who = "unknown"
            holder = f"Another camcli run{f' ({what})' if what else ''} ({who}) is"
        return f"{holder} writing to '{self.out}'. Wait for it to finish, or pass another --out."

    def release(self) -> None:
        for fh in reversed(self._held):
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()
        self._held.clear()
