"""Generate the hostile-input fixture folder: every kind of file that lands in an audited folder.

``make(folder)`` writes the files and returns {name: expected status}. Run as a script to
create one by hand: ``python tests/hostile.py DIR``.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SAMPLES = Path(__file__).resolve().parent.parent / "sample_images"


def _photo() -> Image.Image:
    with Image.open(SAMPLES / "chelsea.png") as img:
        return img.convert("RGB")


def _jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


def make(folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    photo = _photo()
    expected: dict[str, str] = {}

    def put(name: str, data: bytes, status: str) -> None:
        (folder / name).write_bytes(data)
        expected[name] = status

    def save(name: str, img: Image.Image, status: str = "ok", **kw) -> None:
        img.save(folder / name, **kw)
        expected[name] = status

    put("zero_bytes.jpg", b"", "error")
    put("text_named.jpg", b"this is a text file, not a JPEG\n", "error")
    full_jpeg, full_png = _jpeg(photo), io.BytesIO()
    photo.save(full_png, "PNG")
    put("truncated.jpg", full_jpeg[: len(full_jpeg) // 2], "error")
    put("truncated.png", full_png.getvalue()[: len(full_png.getvalue()) // 2], "error")
    # 12,000 × 12,000 = 144 Mpx declared in the header, a few KB on disk: over --max-pixels' default.
    save("bomb.png", Image.new("1", (12_000, 12_000)), "error")
    save("one_pixel.png", Image.new("RGB", (1, 1), (200, 30, 30)))
    save("thin_1x3000.png", Image.new("RGB", (1, 3000), (90, 90, 90)))
    save("thin_3000x2.png", Image.new("RGB", (3000, 2), (90, 90, 90)))
    gradient = (np.linspace(0, 65535, 300 * 451).reshape(300, 451)).astype(np.uint16)
    save("gray16.png", Image.fromarray(gradient))
    save("cmyk.jpg", photo.convert("CMYK"), quality=90)
    palette = photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    palette.info["transparency"] = 0
    save("palette_transparent.png", palette, transparency=0)
    save("rgba.png", photo.convert("RGBA"))
    save("la.png", photo.convert("LA"))
    frames = [photo.convert("P", palette=Image.Palette.ADAPTIVE), Image.new("P", photo.size, 3)]
    save("animated.gif", frames[0], save_all=True, append_images=frames[1:], duration=100, loop=0)
    exif = Image.Exif()
    exif[0x0112] = 6  # viewers rotate it 90° clockwise: 300 wide, 451 high
    save("exif_rotated.jpg", photo, exif=exif, quality=90)
    save("photo.tiff", photo)
    save("photo.webp", photo, quality=90)
    put("unreadable.jpg", full_jpeg, "error" if os.geteuid() != 0 else "ok")
    os.chmod(folder / "unreadable.jpg", 0)  # root reads it anyway
    os.mkfifo(folder / "fifo.jpg")  # opening it would block forever
    expected["fifo.jpg"] = "error"
    return expected


if __name__ == "__main__":
    for name, status in sorted(make(Path(sys.argv[1])).items()):
        print(f"{status:5}  {name}")
