"""Rebuild docs/methods.jpg: every method on one sample image, from a real camcli run.

python docs/figure.py            # runs camcli explain on sample_images/chelsea.png, class "tiger cat"

DFF's tile is its picture of every concept in its own colour. RefineCAM needs several layers, so it runs
apart (Lite0's blocks.4 and bn2); LeGrad reads the attention of a vision transformer, and no ViT's weights
ship with camcli (a random ViT's map means nothing), so its tile says so instead of showing one.
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
APART = {"refinecam": ("--layer", "blocks.4", "--layer", "bn2")}
# SS-CAM and IS-CAM at their defaults run 35 and 10 masked forwards per channel (1280 at Lite0's bn2): minutes
# each on a CPU, for a picture that four samples already show.
TOGETHER = ("--sscam-num-samples", "4", "--iscam-num-samples", "4")
NOT_SHOWN = {"legrad": "ViT only"}


def main() -> None:
    from camcli.methods import names

    original = Image.open(ROOT / "sample_images" / IMAGE).convert("RGB")
    together = [m for m in names() if m not in APART and m not in NOT_SHOWN]
    tiles = {m: _tile(_blank(original), f"{m}: {why}") for m, why in NOT_SHOWN.items()}
    for methods, extra in [(together, TOGETHER), *(([m], args) for m, args in APART.items())]:
        tiles.update(_run(methods, extra))
    shown = [_tile(original, "input"), *(tiles[m] for m in names() if m in tiles)]
    _save(shown)


def _run(methods: list[str], extra: tuple[str, ...]) -> dict[str, Image.Image]:
    """One camcli run of ``methods``: a tile per method, from its overlay (or guided image)."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "camcli", "explain", str(ROOT / "sample_images" / IMAGE), "-o", tmp, "-q"]
        subprocess.run([*command, "--class", CLASS, "--method", ",".join(methods), *extra], check=True)
        folder = Path(tmp) / IMAGE
        doc = json.loads((folder / "explanation.json").read_text())
        tiles = {}
        for exp in doc["explanations"]:  # DFF: one entry per concept, all sharing the picture of every concept
            files = exp["files"]
            shown = files.get("concepts") or files.get("overlay") or files["image"]
            with Image.open(folder / shown) as picture:
                tiles[exp["method"]] = _tile(picture.convert("RGB"), exp["method"])
        return tiles


def _blank(original: Image.Image) -> Image.Image:
    return Image.new("RGB", original.size, (235, 235, 235))


def _save(tiles: list[Image.Image]) -> None:
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
