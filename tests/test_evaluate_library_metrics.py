"""`camcli evaluate --road --occlusion-correlation` end to end: the values in per_image.jsonl against the
references computed here from the run's own files (pytorch-grad-cam's ROAD on the same map, input, class
and noise; captum's Occlusion and scipy's Spearman), the gates on them, and stop requests between pairs."""

from __future__ import annotations

import json
import threading
import warnings
from pathlib import Path

import independent
import numpy as np
import pytest
import torch
from captum.attr import Occlusion
from PIL import Image
from pytorch_grad_cam.metrics.road import (
    ROADCombined,
    ROADLeastRelevantFirstAverage,
    ROADMostRelevantFirstAverage,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
from scipy.stats import spearmanr

TINY = '''
import torch
from torch import nn


class Tiny(nn.Module):
    """32×32 inputs, four classes; fixed random weights, each class's logit standardized over blocky random
    images (so no class saturates, and covering a part of the image moves the probabilities)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()
        )
        self.head = nn.Linear(8, 4)
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for param in self.parameters():
                param.copy_(torch.randn(param.shape, generator=generator))
            blocks = torch.rand(64, 3, 8, 8, generator=generator).repeat_interleave(4, 2).repeat_interleave(4, 3)
            logits = self.head(self.pooled(blocks))
            spread, middle = logits.std(dim=0), logits.mean(dim=0)
            self.head.weight.div_(spread[:, None])
            self.head.bias.sub_(middle).div_(spread)

    def pooled(self, x):
        return self.features(x).amax(dim=(2, 3))

    def forward(self, x):
        return self.head(self.pooled(x))


def build(num_classes=4):
    return Tiny()
'''
PERCENTILES = (20.0, 50.0, 80.0)
WINDOW, STRIDE = 8, 4


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
    # image0: two ground-truth classes; image1: one; image2: none (its top-1 class is scored)
    (root / "truth.csv").write_text(
        "path,class,x0,y0,x1,y1\nimages/image0.png,b,0,0,16,16\nimages/image0.png,d,8,8,32,32\n"
        "images/image1.png,c,4,4,20,28\n"
    )
    model = [
        "-m",
        f"{root / 'tiny.py'}:build",
        "--random-weights",
        "--labels",
        root / "labels.txt",
        "--input-size",
        "32",
        "--crop-pct",
        "1.0",
        "--mean",
        "0,0,0",
        "--std",
        "1,1,1",
        "--layer",
        "features",
        "--device",
        "cpu",
    ]
    namespace: dict = {}
    exec(TINY, namespace)  # the same model, here, for the references
    return {"root": root, "images": images, "model": model, "net": namespace["build"]().eval()}


def _run(tiny: dict, out: Path, run_cli, *extra: object):
    return run_cli(
        "evaluate",
        tiny["images"],
        "-q",
        *tiny["model"],
        "--annotations",
        tiny["root"] / "truth.csv",
        "-o",
        out,
        "--road",
        "--road-percentiles",
        ",".join(f"{p:g}" for p in PERCENTILES),
        "--occlusion-correlation",
        "--correlation-window",
        WINDOW,
        "--correlation-stride",
        STRIDE,
        *extra,
    )


def test_road_and_occlusion_correlation_equal_the_references(tiny, tmp_path, run_cli):
    out = tmp_path / "out"
    result = _run(tiny, out, run_cli, "--min-road-combined", "-1", "--min-occlusion-correlation", "gradcam:0.999")
    assert result.exit_code == 4, result.output  # the second gate fails: ρ = 0.999 would be a copy
    doc = json.loads((out / "metrics.json").read_text())
    verdicts = {g["name"]: (g["passed"], g["value"]) for g in doc["gates"]}
    assert verdicts["min-road-combined"][0] is True
    assert verdicts["min-occlusion-correlation"][0] is False
    assert doc["protocol"]["road"]["percentiles"] == list(PERCENTILES)
    assert doc["protocol"]["occlusion_correlation"]["window"] == WINDOW
    for name in ("ROAD combined", "occlusion corr.", "complexity", "sparseness"):
        assert name in result.output  # the table's rows

    model = tiny["net"]
    targets = {"image0.png": (1, 3), "image1.png": (2,)}
    lines = [json.loads(line) for line in (out / "per_image.jsonl").read_text().splitlines()]
    assert len(lines) == 3
    checked = {"road": [], "morf": [], "occlusion": []}
    for line in lines:
        name = Path(line["path"]).name
        x = torch.from_numpy(np.asarray(Image.open(tiny["images"] / name), np.float32) / 255).permute(2, 0, 1)
        explanation = json.loads((out / name / "explanation.json").read_text())
        classes = targets.get(name, (explanation["predictions"][0]["class_index"],))
        found = line["methods"]["gradcam"]["by_class"]
        assert sorted(found) == sorted(str(c) for c in classes)  # ground-truth classes, else the top-1
        for cls in classes:
            entry = next(e for e in explanation["explanations"] if e["class_index"] == cls)
            heat = independent.upsample(np.load(out / name / entry["files"]["raw_map"]), (32, 32))
            values = found[str(cls)]

            occlusion = Occlusion(model).attribute(
                x[None], target=cls, sliding_window_shapes=(3, WINDOW, WINDOW), strides=(3, STRIDE, STRIDE)
            )[0, 0]
            rho = spearmanr(heat.ravel(), occlusion.numpy().ravel()).statistic
            assert values["occlusion_correlation"] == pytest.approx(rho, abs=1e-4)
            checked["occlusion"].append(rho)

            cams = independent.min_max(heat).astype(np.float32)[None]
            road = [ClassifierOutputSoftmaxTarget(cls)]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # scipy's solver, numpy's __array_wrap__
                torch.manual_seed(0)
                combined = ROADCombined(list(PERCENTILES))(x[None], cams, road, model)[0]
                torch.manual_seed(0)
                lerf = ROADLeastRelevantFirstAverage(list(PERCENTILES))(x[None], cams, road, model)[0]
                morf = ROADMostRelevantFirstAverage(list(PERCENTILES))(x[None], cams, road, model)[0]
            assert values["road_combined"] == pytest.approx(float(combined), abs=1e-4)
            assert values["road_lerf"] == pytest.approx(float(lerf), abs=1e-4)
            assert values["road_morf"] == pytest.approx(float(morf), abs=1e-4)
            checked["road"].append(float(combined))
            checked["morf"].append(float(morf))
    assert len(checked["road"]) == 4
    assert max(np.abs(checked["morf"])) > 0.01  # the probabilities moved: the comparison measures something
    assert np.ptp(checked["occlusion"]) > 0.05
    entry = doc["methods"]["gradcam"]
    assert entry["road"]["combined"] == pytest.approx(np.mean(checked["road"]))
    assert entry["occlusion_correlation"] == pytest.approx(np.mean(checked["occlusion"]), abs=1e-4)


def test_an_occlusion_window_larger_than_the_input_is_refused_before_explaining(tiny, tmp_path, run_cli):
    out = tmp_path / "out"
    result = run_cli(
        "evaluate",
        tiny["images"],
        "-q",
        *tiny["model"],
        "--annotations",
        tiny["root"] / "truth.csv",
        "-o",
        out,
        "--occlusion-correlation",
        "--correlation-window",
        "40",
    )
    assert result.exit_code == 2
    assert "--correlation-window 40 is larger than the model input (32×32)" in result.output
    assert not list(out.glob("*/explanation.json"))


def test_a_stop_request_ends_road_between_two_pairs(tiny, tmp_path, run_cli, monkeypatch):
    """Stopping: ROAD finishes the (image, class) it is on and stops; nothing is written."""
    from camcli.commands.evaluate import evaluate
    from camcli.errors import EXIT_INTERRUPTED
    from camcli.evaluate import road
    from camcli.evaluate.job import EvaluateJob
    from camcli.job import ExplainJob, ModelSpec, Preprocessing

    out = tmp_path / "run"
    explained = run_cli("explain", tiny["images"], "-q", "-o", out, *tiny["model"], "--top-k", "5")
    assert explained.exit_code == 0, explained.output
    stop = threading.Event()
    calls = []
    real = road.road

    def first_then_stop(*args, **kwargs):
        calls.append(args[3])
        stop.set()  # as SIGINT would, while this pair is being computed
        return real(*args, **kwargs)

    monkeypatch.setattr(road, "road", first_then_stop)
    preprocess = Preprocessing((32, 32), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), crop_pct=1.0)
    labels = tiny["root"] / "labels.txt"
    spec = ModelSpec(
        f"{tiny['root'] / 'tiny.py'}:build", labels_file=labels, random_weights=True, preprocess=preprocess
    )
    job = EvaluateJob(
        ExplainJob(inputs=(out,), out=tmp_path / "eval", model=spec, layers=("features",), device="cpu", top_k=5),
        annotations=tiny["root"] / "truth.csv",
        source=out,
        road=True,
        road_percentiles=(50.0,),
    )
    result = evaluate(job, stop=stop)
    assert result.code == EXIT_INTERRUPTED
    assert len(calls) == 1
    assert not (tmp_path / "eval" / "metrics.json").exists()


@pytest.mark.slow
def test_road_and_occlusion_correlation_on_the_sample_images(samples, tmp_path, run_cli):
    """The bundled model on two sample images: every new metric in metrics.json, in its range."""
    out = tmp_path / "out"
    result = run_cli(
        "evaluate",
        samples / "chelsea.png",
        samples / "coffee.png",
        "--annotations",
        samples / "boxes.csv",
        "-o",
        out,
        "-q",
        "--road",
        "--road-percentiles",
        "30,70",
        "--occlusion-correlation",
        "--correlation-window",
        "56",
        "--correlation-stride",
        "56",
        "--min-sparseness",
        "0.01",
    )
    assert result.exit_code == 0, result.output
    entry = json.loads((out / "metrics.json").read_text())["methods"]["gradcam"]
    assert -1 <= entry["road"]["morf"] <= 0 <= entry["road"]["combined"] <= 1  # removing the evidence hurts
    assert 0 < entry["occlusion_correlation"] <= 1  # Grad-CAM agrees with occlusion on these
    assert 0 < entry["complexity"] < np.log(224 * 224)
    assert 0.01 < entry["sparseness"] < 1
