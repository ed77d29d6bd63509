"""camcli.digest: content hashes read in blocks equal the hash of the whole content."""

from __future__ import annotations

import hashlib
import os

from camcli.digest import sha256_of


def test_sha256_of_a_file_larger_than_a_block(tmp_path):
    data = os.urandom((1 << 20) * 2 + 12345)  # two whole blocks and a part
    (tmp_path / "big.bin").write_bytes(data)
    (tmp_path / "empty.bin").write_bytes(b"")
    assert sha256_of(tmp_path / "big.bin") == hashlib.sha256(data).hexdigest()
    assert sha256_of(tmp_path / "empty.bin") == hashlib.sha256(b"").hexdigest()
