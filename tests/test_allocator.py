"""The allocator settings change where glibc puts large blocks, and keep the heap after a free.

Measured in fresh interpreters, so nothing an earlier test allocated (or a threshold glibc adjusted
on its own) decides the outcome: a 24 MiB block normally gets its own mmap and is unmapped when
freed; with camcli's settings it comes from the heap, and the heap keeps it for the next batch.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="the settings are glibc's"
)

PROBE = r"""
import ctypes, json, sys
from camcli.allocator import keep_freed_memory

def heap():
    with open("/proc/self/maps") as fh:
        for line in fh:
            if line.rstrip().endswith("[heap]"):
                start, end = (int(v, 16) for v in line.split()[0].split("-"))
                return start, end
    return 0, 0

took = keep_freed_memory() if sys.argv[1] == "apply" else None
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = 24 << 20
block = libc.malloc(size)
ctypes.memset(block, 1, size)
start, end = heap()
in_heap = start <= block < end
libc.free(block)
start, end = heap()
print(json.dumps({"took": took, "in_heap": in_heap, "heap_after_free": end - start}))
"""


def _probe(mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def test_large_blocks_come_from_the_heap_and_stay_after_a_free():
    plain, applied = _probe("plain"), _probe("apply")
    assert not plain["in_heap"]  # glibc's default: a block this large is mmapped and unmapped on free
    assert applied["took"] is True
    assert applied["in_heap"]
    assert applied["heap_after_free"] >= 24 << 20  # not trimmed: the next batch reuses these pages
