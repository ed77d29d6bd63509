"""Find the images to explain, in a deterministic order."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from .errors import CamcliError
from .outputs import EXPLANATION, MARKER, RESERVED, explanation_doc, parse_json, read_bytes
from .records import ImageItem

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)


def _walk(
    root: Path, include: Sequence[str], exclude: Sequence[str], skip: frozenset[tuple[int, int]] = frozenset()
) -> Iterator[Path]:
    """Files below ``root`` with image suffixes, sorted, skipping hidden entries.

    Symlinked folders are followed, each real folder once, so a link loop ends the descent.
    camcli's own outputs are not entered: output folders it made (they hold the output marker), image
    folders it wrote (they hold its explanation.json) and the folders in ``skip`` (device, inode).
    ``include`` / ``exclude`` globs match the path relative to ``root`` or the file name.
    """
    visited: set[tuple[int, int]] = set(skip)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        info = os.stat(dirpath)
        if (info.st_dev, info.st_ino) in visited or MARKER in filenames or _image_output(dirpath, filenames):
            dirnames[:] = []
            continue
        visited.add((info.st_dev, info.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if include and not any(fnmatch.fnmatch(rel, g) or fnmatch.fnmatch(name, g) for g in include):
                continue
            if any(fnmatch.fnmatch(rel, g) or fnmatch.fnmatch(name, g) for g in exclude):
                continue
            yield path


def _image_output(folder: str, filenames: list[str]) -> bool:
    """A folder camcli wrote one image's outputs into: it holds camcli's explanation.json."""
    if EXPLANATION not in filenames:
        return False
    try:
        doc = parse_json(read_bytes(Path(folder) / EXPLANATION, 1 << 20))
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return explanation_doc(doc) is not None


def printable(path: os.PathLike[str] | str) -> str:
    """A path as text for JSON and terminals: bytes that are not UTF-8 become \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def read_path_list(stream: BinaryIO) -> list[Path]:
    """Paths, one per line (as `find` or `git diff --name-only` print them); blank lines skipped.

    Read as bytes and decoded as the OS does, so names that are not UTF-8 still work."""
    return [Path(os.fsdecode(line.rstrip(b"\r\n"))) for line in stream if line.strip()]


def discover(
    inputs: Sequence[Path], include: Sequence[str] = (), exclude: Sequence[str] = (), out: Path | None = None
) -> list[ImageItem]:
    """Expand files and folders into image items.

    A folder contributes its image files (by suffix), recursively; a file named explicitly is
    always taken, whatever its suffix, so that a bad file is reported rather than ignored.
    ``include`` / ``exclude`` globs filter what folders contribute; folders never yield camcli's
    own outputs (``out``, and any folder a camcli run wrote into). Each item's ``rel`` mirrors its
    path under its input folder (with several inputs, prefixed by that folder's name so outputs
    stay apart); files given directly mirror their path below the deepest folder that holds them
    all (a lone file: its own name).
    """
    skip: frozenset[tuple[int, int]] = frozenset()
    if out is not None and out.is_dir():
        info = os.stat(out)
        skip = frozenset({(info.st_dev, info.st_ino)})
    items: list[ImageItem] = []
    seen: dict[PurePosixPath, Path] = {}
    files = [os.path.abspath(p) for p in inputs if not p.is_dir()]
    base = os.path.commonpath([os.path.dirname(f) for f in files]) if files else ""
    for given in inputs:
        if not given.exists():
            raise CamcliError(
                f"Input path '{given}' does not exist. Check the spelling or pass an existing file or folder."
            )
        if given.is_dir():
            prefix = PurePosixPath(given.resolve().name) if len(inputs) > 1 else PurePosixPath()
            found: Iterator[tuple[Path, PurePosixPath]] = (
                (p, PurePosixPath(p.relative_to(given).as_posix())) for p in _walk(given, include, exclude, skip)
            )
        else:
            rel_file = PurePosixPath(Path(os.path.relpath(os.path.abspath(given), base)).as_posix())
            prefix, found = PurePosixPath(), iter([(given, rel_file)])
        for path, rel in found:
            rel = prefix / rel
            if rel.parts[0] in RESERVED:
                raise CamcliError(
                    f"'{path}' would write to '{rel}', the name of camcli's own run file. "
                    "Rename it or pass the folder that contains it."
                )
            if rel in seen:
                raise CamcliError(
                    f"'{path}' and '{seen[rel]}' would write to the same output folder '{rel}'. "
                    "Explain them in separate runs with different --out folders."
                )
            seen[rel] = path
            items.append(ImageItem(path=path, rel=rel))
    if not items:
        raise CamcliError(
            f"No images found in {', '.join(map(str, inputs))}. camcli looks for files ending in "
            f"{' '.join(sorted(IMAGE_SUFFIXES))} and skips its own output folders; name a file explicitly "
            "to try it whatever its suffix."
        )
    return items
