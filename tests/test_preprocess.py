"""Preprocessing equals the models' own eval transforms, and decoding handles real-world files."""

from __future__ import annotations

from pathlib import PurePosixPath

import numpy as np
import pytest
import timm
import torch
import torchvision
from PIL import Image

from camcli.models import load_model
from camcli.preprocess import decode, prepare, to_input
from camcli.records import Failure, ImageItem, Prepared

IMAGES = ["chelsea.png", "coffee.png", "grace_hopper.jpg", "rocket.jpg"]


@pytest.mark.parametrize("name", ["tf_efficientnet_lite0", "convnext_tiny", "tv:resnet18"])
def test_input_equals_library_transform(name, samples):
    loaded = load_model(name, random_weights=True)
    if name.startswith("tv:"):
        reference = torchvision.models.get_model_weights(name[3:]).DEFAULT.transforms()
    else:
        reference = timm.data.create_transform(**timm.data.resolve_data_config({}, model=loaded.model))
    for file in IMAGES:
        with Image.open(samples / file) as img:
            expected = reference(img.convert("RGB"))
        got, _ = to_input(decode(samples / file)[0], loaded.data)
        assert torch.equal(got, expected), file


def test_geometry_crop_box(samples, lite0):
    _, geometry = to_input(decode(samples / "chelsea.png")[0], lite0.data)  # 451×300
    assert geometry.resized == (384, 256)
    assert geometry.crop_box == pytest.approx((80 * 451 / 384, 16 * 300 / 256, 304 * 451 / 384, 240 * 300 / 256))
    assert geometry.input_to_original(0, 0) == pytest.approx(geometry.crop_box[:2])


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = 255  # left half white
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    img.save(tmp_path / "r.jpg", exif=exif, quality=95)
    rgb, _ = decode(tmp_path / "r.jpg")
    assert rgb.size == (20, 40)  # as a viewer shows it
    assert np.asarray(rgb)[:10].mean() > 200
    assert np.asarray(rgb)[30:].mean() < 50


def test_sixteen_bit_grayscale_is_scaled(tmp_path):
    arr = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "g16.png")
    rgb, mode = decode(tmp_path / "g16.png")
    assert mode.startswith("I")
    assert rgb.mode == "RGB"
    values = np.asarray(rgb)[..., 0]
    assert values.min() == 0
    assert values.max() == 255


def test_bad_files_become_failures(tmp_path, lite0):
    (tmp_path / "text.jpg").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    good = Image.new("RGB", (64, 64), "red")
    good.save(tmp_path / "full.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "full.png").read_bytes()[:60])
    for name in ("text.jpg", "empty.png", "cut.png"):
        outcome = prepare(ImageItem(tmp_path / name, PurePosixPath(name)), lite0.data)
        assert isinstance(outcome, Failure), name
        assert outcome.source is not None
        assert len(outcome.source.sha256) == 64
    assert isinstance(prepare(ImageItem(tmp_path / "full.png", PurePosixPath("full.png")), lite0.data), Prepared)
