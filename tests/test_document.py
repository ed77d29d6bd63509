"""camcli.evaluate.document: metrics.json from the images' per_image.jsonl lines, laid out as README documents
it (each method's metrics nested: localization.top1_loc_error, pointing_game.accuracy, ...), with the
protocol and the gates' verdicts."""

from __future__ import annotations

import json

import pytest

from camcli.evaluate.document import Counts, Settings, metrics_doc, nest
from camcli.evaluate.gates import parse_gate
from camcli.evaluate.scoring import record

OUTCOMES = {"top1_cls": True, "top5_cls": True, "boxes": True, "top1_loc": True, "top5_loc": True, "gt_known": [True]}
MISSED = {"top1_cls": False, "top5_cls": True, "boxes": True, "top1_loc": False, "top5_loc": False, "gt_known": [False]}


def _lines() -> list[dict]:
    lines = []
    for path, hit, energy, outcomes in (("a.png", True, 0.9, OUTCOMES), ("b.png", False, 0.3, MISSED)):
        line = {"path": path, "methods": {}}
        for method in ("gradcam", "layercam"):
            record(line, method, {"1": {"pointing_hit": hit, "energy": energy, "iou": 0.6}})
            record(line, method, {"1": {"deletion_auc": 0.25, "insertion_auc": 0.75}})
            record(line, method, {"1": {"confidence": 0.8, "confidence_masked": 0.6}})
            line["methods"][method]["localization"] = outcomes
        lines.append(line)
    return lines


SANITY = [{"step": "head", "spearman": 0.4, "spearman_abs": 0.5}]


def test_nest_follows_the_documented_paths():
    assert nest({"top1_loc_error": 0.5, "pointing_game": 0.25, "average_drop_pct": 3.0, "top1_cls_error": 0.1}) == {
        "localization": {"top1_loc_error": 0.5},
        "pointing_game": {"accuracy": 0.25},
        "average_drop": 3.0,
        "classification": {"top1_cls_error": 0.1},
    }


def test_metrics_json_layout_values_and_gates():
    settings = Settings(
        faithfulness=True,
        steps=20,
        gates=(parse_gate("max-loc-error", 0.4), parse_gate("min-pointing-game", "layercam:0.5")),
        methods=("gradcam", "layercam"),
        extra={"gradcam": SANITY},
    )
    doc, gates = metrics_doc(settings, _lines(), Counts(images=3, annotated=2, failed=1, unmatched=("x.csv line 9",)))
    assert doc["schema_version"] == 2
    assert (doc["images"], doc["annotated"], doc["failed"], doc["unreadable"]) == (3, 2, 1, 0)
    assert doc["unmatched_annotations"] == ["x.csv line 9"]
    assert doc["source_changed"] == []
    assert doc["classification"] == {"top1": 0.5, "top5": 1.0}
    assert doc["methods"]["gradcam"] == {
        "classification": {"top1_cls_error": 0.5, "top5_cls_error": 0.0},
        "localization": {
            "top1_loc_error": 0.5,
            "top5_loc_error": 0.5,
            "gt_known_loc_accuracy": 0.5,
            "threshold": 0.15,
            "iou": 0.5,
        },
        "pointing_game": {"accuracy": 0.5, "tolerance_px": 15.0},
        "energy_pointing_game": pytest.approx(0.6),
        "deletion_auc": 0.25,
        "insertion_auc": 0.75,
        "average_drop": pytest.approx(25.0),
        "increase_in_confidence": 0.0,
        "complexity": None,  # always computed: these lines hold no map's
        "sparseness": None,
        "sanity": SANITY,
    }
    assert "sanity" not in doc["methods"]["layercam"]
    assert [(g["name"], g["method"], g["value"], g["passed"]) for g in gates] == [
        ("max-loc-error", "gradcam", 0.5, False),
        ("max-loc-error", "layercam", 0.5, False),
        ("min-pointing-game", "layercam", 0.5, True),
    ]
    assert doc["gates"] == gates
    assert doc["passed"] is False
    protocol = doc["protocol"]
    assert protocol["localization"] == {"threshold": 0.15, "segment": "largest 8-connected", "iou": 0.5}
    assert protocol["faithfulness"]["steps"] == 20
    assert protocol["sanity"]["images"] == 8
    json.dumps(doc, allow_nan=False)


