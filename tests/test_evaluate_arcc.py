"""`camcli evaluate --cam-mult-image --arcc` end to end on a tiny model: every (image, class) value in
per_image.jsonl against pytorch-grad-cam's CamMultImageConfidenceChange, DropInConfidence,
IncreaseInConfidence and ARCC (its GradCAM on the same layer, its ROAD with the same noise) on the run's own
maps; the summary, the gate, config keys, refusals and stop requests."""

from __future__ import annotations

import json
import threading
import warnings
from pathlib import Path

import independent
import numpy as np
import pytest
import torch
from PIL import Image
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.metrics.arcc import ARCC, Coherency
from pytorch_grad_cam.metrics.cam_mult_image import (
    CamMultImageConfidenceChange,
    DropInConfidence,
    IncreaseInConfidence,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget
from test_evaluate_library_metrics import TINY

PERCENTILES = (20.0, 50.0, 80.0)
TARGETS = {"image0.png": (1, 3), "image1.png": (2,)}  # ground truth; image2 has none: its top-1 class


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("tiny")
    (root / "tiny.py").write_text(TINY)
    (root / "labels.txt").write_text("a\nb\nc\nd\n")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        pixels = (rng.random((8, 8, 3)) * 255).astype(np.uint8).repeat(4, 0).repeat(4, 1)  # 32×32, blocky
        Image.fromarray(pixels).save(images / f"image{i}.png")
    (root / "truth.csv").write_text(
        "path,class,x0,y0,x1,y1\nimages/image0.png,b,0,0,16,16\nimages/image0.png,d,8,8,32,32\n"
        "images/image1.png,c,4,4,20,28\n"
    )
    model = ["-m", f"{root / 'tiny.py'}:build", "--random-weights", "--labels", root / "labels.txt"]
    model += ["--input-size", "32", "--crop-pct", "1.0", "--mean", "0.4,0.5,0.6", "--std", "0.2,0.25,0.3"]
    model += ["--layer", "features", "--device", "cpu"]
    namespace: dict = {}
    exec(TINY, namespace)  # the same model, here, for the references
    return {"root": root, "images": images, "model": model, "net": namespace["build"]().eval()}


def _evaluate(tiny: dict, out: Path, run_cli, *extra: object):
    return run_cli(
        "evaluate",
        tiny["images"],
        "-q",
        *tiny["model"],
        "--annotations",
        tiny["root"] / "truth.csv",
        "-o",
        out,
        "--road-percentiles",
        ",".join(f"{p:g}" for p in PERCENTILES),
        *extra,
    )


def _pairs(tiny: dict, out: Path):
    """Each scored (image, class) of the run: its per_image.jsonl values, normalized input and map as the
    metrics read it (the raw map upsampled to the input, min-max scaled; computed here independently)."""
    mean, std = np.array([0.4, 0.5, 0.6]), np.array([0.2, 0.25, 0.3])
    for line in (out / "per_image.jsonl").read_text().splitlines():
        found = json.loads(line)
        name = Path(found["path"]).name
        pixels = np.asarray(Image.open(tiny["images"] / name), np.float64) / 255
        x = torch.from_numpy(((pixels - mean) / std).astype(np.float32)).permute(2, 0, 1)[None]
        explanation = json.loads((out / name / "explanation.json").read_text())
        classes = TARGETS.get(name, (explanation["predictions"][0]["class_index"],))
        assert sorted(found["methods"]["gradcam"]["by_class"]) == sorted(str(c) for c in classes)
        for cls in classes:
            entry = next(e for e in explanation["explanations"] if e["class_index"] == cls)
            raw = np.load(out / name / entry["files"]["raw_map"])
            cams = independent.min_max(independent.upsample(raw, (32, 32))).astype(np.float32)[None]
            yield found["methods"]["gradcam"]["by_class"][str(cls)], x, cams, cls


def _reference_arcc(net, x, cams, target) -> float:
    """pytorch-grad-cam's ARCC with its GradCAM on the same layer, ROAD's noise seeded as camcli seeds it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # scipy's solver, numpy's __array_wrap__
        with GradCAM(net, [net.features]) as cam:
            torch.manual_seed(0)
            return float(ARCC(cam, list(PERCENTILES))(x, cams, [target], net)[0])


def _reference_coherency(net, x, cams, target) -> float:
    with GradCAM(net, [net.features]) as cam:
        return float(Coherency()(x, cams, [target], net, cam)[0])


def test_cam_mult_and_arcc_equal_pytorch_grad_cam(tiny, tmp_path, run_cli):
    """With --score probability the maps explain the probability, so one ClassifierOutputSoftmaxTarget
    drives all of pytorch-grad-cam's ARCC (its GradCAM, its ROAD), and CamMult scores it too."""
    out = tmp_path / "out"
    (tmp_path / "c.toml").write_text("[evaluate]\ncam-mult-image = true\narcc = true\n[gates]\nmin-arcc = 0.05\n")
    result = _evaluate(tiny, out, run_cli, "--config", tmp_path / "c.toml", "--score", "probability")
    assert result.exit_code == 0, result.output
    for row in ("CamMult conf. change", "CamMult drop in conf.", "ARCC coherency", "ARCC"):
        assert row in result.output  # the table
    net = tiny["net"]
    seen: dict[str, list[float]] = {"change": [], "drop": [], "increase": [], "arcc": [], "coherency": []}
    for values, x, cams, cls in _pairs(tiny, out):
        targets = [ClassifierOutputSoftmaxTarget(cls)]
        change = float(CamMultImageConfidenceChange()(x, cams, targets, net)[0])
        drop = float(DropInConfidence()(x, cams, targets, net)[0])
        increase = float(IncreaseInConfidence()(x, cams, targets, net)[0])
        assert values["cam_mult_change"] == pytest.approx(change, abs=1e-4)
        assert (max(-values["cam_mult_change"], 0.0), float(values["cam_mult_change"] > 0)) == pytest.approx(
            (drop, increase), abs=1e-4
        )
        value = _reference_arcc(net, x, cams, targets[0])
        coherency = _reference_coherency(net, x, cams, targets[0])
        assert values["arcc"] == pytest.approx(value, abs=1e-4)
        assert values["arcc_coherency"] == pytest.approx(coherency, abs=1e-4)
        assert values["arcc_complexity"] == pytest.approx(float(np.abs(cams).mean()), abs=1e-6)
        for key, found in zip(seen, (change, drop, increase, value, coherency), strict=True):
            seen[key].append(found)
    assert len(seen["arcc"]) == 4
    assert np.ptp(seen["change"]) > 0.01  # the comparisons measure something
    assert np.ptp(seen["arcc"]) > 0.01

    doc = json.loads((out / "metrics.json").read_text())
    entry = doc["methods"]["gradcam"]
    assert entry["cam_mult_image"] == pytest.approx(
        {
            "confidence_change": np.mean(seen["change"]),
            "drop_in_confidence": np.mean(seen["drop"]),
            "increase_in_confidence": np.mean(seen["increase"]),
        },
        abs=1e-4,
    )
    assert entry["arcc"]["value"] == pytest.approx(np.mean(seen["arcc"]), abs=1e-4)
    assert entry["arcc"]["coherency"] == pytest.approx(np.mean(seen["coherency"]), abs=1e-4)
    assert set(entry["arcc"]) == {"value", "complexity", "coherency", "road"}
    assert "road" not in entry  # ARCC's ROAD is not --road's report
    assert [(g["name"], g["passed"]) for g in doc["gates"]] == [("min-arcc", True)]
    assert {"cam_mult_image", "arcc", "road"} <= set(doc["protocol"])  # ARCC's ROAD is described there


def test_arcc_with_logit_maps_and_road_computed_once(tiny, tmp_path, run_cli, monkeypatch):
    """With the default --score logit the coherency re-runs Grad-CAM on the logit (pytorch-grad-cam's
    ClassifierOutputTarget) while ROAD scores probabilities; with --road too, ARCC takes ROAD's values."""
    from camcli.evaluate import road

    calls = []
    real = road.road
    monkeypatch.setattr(road, "road", lambda *args, **kw: calls.append(args[3]) or real(*args, **kw))
    out = tmp_path / "out"
    result = _evaluate(tiny, out, run_cli, "--arcc", "--road", "--min-arcc", "gradcam:0.999")
    assert result.exit_code == 4, result.output
    assert "gate failed: --min-arcc 0.999 on gradcam" in result.output
    assert len(calls) == 4  # once per (image, class), for both
    terms = []
    for values, x, cams, cls in _pairs(tiny, out):
        coherency = _reference_coherency(tiny["net"], x, cams, ClassifierOutputTarget(cls))
        assert values["arcc_coherency"] == pytest.approx(coherency, abs=1e-4)
        terms.append(min(max(2 * values["road_combined"], 0.0), 1.0))
        parts = (values["arcc_coherency"], 1 - values["arcc_complexity"], terms[-1])
        assert values["arcc"] == pytest.approx(3 / sum(1 / (p + 1e-8) for p in parts))  # ARCC's harmonic mean
    entry = json.loads((out / "metrics.json").read_text())["methods"]["gradcam"]
    assert entry["arcc"]["road"] == pytest.approx(np.mean(terms))


def test_arcc_refuses_maps_made_otherwise(tiny, tmp_path, run_cli):
    """--from a run explained with --score probability, evaluated with the default score: the coherency would
    compare maps of two different scores, so it is a usage error naming the options."""
    run = tmp_path / "run"
    explained = run_cli("explain", tiny["images"], "-q", "-o", run, *tiny["model"], "--score", "probability")
    assert explained.exit_code == 0, explained.output
    result = run_cli(
        "evaluate", "--from", run, "-q", *tiny["model"], "--annotations", tiny["root"] / "truth.csv", "--arcc"
    )
    assert result.exit_code == 2, result.output
    assert "--arcc explains gradcam again" in result.output
    assert "'score': 'probability'" in result.output


def test_a_stop_request_ends_cam_mult_and_arcc_between_images(tiny, tmp_path, run_cli, monkeypatch):
    """Stopping: the image being scored is finished, no other is started; nothing is written."""
    from camcli.commands.evaluate import evaluate
    from camcli.errors import EXIT_INTERRUPTED
    from camcli.evaluate import metrics
    from camcli.evaluate.job import EvaluateJob
    from camcli.job import ExplainJob, ModelSpec, Preprocessing

    run = tmp_path / "run"
    explained = run_cli("explain", tiny["images"], "-q", "-o", run, *tiny["model"], "--top-k", "5")
    assert explained.exit_code == 0, explained.output
    preprocess = Preprocessing((32, 32), (0.4, 0.5, 0.6), (0.2, 0.25, 0.3), crop_pct=1.0)
    labels = tiny["root"] / "labels.txt"
    spec = ModelSpec(
        f"{tiny['root'] / 'tiny.py'}:build", labels_file=labels, random_weights=True, preprocess=preprocess
    )
    explain = ExplainJob(inputs=(run,), out=tmp_path / "eval", model=spec, layers=("features",), device="cpu", top_k=5)
    real = metrics.multiplied_by_map
    for option in ("cam_mult_image", "arcc"):
        stop, calls = threading.Event(), []

        def first_then_stop(*args, calls=calls, stop=stop):
            calls.append(1)
            stop.set()  # as SIGINT would, while this image is being scored
            return real(*args)

        monkeypatch.setattr(metrics, "multiplied_by_map", first_then_stop)
        job = EvaluateJob(explain, annotations=tiny["root"] / "truth.csv", source=run, **{option: True})
        assert evaluate(job, stop=stop).code == EXIT_INTERRUPTED
        assert len(calls) == 1, option
        assert not (tmp_path / "eval" / "metrics.json").exists()
