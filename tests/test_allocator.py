"""The allocator setting takes on glibc and is a no-op elsewhere."""

from __future__ import annotations

import platform

from camcli.allocator import keep_freed_memory


def test_allocator_settings_apply_on_glibc_only():
    assert keep_freed_memory() == (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")
