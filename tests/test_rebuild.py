"""camcli.full_map: the full-resolution map from a raw map and the geometry explanation.json records,
compared with an independent computation (tests/independent.py), and its errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import independent
import numpy as np
import pytest

from camcli import full_map

# The centre crop of a 451×300 image resized to 384×256, cut at 224×224 (as Lite0 sees chelsea.png).
CROP = [80 * 451 / 384, 16 * 300 / 256, 304 * 451 / 384, 240 * 300 / 256]


def _write(folder: Path, explanations: list[dict], maps: dict[str, np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, values in maps.items():
        np.save(folder / name, values)
    doc = {
        "schema_version": 1,
        "status": "ok",
        "source": {"path": "x.png", "sha256": "0" * 64, "width": 451, "height": 300, "mode": "RGB"},
        "model": {"input_size": [224, 224]},
        "preprocess": {"resized_size": [384, 256], "crop_box": CROP},
        "predictions": [],
        "explanations": explanations,
    }
    (folder / "explanation.json").write_text(json.dumps(doc))
    return folder / "explanation.json"


def test_full_map_equals_the_independent_computation(tmp_path):
    rng = np.random.default_rng(0)
    raw = {"a_raw.npy": rng.random((7, 7), dtype=np.float32), "b_raw.npy": rng.random((14, 10), dtype=np.float32)}
    entries = [
        {"method": "gradcam", "class_index": 1, "files": {"raw_map": "a_raw.npy"}},
        {"method": "layercam", "class_index": 1, "files": {"raw_map": "b_raw.npy"}},
    ]
    path = _write(tmp_path / "x.png", entries, raw)
    doc = json.loads(path.read_text())
    for index, entry in enumerate(entries):
        expected = independent.full_map(raw[entry["files"]["raw_map"]], doc)
        for which in (index, entry):  # by index or by the entry itself
            got = full_map(path, which)
            assert got.dtype == np.float32
            assert got.shape == (300, 451)
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    assert 0.99 < full_map(path).max() <= 1.0  # sampled between input pixels: near the peak of 1
    assert full_map(str(path))[:, :90].max() == 0  # the margins the model never saw


def test_an_entry_without_a_raw_map_cannot_be_rebuilt(tmp_path):
    path = _write(tmp_path / "x.png", [{"method": "gradcam", "class_index": 5, "files": {"overlay": "o.png"}}], {})
    with pytest.raises(ValueError, match=r"gradcam/5 in .* has no raw map: it was written without --save raw_map"):
        full_map(path)


def test_a_pixel_space_entry_has_no_heat_map(tmp_path):
    entry = {"method": "guided-backprop", "class_index": 5, "files": {"raw_map": "g.npy"}}
    path = _write(tmp_path / "x.png", [entry], {"g.npy": np.zeros((3, 224, 224), np.float32)})
    with pytest.raises(ValueError, match="guided-backprop is a pixel-space method"):
        full_map(path)


def test_what_is_not_camclis_is_refused(tmp_path):
    entry = {"method": "gradcam", "class_index": 5, "files": {"raw_map": "r.npy"}}
    path = _write(tmp_path / "x.png", [entry], {})
    os.mkfifo(tmp_path / "x.png" / "r.npy")  # a FIFO where the raw map should be: refused, not waited on
    with pytest.raises(ValueError, match="cannot read"):
        full_map(path)
    (tmp_path / "other.json").write_text('{"explanations": []}')
    with pytest.raises(ValueError, match=r"is not a camcli explanation\.json"):
        full_map(tmp_path / "other.json")
