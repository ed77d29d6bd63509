"""camcli.evaluate.scoring: each image's per_image.jsonl record, and a method's metrics summarized from those
records alone (so a run and its merged shards agree). Expected values are computed here by hand or
independently (tests/independent.py, OpenCV's connected components)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path, PurePosixPath

import cv2
import independent
import numpy as np
import pytest

from camcli.errors import CamcliError
from camcli.evaluate.annotations import GroundTruthObject
from camcli.evaluate.scoring import (
    heat_methods,
    input_heat,
    input_size,
    map_statistics,
    record,
    score_method,
    scored_classes,
    summarize,
)
from camcli.evaluate.truth import Image


def _outcomes(top1_cls, top5_cls, boxes, top1_loc, top5_loc, gt_known) -> dict:
    return {
        "top1_cls": top1_cls,
        "top5_cls": top5_cls,
        "boxes": boxes,
        "top1_loc": top1_loc,
        "top5_loc": top5_loc,
        "gt_known": gt_known,
    }


def _lines() -> list[dict]:
    a = {"path": "a.png", "methods": {}}
    record(a, "gradcam", {"1": {"pointing_hit": True, "energy": 0.5, "iou": 0.7}})
    record(
        a, "gradcam", {"1": {"deletion_auc": 0.2, "insertion_auc": 0.6, "confidence": 0.8, "confidence_masked": 0.4}}
    )
    a["methods"]["gradcam"]["localization"] = _outcomes(True, True, True, True, True, [True])
    b = {"path": "b.png", "methods": {}}
    record(b, "gradcam", {"2": {"pointing_hit": False, "energy": None, "iou": None}})
    record(b, "gradcam", {"3": {"pointing_hit": True, "energy": 1.0, "iou": 0.4}})
    record(
        b, "gradcam", {"3": {"deletion_auc": 0.4, "insertion_auc": 0.2, "confidence": 0.5, "confidence_masked": 0.6}}
    )
    b["methods"]["gradcam"]["localization"] = _outcomes(False, True, True, False, True, [False, True])
    c = {"path": "c.png", "methods": {}}  # another method only
    record(c, "layercam", {"1": {"pointing_hit": False, "energy": 0.0, "iou": 0.0}})
    d = {"path": "d.png", "methods": {}}  # annotated with a class but no box
    record(d, "gradcam", {})
    d["methods"]["gradcam"]["localization"] = _outcomes(True, True, False, None, None, [])
    return [a, b, c, d, {"path": "e.png", "methods": {}}]


def test_record_keeps_every_class_and_puts_the_first_on_top():
    a, b, c, *_ = _lines()
    assert a["methods"]["gradcam"]["by_class"] == {
        "1": {
            "pointing_hit": True,
            "energy": 0.5,
            "iou": 0.7,
            "deletion_auc": 0.2,
            "insertion_auc": 0.6,
            "confidence": 0.8,
            "confidence_masked": 0.4,
        }
    }
    top = {k: v for k, v in b["methods"]["gradcam"].items() if k not in ("by_class", "localization")}
    assert top == {"class": 2, "pointing_hit": False, "energy": None, "iou": None}  # the first class: 2
    assert (a["pointing_hit"], b["pointing_hit"], c["pointing_hit"]) == (True, False, False)  # every class hit?
    json.dumps(_lines(), allow_nan=False)  # lines are strict JSON


def test_summarize_from_the_lines_alone():
    found = summarize(_lines(), "gradcam", faithfulness=True)
    assert found == pytest.approx(
        {
            "top1_cls_error": 1 - 2 / 3,  # a, d right; b wrong
            "top5_cls_error": 0.0,
            "top1_loc_error": 1 - 1 / 2,  # the images with boxes: a right, b wrong
            "top5_loc_error": 0.0,
            "gt_known_loc_accuracy": 2 / 3,  # three (image, class) pairs
            "pointing_game": 2 / 3,  # a:1 hit, b:2 missed, b:3 hit
            "energy_pointing_game": (0.5 + 1.0) / 2,  # b:2 could not be measured: not a zero
            "deletion_auc": (0.2 + 0.4) / 2,
            "insertion_auc": (0.6 + 0.2) / 2,
            "average_drop_pct": 100 * ((0.8 - 0.4) / 0.8 + 0) / 2,  # b:3 rose: no drop
            "increase_in_confidence_pct": 100 * 1 / 2,
            "complexity": None,  # computed, over no map
            "sparseness": None,
        }
    )
    assert set(summarize(_lines(), "gradcam", faithfulness=False)) == {
        "top1_cls_error",
        "top5_cls_error",
        "top1_loc_error",
        "top5_loc_error",
        "gt_known_loc_accuracy",
        "pointing_game",
        "energy_pointing_game",
        "complexity",
        "sparseness",
    }  # not asked for: absent, not None
    assert summarize(_lines(), "layercam", faithfulness=False)["pointing_game"] == 0.0
    nothing = summarize(_lines(), "scorecam", faithfulness=True)  # computed over nothing: None
    assert set(nothing.values()) == {None}


def _doc(explanations: list[dict]) -> dict:
    """A 64×64 image seen whole by a 32×32 model input."""
    return {
        "status": "ok",
        "source": {"path": "x.png", "width": 64, "height": 64},
        "model": {"input_size": [32, 32]},
        "preprocess": {"resized_size": [32, 32], "crop_box": [0.0, 0.0, 64.0, 64.0]},
        "predictions": [{"class_index": 1, "label": "one"}, {"class_index": 0, "label": "zero"}],
        "explanations": explanations,
    }


def test_input_size_is_checked_before_anything_is_allocated():
    assert input_size(_doc([])) == (32, 32)
    for size in ([224, 100_000], [4, 224]):
        with pytest.raises(ValueError, match="is outside 8 to 4096 pixels"):
            input_size({**_doc([]), "model": {"input_size": size}})
    for broken in ({}, {**_doc([]), "model": {"input_size": [224]}}, {**_doc([]), "model": {"input_size": None}}):
        with pytest.raises((ValueError, KeyError, TypeError)):  # not camcli's record
            input_size(broken)


def test_heat_methods_are_the_ones_with_maps():
    docs = [
        _doc([{"method": "gradcam", "class_index": 1, "files": {}}, {"method": "saliency", "class_index": 1}]),
        _doc([{"method": "layercam", "class_index": 1, "files": {}}, {"method": "gradcam", "class_index": 0}]),
    ]
    images = [Image(PurePosixPath(f"{i}.png"), Path("."), doc, (), Path("x.png")) for i, doc in enumerate(docs)]
    assert heat_methods(images) == ["gradcam", "layercam"]
    pixel_doc = _doc([{"method": "guided-backprop", "class_index": 1}])
    pixel_only = [Image(PurePosixPath("p.png"), Path("."), pixel_doc, (), Path("x.png"))]
    with pytest.raises(CamcliError, match="no heat-map explanation to evaluate"):
        heat_methods(pixel_only)


def test_one_image_scored_against_an_independent_computation(tmp_path):
    raw = np.zeros((8, 8), np.float32)
    raw[1:3, 1:4] = 1.0  # a blob in the top-left quadrant
    raw[2, 2] = 3.0
    raw[6, 6] = 0.5  # a weaker, separate segment
    np.save(tmp_path / "gradcam_1_raw.npy", raw)
    np.save(tmp_path / "gradcam_0_raw.npy", np.zeros((8, 8), np.float32))  # no evidence for class 0
    doc = _doc(
        [
            {"method": "gradcam", "class_index": 1, "peak": [22, 22], "files": {"raw_map": "gradcam_1_raw.npy"}},
            {"method": "gradcam", "class_index": 0, "peak": None, "files": {"raw_map": "gradcam_0_raw.npy"}},
        ]
    )
    truth = (6.0, 6.0, 34.0, 28.0)
    image = Image(PurePosixPath("x.png"), tmp_path, doc, ((1, GroundTruthObject("one", box=truth)),), Path("x.png"))

    heat = input_heat(image, doc["explanations"][0])
    np.testing.assert_allclose(heat, independent.upsample(raw, (32, 32)), atol=1e-6)  # not rescaled
    assert input_heat(image, {"method": "gradcam", "files": {}}) is None

    lines: dict = {}
    score_method([image], "gradcam", lines, loc_threshold=0.15, tolerance=15.0, max_pixels=10**8)
    line = lines["x.png"]
    found = line["methods"]["gradcam"]

    mask = (heat >= 0.15 * heat.max()).astype(np.uint8)  # the paper's box, found independently
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h = (int(v) for v in stats[largest, :4])
    box = independent.box_on_original((x, y, x + w, y + h), doc)
    overlap = max(0, min(box[2], truth[2]) - max(box[0], truth[0])) * max(
        0, min(box[3], truth[3]) - max(box[1], truth[1])
    )
    union = (box[2] - box[0]) * (box[3] - box[1]) + (truth[2] - truth[0]) * (truth[3] - truth[1]) - overlap
    full = independent.full_map(raw, doc)
    energy = full[6:28, 6:34].sum() / full.sum()
    assert found["by_class"] == {
        "1": {"pointing_hit": True, "energy": pytest.approx(energy), "iou": pytest.approx(overlap / union)}
    }
    assert found["class"] == 1
    assert line["pointing_hit"] is True
    assert overlap / union > 0.5
    assert found["localization"] == {
        "top1_cls": True,
        "top5_cls": True,
        "boxes": True,
        "top1_loc": overlap / union >= 0.5,
        "top5_loc": overlap / union >= 0.5,
        "gt_known": [overlap / union >= 0.5],
    }


def test_optional_measures_summarized_from_the_lines():
    a, b = {"path": "a.png", "methods": {}}, {"path": "b.png", "methods": {}}
    record(a, "gradcam", {"1": {"road_morf": -0.4, "road_lerf": -0.1, "road_combined": 0.15}})
    record(a, "gradcam", {"1": {"occlusion_correlation": 0.5, "complexity": 2.0, "sparseness": 0.5}})
    record(b, "gradcam", {"2": {"road_morf": -0.2, "road_lerf": 0.0, "road_combined": 0.1}})
    record(b, "gradcam", {"2": {"occlusion_correlation": None, "complexity": 4.0, "sparseness": None}})
    found = summarize([a, b], "gradcam", faithfulness=False, road=True, occlusion_correlation=True)
    assert {k: found[k] for k in ("road_morf", "road_lerf", "road_combined")} == pytest.approx(
        {"road_morf": -0.3, "road_lerf": -0.05, "road_combined": 0.125}
    )
    assert found["occlusion_correlation"] == 0.5  # a constant map has no ranking: left out, not 0
    assert (found["complexity"], found["sparseness"]) == (3.0, 0.5)
    assert "road_morf" not in summarize([a, b], "gradcam", faithfulness=False)


def test_cam_mult_and_arcc_summarized_from_the_lines():
    a, b = {"path": "a.png", "methods": {}}, {"path": "b.png", "methods": {}}
    record(a, "gradcam", {"1": {"cam_mult_change": -0.3}, "2": {"cam_mult_change": 0.1}})
    record(b, "gradcam", {"2": {"cam_mult_change": -0.1}})
    arcc = {"arcc": 0.6, "arcc_complexity": 0.2, "arcc_coherency": 0.9, "road_combined": 0.7}
    record(a, "gradcam", {"1": arcc})
    record(b, "gradcam", {"2": {**arcc, "arcc": 0.2, "arcc_coherency": 0.5, "road_combined": 0.1}})
    found = summarize([a, b], "gradcam", faithfulness=False, cam_mult_image=True, arcc=True)
    assert {k: found[k] for k in found if k.startswith(("cam_mult", "arcc"))} == pytest.approx(
        {
            "cam_mult_confidence_change": -0.1,
            "cam_mult_drop_in_confidence": 0.4 / 3,  # absolute drops, the rise counts 0
            "cam_mult_increase_in_confidence": 1 / 3,
            "arcc": 0.4,
            "arcc_complexity": 0.2,
            "arcc_coherency": 0.7,
            "arcc_road": 0.6,  # ARCC's terms: 2 × combined clipped, (1 + 0.2) / 2
        }
    )
    assert "road_combined" not in found  # ARCC's ROAD is not --road's report
    plain = summarize([a, b], "gradcam", faithfulness=False)
    assert not any(k.startswith(("cam_mult", "arcc")) for k in plain)


def _quantus(metric: str, heat: np.ndarray) -> float:
    import quantus

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Quantus announces its settings
        found = getattr(quantus, metric)(disable_warnings=True, display_progressbar=False)(
            model=None,
            x_batch=np.zeros((1, 3, *heat.shape), np.float32),
            y_batch=np.zeros(1, int),
            a_batch=heat[None, None].astype(np.float32),
        )
    return float(found[0])


def test_map_statistics_of_the_maps_at_model_input_resolution(tmp_path):
    """Complexity and sparseness of the raw map upsampled to the model input (as the other metrics read
    it), for the ground-truth classes, else the top-1 class; equal to Quantus's on that map."""
    rng = np.random.default_rng(3)
    raws = {cls: rng.random((7, 7)).astype(np.float32) for cls in (0, 1)}
    for cls, raw in raws.items():
        np.save(tmp_path / f"gradcam_{cls}_raw.npy", raw)
    doc = _doc([{"method": "gradcam", "class_index": c, "files": {"raw_map": f"gradcam_{c}_raw.npy"}} for c in (0, 1)])
    annotated = Image(PurePosixPath("a.png"), tmp_path, doc, ((0, GroundTruthObject("zero")),), Path("a.png"))
    plain = Image(
        PurePosixPath("b.png"), tmp_path, {**doc, "source": {**doc["source"], "path": "b.png"}}, (), Path("b.png")
    )
    assert (scored_classes(annotated), scored_classes(plain)) == ((0,), (1,))  # ground truth, else top-1
    lines: dict = {}
    assert map_statistics([annotated, plain], "gradcam", lines) == {}
    for image, cls in ((annotated, 0), (plain, 1)):
        values = lines[image.path]["methods"]["gradcam"]["by_class"]
        assert list(values) == [str(cls)]
        heat = independent.upsample(raws[cls], (32, 32))
        assert values[str(cls)]["complexity"] == pytest.approx(_quantus("Complexity", heat), abs=1e-4)
        assert values[str(cls)]["sparseness"] == pytest.approx(_quantus("Sparseness", heat), abs=1e-4)

    np.save(tmp_path / "gradcam_1_raw.npy", np.ones(3, np.float32))  # not a map
    assert list(map_statistics([plain], "gradcam", {})) == ["b.png"]
