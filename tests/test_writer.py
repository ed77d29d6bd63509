"""The writer places each explanation's own map on the original image, overlays it, and encodes it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from camcli import maps, render
from camcli.discover import discover
from camcli.layers import resolve_layer
from camcli.pipeline import EngineOptions, explain
from camcli.targets import Targets
from camcli.writer import RunContext, write


@pytest.fixture(scope="module")
def chelsea_result(lite0, samples):
    layer = resolve_layer(lite0.model, lite0.data.input_size)
    options = EngineOptions(
        layers=((layer.name, layer.layout),),
        targets=Targets((), 3),
        device=torch.device("cpu"),
        methods=("gradcam", "counterfactual", "guided-gradcam"),
    )
    [result] = list(explain(lite0, discover([samples / "chelsea.png"]), options))
    return result


@pytest.mark.parametrize("save", [{"overlay", "map", "raw_map"}, {"map"}, {"overlay"}, {"raw_map"}, set()])
def test_every_file_belongs_to_its_own_explanation(chelsea_result, tmp_path, save):
    result = chelsea_result
    doc = write(tmp_path, result, RunContext(model={}, preprocess={}, save=frozenset(save)))
    folder, geometry = tmp_path / "chelsea.png", result.prepared.geometry
    cams = [exp for exp in result.explanations if exp.method in ("gradcam", "counterfactual")]
    assert len(cams) == 6
    assert len({float(exp.input_map.sum()) for exp in cams}) >= 3
    for exp, entry in zip(result.explanations, doc["explanations"], strict=True):
        assert (entry["method"], entry["class_index"]) == (exp.method, exp.class_index)
        if "raw_map" in save:
            np.testing.assert_array_equal(np.load(folder / entry["files"]["raw_map"]), exp.raw_map.numpy())
        if exp.method == "guided-gradcam":
            assert set(entry["files"]) == ({"image"} if "overlay" in save else set()) | (save & {"raw_map"})
            continue
        assert set(entry["files"]) == save
        alone = maps.to_original(exp.input_map[None], geometry)[0].numpy()
        if "map" in save:
            saved = np.load(folder / entry["files"]["map"])
            assert saved.dtype == np.float32
            assert saved.shape == (geometry.height, geometry.width)
            np.testing.assert_array_equal(saved, alone)
        if "overlay" in save:
            expected = render.overlay(
                result.prepared.image,
                render.dimmed(result.prepared.image),
                alone,
                maps.seen_rect(geometry),
                box=exp.bbox,
            )
            with Image.open(folder / entry["files"]["overlay"]) as overlay:
                assert overlay.format == "PNG"
                assert np.array_equal(np.asarray(overlay), np.asarray(expected))
