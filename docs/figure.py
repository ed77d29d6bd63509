"""Rebuild docs/methods.jpg from a camcli run (see README, "Methods").

    camcli explain sample_images/grace_hopper.jpg sample_images/chelsea.png -o /tmp/fig \
        --method gradcam,counterfactual,guided-backprop,guided-gradcam --class mortarboard --class 'tiger cat'
    python docs/figure.py /tmp/fig
"""

import json
import sys
from pathlib import Path

from PIL import Image, ImageDraw

ROWS = [("grace_hopper.jpg", 667), ("chelsea.png", 282)]
METHODS = ["gradcam", "counterfactual", "guided-backprop", "guided-gradcam"]
HEIGHT = 240


def main(out: Path) -> None:
    tiles = []
    for image, cls in ROWS:
        doc = json.loads((out / image / "explanation.json").read_text())
        row = []
        for method in METHODS:
            exp = next(e for e in doc["explanations"] if e["method"] == method and e["class_index"] == cls)
            picture = Image.open(out / image / (exp["files"].get("overlay") or exp["files"]["image"])).convert("RGB")
            picture = picture.resize((round(picture.width * HEIGHT / picture.height), HEIGHT), Image.Resampling.LANCZOS)
            ImageDraw.Draw(picture).text((6, 4), f"{method}: {exp['label'].split(',')[0]}", fill=(255, 255, 255))
            row.append(picture)
        tiles.append(row)
    width = max(sum(t.width for t in row) for row in tiles)
    sheet = Image.new("RGB", (width, HEIGHT * len(tiles)), "white")
    for r, row in enumerate(tiles):
        x = 0
        for tile in row:
            sheet.paste(tile, (x, r * HEIGHT))
            x += tile.width
    sheet.save(Path(__file__).with_name("methods.jpg"), quality=85)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
