"""Find the images to explain, in a deterministic order."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Iterator, Sequence

from .errors import CamcliError
from .records import ImageItem

RESERVED = frozenset({"run.json", "summary.jsonl"})  # camcli's own files at the top of --out
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)


def _walk(root: Path) -> Iterator[Path]:
    """Files below ``root`` with image suffixes, sorted, skipping hidden entries."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                yield Path(dirpath) / name


def discover(inputs: Sequence[Path]) -> list[ImageItem]:
    """Expand files and folders into image items.

    A folder contributes its image files (by suffix), recursively; a file named explicitly is
    always taken, whatever its suffix, so that a bad file is reported rather than ignored.
    Each item's ``rel`` mirrors its path under its input folder (with several inputs, prefixed by
    that folder's name so outputs stay apart); a file given directly maps to its own name.
    """
    items: list[ImageItem] = []
    seen: dict[PurePosixPath, Path] = {}
    for given in inputs:
        if not given.exists():
            raise CamcliError(f"Input path '{given}' does not exist. Check the spelling or pass an existing file or folder.")
        if given.is_dir():
            prefix = PurePosixPath(given.resolve().name) if len(inputs) > 1 else PurePosixPath()
            found = ((p, PurePosixPath(p.relative_to(given).as_posix())) for p in _walk(given))
        else:
            prefix, found = PurePosixPath(), iter([(given, PurePosixPath(given.name))])
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
            f"{' '.join(sorted(IMAGE_SUFFIXES))}; name a file explicitly to try it whatever its suffix."
        )
    return items
