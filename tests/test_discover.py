"""Discovery: deterministic order, output folders that mirror the inputs."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from camcli.discover import discover
from camcli.errors import CamcliError


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_folder_walk_is_sorted_recursive_and_filtered(tmp_path):
    for name in ("b.png", "a.JPG", "sub/c.webp", "notes.txt", ".hidden.png", ".git/d.png", "sub/z/e.tif"):
        _touch(tmp_path / name)
    assert [i.rel.as_posix() for i in discover([tmp_path])] == ["a.JPG", "b.png", "sub/c.webp", "sub/z/e.tif"]


def test_several_inputs(tmp_path):
    one = _touch(tmp_path / "x" / "one.png")
    _touch(tmp_path / "folder" / "two.png")
    items = discover([one, tmp_path / "folder"])
    assert [i.rel for i in items] == [PurePosixPath("one.png"), PurePosixPath("folder/two.png")]
    text = _touch(tmp_path / "readme.txt")
    assert discover([text])[0].rel == PurePosixPath("readme.txt")  # named explicitly: taken


def test_collisions_and_missing_paths(tmp_path):
    one = _touch(tmp_path / "z" / "folder" / "x.png")  # named directly: z/ holds both files -> folder/x.png
    two = _touch(tmp_path / "z" / "other.png")
    _touch(tmp_path / "folder" / "x.png")  # a folder input -> folder/x.png as well
    with pytest.raises(CamcliError, match="same output folder"):
        discover([one, two, tmp_path / "folder"])
    with pytest.raises(CamcliError, match="does not exist"):
        discover([tmp_path / "missing"])


def test_include_exclude_and_symlink_loops(tmp_path):
    for name in ("a/keep.jpg", "a/skip.png", "b/keep2.jpg", "b/deep/x.jpg"):
        _touch(tmp_path / name)
    (tmp_path / "b" / "loop").symlink_to(tmp_path / "b")  # a cycle: must not recurse forever
    (tmp_path / "a" / "other").symlink_to(tmp_path / "b")  # a real second route to b: followed once
    got = [i.rel.as_posix() for i in discover([tmp_path], include=["*.jpg"], exclude=["*/deep/*"])]
    assert got == ["a/keep.jpg", "a/other/keep2.jpg"]  # b itself is reached first through a/other


def test_paths_from_stdin_list():
    import io
    import os

    from camcli.discover import read_path_list

    listing = io.BytesIO(b"x.jpg\n\n  \nsub/y z.png\r\ncaf\xe9.png\n")
    assert read_path_list(listing) == [Path("x.jpg"), Path("sub/y z.png"), Path(os.fsdecode(b"caf\xe9.png"))]


def test_files_named_directly_keep_apart_by_their_folders(tmp_path):
    a = _touch(tmp_path / "data" / "a" / "IMG_1.png")
    b = _touch(tmp_path / "data" / "b" / "IMG_1.png")
    c = _touch(tmp_path / "data" / "c.png")
    assert [i.rel.as_posix() for i in discover([a, b, c])] == ["a/IMG_1.png", "b/IMG_1.png", "c.png"]
    assert [i.rel.as_posix() for i in discover([a])] == ["IMG_1.png"]
