"""Small JPEG thumbnails of the source images, made once and reused by later reports.

A thumbnail is named after the source's sha256 recorded in explanation.json, so an unchanged
source is never redone and duplicates share one file. When the source is gone (or changed since the
run) the thumbnail comes from the image's first overlay instead, named after what that overlay
depends on; failing both, the page shows a placeholder.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..outputs import REPORT, read_bytes
from .collect import ImageDoc
from .encode import fs_bytes

SIZE = 160  # longest side, pixels
QUALITY = 80
READ_LIMIT = 512 << 20  # bytes of a source image or overlay read for a thumbnail: anything larger is skipped
THUMBS_DIR = "thumbs"
_ESCAPED_BYTE = re.compile(rb"\\x([0-9a-fA-F]{2})")


def thumbnail(doc: ImageDoc, out_dir: Path) -> str | None:
    """The thumbnail's path relative to the report folder (made if needed), or None for a placeholder.

    Failed images get no decoding attempt: camcli could not read them (corrupt files, bombs)."""
    report_dir = out_dir / REPORT
    if doc.status == "ok" and doc.sha256:
        rel = _name(doc.sha256[:32])
        if (report_dir / rel).exists() or _from_source(doc, out_dir, report_dir / rel):
            return rel
    shot = next((s for s in doc.shots if s.file and s.kind == "overlay"), None) or next(
        (s for s in doc.shots if s.file), None
    )
    if shot is None or shot.file is None or doc.folder is None:
        return None
    key = hashlib.sha256(f"{doc.sha256}\0{doc.fingerprint}\0{shot.file}".encode("utf-8", "surrogatepass")).hexdigest()
    rel = _name("o" + key[:31])
    if (report_dir / rel).exists() or _write(_open(_bytes(doc.folder / shot.file)), report_dir / rel):
        return rel
    return None


def source_candidates(text: str, out_dir: Path) -> list[Path]:
    """Where the source may be now: ``source.path`` as written, and with camcli's \\xNN escapes of
    non-UTF-8 bytes undone; relative paths against the current folder and the output folder's parent
    (``camcli explain images -o out`` run from one folder)."""
    raw = fs_bytes(text)
    if raw is None or b"\0" in raw:
        return []
    found: list[Path] = []
    for name in dict.fromkeys(
        [os.fsdecode(raw), os.fsdecode(_ESCAPED_BYTE.sub(lambda m: bytes([int(m[1], 16)]), raw))]
    ):
        path = Path(name)
        found += [path] if path.is_absolute() else [Path.cwd() / path, out_dir.parent / path]
    return list(dict.fromkeys(found))


def _name(stem: str) -> str:
    return f"{THUMBS_DIR}/{stem[:2]}/{stem}.jpg"  # 256 subfolders keep 100,000 files browsable


def _from_source(doc: ImageDoc, out_dir: Path, dest: Path) -> bool:
    """Thumbnail the source if it is still there with the content the run explained."""
    for candidate in source_candidates(doc.path, out_dir):
        data = _bytes(candidate)
        if data is not None and hashlib.sha256(data.getbuffer()).hexdigest() == doc.sha256:
            return _write(_open(data), dest)
    return False


def _bytes(path: Path) -> io.BytesIO | None:
    """A regular file's bytes, if it is one and not too large: ``source.path`` in a JSON file is data, and
    may name a FIFO, a device or /dev/zero."""
    try:
        return io.BytesIO(read_bytes(path, READ_LIMIT))
    except OSError:
        return None


def _open(source: io.BytesIO | None) -> Image.Image | None:
    """A small RGB image the way a viewer shows it (EXIF orientation applied), or None."""
    if source is None:
        return None
    try:
        with Image.open(source) as opened:
            opened.draft("RGB", (2 * SIZE, 2 * SIZE))  # JPEG: decode at a reduced scale, much faster
            img = _rgb(ImageOps.exif_transpose(opened))
            img.thumbnail((SIZE, SIZE), Image.Resampling.LANCZOS, reducing_gap=3.0)
            return img
    except Exception:  # a thumbnail is a nicety: any undecodable file means a placeholder instead
        return None


def _rgb(img: Image.Image) -> Image.Image:
    """RGB from any mode: 16-bit and float grey scaled to 8 bits rather than clipped, alpha dropped."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64))
        top = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1e-12)
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8))
    elif img.mode in ("P", "PA") and "transparency" in img.info:
        img = img.convert("RGBA")
    return img.convert("RGB")


def _write(img: Image.Image | None, dest: Path) -> bool:
    """Save atomically (temporary name, then os.replace): an interrupted report leaves no torn file."""
    if img is None:
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest.parent, prefix=".tmp-", suffix=".jpg", delete=False) as fh:
        try:
            img.save(fh, "JPEG", quality=QUALITY)
        except BaseException:
            os.unlink(fh.name)
            raise
    os.replace(fh.name, dest)
    return True
