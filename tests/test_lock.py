"""camcli.lock: one writer per output folder. A whole run excludes any other run; the shards of one split
run side by side; a shard of another split is refused; the message names who holds the folder.

flock locks belong to open files, so two RunLocks in this process exclude each other as two processes would;
one test holds the lock in another process to check the PID in the message and the release on SIGKILL.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from contextlib import ExitStack

import pytest

from camcli.errors import RunLocked
from camcli.lock import RunLock, shard_lock_name

HOLD = """
import sys
from pathlib import Path
from camcli.lock import RunLock
lock = RunLock(Path(sys.argv[1]))
lock.acquire()
print("held", flush=True)
sys.stdin.read()  # until the test closes stdin or kills this process
"""


def _refused(out, shard=None) -> str:
    with pytest.raises(RunLocked) as info:
        RunLock(out, shard).acquire()
    return str(info.value)


def test_a_whole_run_excludes_another_whole_run_and_any_shard(tmp_path):
    out = tmp_path / "out"
    with RunLock(out) as held:
        assert held.path == out / ".camcli-lock"
        message = _refused(out)
        assert message.startswith(f"Another camcli run (PID {os.getpid()} on {socket.gethostname()}, started ")
        assert message.endswith(f"is writing to '{out}'. Wait for it to finish, or pass another --out.")
        assert "Another camcli run" in _refused(out, (0, 2))
    with RunLock(out, (0, 2)):  # released: the folder is free again
        pass
    assert sorted(p.name for p in out.iterdir()) == [".camcli-lock", shard_lock_name((0, 2))]


def test_shards_of_one_split_run_side_by_side_and_exclude_whole_runs(tmp_path):
    out = tmp_path / "out"
    with RunLock(out, (0, 3)), RunLock(out, (2, 3)):
        assert shard_lock_name((2, 3)) == ".camcli-lock-shard-2-of-3"
        assert _refused(out).startswith("Shards 0/3, 2/3 of a job array are writing to")
        same = _refused(out, (2, 3))
        assert same.startswith(f"Another camcli run (shard 2/3) (PID {os.getpid()} on ")
        other = _refused(out, (1, 2))
        assert other.startswith("Shard 0/3 of another split is writing to")
        assert other.endswith("shards of 2 parts would overlap its images. Use one split per output folder.")
        with RunLock(out, (1, 3)):  # the third shard of the same split joins
            pass
    with RunLock(out):  # every shard finished: a whole run may start (old shard lock files do not count)
        pass


def test_a_refused_acquire_holds_nothing(tmp_path):
    out = tmp_path / "out"
    with ExitStack() as stack:
        stack.enter_context(RunLock(out, (0, 2)))
        _refused(out, (0, 3))  # it took the shared lock and its shard lock before finding the other split
        _refused(out, (0, 2))
    with RunLock(out, (0, 3)):  # ... and let them go: the other split can run now
        pass


def test_unreadable_holder_information_is_shown_as_unknown(tmp_path):
    out = tmp_path / "out"
    with RunLock(out):
        (out / ".camcli-lock").write_text("[not what camcli writes")
        assert "(PID ? on ?, started ?)" in _refused(out)


def test_the_holder_is_another_process_and_its_death_frees_the_folder(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        assert f"(PID {holder.pid} on " in _refused(out)
        holder.send_signal(signal.SIGKILL)  # no clean-up: the kernel releases the lock
        assert holder.wait(timeout=30) == -signal.SIGKILL
        with RunLock(out):
            pass
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=30)
        if holder.stdin is not None:
            holder.stdin.close()
        if holder.stdout is not None:
            holder.stdout.close()