def test_not_asked_for_is_left_out_and_nothing_annotated_never_passes():
    settings = Settings(gates=(parse_gate("min-pointing-game", 0.0),), methods=("gradcam",))
    doc, gates = metrics_doc(settings, [], Counts(images=4))
    assert set(doc["methods"]["gradcam"]) == {
        "classification",
        "localization",
        "pointing_game",
        "energy_pointing_game",
        "complexity",
        "sparseness",
    }
    assert doc["methods"]["gradcam"]["pointing_game"] == {"accuracy": None, "tolerance_px": 15.0}
    assert doc["classification"] == {"top1": None, "top5": None}
    assert "faithfulness" not in doc["protocol"]
    assert "sanity" not in doc["protocol"]
    assert "road" not in doc["protocol"]
    assert "occlusion_correlation" not in doc["protocol"]
    assert gates[0]["passed"] is False
    assert gates[0]["reason"] == "no image matched the annotations"
    assert doc["passed"] is False


def test_settings_travel_with_a_shard():
    settings = Settings(0.2, 10.0, True, 30, (parse_gate("min-energy", "gradcam:0.5"),), ("gradcam",))
    described = json.loads(json.dumps(settings.describe()))
    assert described["gates"] == [["min-energy", "gradcam", 0.5]]
    assert Settings.of(described) == settings
    asked = Settings(
        road=True,
        road_percentiles=(25.0, 50.0),
        occlusion_correlation=True,
        correlation_window=8,
        correlation_stride=4,
        gates=(parse_gate("min-road-combined", "-0.5"),),
    )
    assert Settings.of(json.loads(json.dumps(asked.describe()))) == asked
    more = Settings(cam_mult_image=True, arcc=True, gates=(parse_gate("min-arcc", "gradcam:0.3"),))
    assert Settings.of(json.loads(json.dumps(more.describe()))) == more


def test_road_and_occlusion_correlation_nested_with_their_protocol():
    line = {"path": "a.png", "methods": {}}
    values = {"road_morf": -0.5, "road_lerf": -0.1, "road_combined": 0.2, "occlusion_correlation": 0.7}
    record(line, "gradcam", {"1": {**values, "complexity": 3.0, "sparseness": 0.4}})
    settings = Settings(
        methods=("gradcam",),
        road=True,
        road_percentiles=(20.0, 80.0),
        occlusion_correlation=True,
        correlation_window=8,
        correlation_stride=4,
        gates=(parse_gate("min-road-combined", 0.3), parse_gate("min-occlusion-correlation", 0.5)),
    )
    doc, gates = metrics_doc(settings, [line], Counts(images=1, annotated=1))
    entry = doc["methods"]["gradcam"]
    assert entry["road"] == {"morf": -0.5, "lerf": -0.1, "combined": 0.2}
    assert (entry["occlusion_correlation"], entry["complexity"], entry["sparseness"]) == (0.7, 3.0, 0.4)
    assert [(g["name"], g["passed"]) for g in gates] == [
        ("min-road-combined", False),
        ("min-occlusion-correlation", True),
    ]
    protocol = doc["protocol"]
    assert protocol["road"]["percentiles"] == [20.0, 80.0]
    assert "noisy linear" in protocol["road"]["imputation"]
    assert (protocol["occlusion_correlation"]["window"], protocol["occlusion_correlation"]["stride"]) == (8, 4)
    assert protocol["complexity"].startswith("Quantus Complexity")
    json.dumps(doc, allow_nan=False)


def test_cam_mult_and_arcc_nested_with_their_protocol():
    line = {"path": "a.png", "methods": {}}
    arcc = {"arcc": 0.4, "arcc_complexity": 0.3, "arcc_coherency": 0.8, "road_combined": 0.1}
    record(line, "gradcam", {"1": {"cam_mult_change": -0.25, **arcc}})
    settings = Settings(methods=("gradcam",), cam_mult_image=True, arcc=True, gates=(parse_gate("min-arcc", 0.5),))
    doc, gates = metrics_doc(settings, [line], Counts(images=1, annotated=1))
    entry = doc["methods"]["gradcam"]
    assert entry["cam_mult_image"] == {
        "confidence_change": -0.25,
        "drop_in_confidence": 0.25,
        "increase_in_confidence": 0.0,
    }
    assert entry["arcc"] == pytest.approx({"value": 0.4, "complexity": 0.3, "coherency": 0.8, "road": 0.2})
    assert "road" not in entry
    assert [(g["name"], g["value"], g["passed"]) for g in gates] == [("min-arcc", 0.4, False)]
    protocol = doc["protocol"]
    assert "normalized model input multiplied by the map" in protocol["cam_mult_image"]["perturbation"]
    assert "3 / (1 / (coherency + 1e-08)" in protocol["arcc"]["value"]
    assert "noisy linear" in protocol["road"]["imputation"]  # ARCC's ROAD, described once
    json.dumps(doc, allow_nan=False)
