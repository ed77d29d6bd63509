"""The writer places each explanation's own map on the original image, overlays it, and encodes it."""

from __future__ import annotations

import platform

import numpy as np
import torch
from PIL import Image

from camcli import maps, render
from camcli.allocator import keep_freed_memory
from camcli.discover import discover
from camcli.layers import resolve_layer
from camcli.pipeline import EngineOptions, explain
from camcli.targets import Targets
from camcli.writer import RunContext, write


def test_every_map_and_overlay_belongs_to_its_own_explanation(lite0, samples, tmp_path):
    # All CAMs of an image are resampled together: each file must still hold its own map.
    layer = resolve_layer(lite0.model, lite0.data.input_size).name
    options = EngineOptions(layer=layer, targets=Targets((), 3), device=torch.device("cpu"),
                            methods=("gradcam", "counterfactual", "guided-gradcam"))
    [result] = list(explain(lite0, discover([samples / "chelsea.png"]), options))
    doc = write(tmp_path, result, RunContext(model={}, preprocess={}))
    folder = tmp_path / "chelsea.png"
    geometry = result.prepared.geometry
    cams = [exp for exp in result.explanations if exp.method in ("gradcam", "counterfactual")]
    assert len(cams) == 6 and len({float(exp.input_map.sum()) for exp in cams}) >= 3  # distinct maps to tell apart
    for exp, entry in zip(result.explanations, doc["explanations"], strict=True):
        assert (entry["method"], entry["class_index"]) == (exp.method, exp.class_index)
        if exp.method == "guided-gradcam":
            assert set(entry["files"]) == {"image", "raw_map"}
            continue
        alone = maps.to_original(exp.input_map[None], geometry)[0].numpy()
        saved = np.load(folder / entry["files"]["map"])
        assert saved.dtype == np.float32 and saved.shape == (geometry.height, geometry.width)
        np.testing.assert_array_equal(saved, alone)
        expected = render.overlay(result.prepared.image, render.dimmed(result.prepared.image), alone,
                                  maps.seen_rect(geometry), box=exp.bbox)
        with Image.open(folder / entry["files"]["overlay"]) as overlay:
            assert np.array_equal(np.asarray(overlay), np.asarray(expected))  # PNG: lossless


def test_allocator_settings_apply_on_glibc():
    took = keep_freed_memory()
    assert took == (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")
