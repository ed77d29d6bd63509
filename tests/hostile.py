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


# --- round 3: hostile files on the surfaces that read camcli's own outputs, annotations and models ---------


def plant_in_run(out: Path) -> dict[str, str]:
    """Replace files of a finished `camcli explain --save raw_map` run folder with what a hostile (or
    damaged) folder holds; returns {image folder: what was done}. Each image is one case."""
    import json

    folders = sorted(p.parent for p in out.glob("*/explanation.json"))
    cases = [
        "fifo_raw",
        "fifo_json",
        "missing_raw",
        "pickled_raw",
        "cube_raw",
        "int_raw",
        "complex_raw",
        "no_method",
        "huge_input_size",
        "truncated_json",
        "nested_json",
    ]
    done = {}
    for folder, case in zip(folders, cases, strict=False):
        doc_path = folder / "explanation.json"
        doc = json.loads(doc_path.read_text())
        raw = folder / doc["explanations"][0]["files"]["raw_map"]
        if case == "fifo_raw":
            raw.unlink()
            os.mkfifo(raw)
        elif case == "fifo_json":
            doc_path.unlink()
            os.mkfifo(doc_path)
        elif case == "missing_raw":
            raw.unlink()
        elif case == "pickled_raw":
            np.save(raw, np.array([{"not": "a map"}], dtype=object), allow_pickle=True)
        elif case == "cube_raw":
            np.save(raw, np.ones((3, 7, 7), np.float32))
        elif case == "int_raw":
            np.save(raw, np.arange(49, dtype=np.int64).reshape(7, 7))
        elif case == "complex_raw":
            np.save(raw, np.ones((7, 7), np.complex64))
        elif case == "no_method":
            del doc["explanations"][0]["method"]
            doc_path.write_text(json.dumps(doc))
        elif case == "huge_input_size":
            doc["model"]["input_size"] = [100000, 100000]
            doc_path.write_text(json.dumps(doc))
        elif case == "truncated_json":
            doc_path.write_text(doc_path.read_text()[:200])
        elif case == "nested_json":
            doc_path.write_text("[" * 100000 + "]" * 100000)
        done[folder.name] = case
    return done


def annotation_files(folder: Path, images: Path) -> dict[str, Path]:
    """Annotation files that are wrong in the ways users get them wrong, for the images in ``images``."""
    folder.mkdir(parents=True, exist_ok=True)
    names = sorted(p.name for p in images.iterdir() if p.suffix in (".png", ".jpg"))
    header = "path,class,x0,y0,x1,y1\n"
    files = {
        "misspelled.csv": header
        + f"{images / names[0]},tabby,0,0,10,10\n{images / 'chelsae.png'},tabby,0,0,10,10\n"
        + f"{images / 'cofee.png'},espresso,0,0,10,10\n",
        "header_only.csv": header,
        "escaping.csv": header + "/etc/passwd,tabby,0,0,10,10\n../../x.png,tabby,0,0,10,10\n",
    }
    paths = {}
    for name, text in files.items():
        (folder / name).write_text(text)
        paths[name] = folder / name
    coco = {
        "images": [{"id": 1, "file_name": names[0]}],
        "categories": [{"id": 7, "name": "tabby"}, {"id": 7, "name": "espresso"}],
        "annotations": [{"image_id": 1, "category_id": 7, "bbox": [0, 0, 10, 10]}],
    }
    import json

    (folder / "duplicate_ids.json").write_text(json.dumps(coco))
    paths["duplicate_ids.json"] = folder / "duplicate_ids.json"
    (folder / "nested.json").write_text("[" * 100000 + "]" * 100000)
    paths["nested.json"] = folder / "nested.json"
    voc = folder / "voc"
    voc.mkdir(exist_ok=True)
    (voc / "a.xml").write_text(
        f"<annotation><filename>{names[0]}</filename><size><width>²</width><height>10</height></size>"
        "<object><name>tabby</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox>"
        "</object></annotation>"
    )
    paths["voc_superscript"] = voc
    masks = folder / "masks" / "tabby"
    masks.mkdir(parents=True, exist_ok=True)
    Image.new("1", (20_000, 20_000)).save(masks / names[0])  # a few KB declaring 400 Mpx
    paths["huge_mask"] = folder / "masks"
    return paths


def model_folders(root: Path) -> dict[str, Path]:
    """Model folders (timm's save_for_hf layout, with a tiny real model) whose config.json is hostile."""
    import json

    import timm

    good = root / "good"
    if not good.exists():
        model = timm.create_model("test_resnet", num_classes=3)
        timm.models.save_for_hf(model, good, model_config={"label_names": ["a", "b", "c"]})
    config = json.loads((good / "config.json").read_text())
    variants = {
        "malformed": "{not json",
        "list": json.dumps([1, 2, 3]),
        "no_architecture": json.dumps({k: v for k, v in config.items() if k != "architecture"}),
        "os_system": json.dumps({**config, "architecture": "os.system"}),
        "path_architecture": json.dumps({**config, "architecture": "../../etc/passwd"}),
        "zero_classes": json.dumps({**config, "num_classes": 0}),
        "negative_classes": json.dumps({**config, "num_classes": -3}),
        "wrong_labels": json.dumps({**config, "label_names": ["a", "b"]}),
        "huge_input": json.dumps(
            {**config, "pretrained_cfg": {**config.get("pretrained_cfg", {}), "input_size": [3, 100000, 100000]}}
        ),
    }
    found = {"good": good}
    for name, text in variants.items():
        folder = root / name
        if not folder.exists():
            import shutil

            shutil.copytree(good, folder)
        (folder / "config.json").write_text(text)
        found[name] = folder
    return found


FACTORIES = """
import torch
from torch import nn


def small(outputs=2):
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, outputs)
    )


def chatty():
    print("hello from the factory")
    return small()


def quitter():
    raise SystemExit(7)


def no_outputs():
    return small(outputs=0)


def nan_weights():
    model = small()
    with torch.no_grad():
        model[-1].weight.fill_(float("nan"))
    return model
"""


def factories(folder: Path) -> Path:
    """A factory file whose functions misbehave as users' code does."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "factories.py"
    path.write_text(FACTORIES)
    return path
