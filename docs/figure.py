"""Rebuild docs/methods.jpg: every method on one sample image, from a real camcli run.

python docs/figure.py            # runs camcli explain on sample_images/chelsea.png, class "tiger cat"
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
IMAGE, CLASS = "chelsea.png", "tiger cat"
COLUMNS, HEIGHT = 6, 200


def main() -> None:
    from camcli.methods import METHODS

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "camcli",
                "explain",
                str(ROOT / "sample_images" / IMAGE),
                "-o",
                tmp,
                "-q",
                "--class",
                CLASS,
                "--method",
                ",".join(METHODS),
            ],
            check=True,
        )
        folder = Path(tmp) / IMAGE
        doc = json.loads((folder / "explanation.json").read_text())
        tiles = [_tile(Image.open(ROOT / "sample_images" / IMAGE).convert("RGB"), "input")]
        for exp in doc["explanations"]:
            picture = Image.open(folder / (exp["files"].get("overlay") or exp["files"]["image"])).convert("RGB")
            tiles.append(_tile(picture, exp["method"]))
    width = tiles[0].width
    rows = (len(tiles) + COLUMNS - 1) // COLUMNS
    sheet = Image.new("RGB", (width * COLUMNS, HEIGHT * rows), "white")
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % COLUMNS) * width, (i // COLUMNS) * HEIGHT))
    sheet.save(Path(__file__).with_name("methods.jpg"), quality=85)


def _tile(picture: Image.Image, caption: str) -> Image.Image:
    picture = picture.resize((round(picture.width * HEIGHT / picture.height), HEIGHT), Image.Resampling.LANCZOS)
    draw = ImageDraw.Draw(picture)
    draw.rectangle((0, 0, 8 + 7 * len(caption), 16), fill=(0, 0, 0))
    draw.text((4, 3), caption, fill=(255, 255, 255))
    return picture


if __name__ == "__main__":
    main()
