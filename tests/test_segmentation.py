"""Segmentation models: the class target against pytorch-grad-cam's ``SemanticSegmentationTarget`` on
torchvision's FCN and LR-ASPP; a segmentation model of the user's trained here on synthetic pictures
(a bright square and a disc on clutter) whose maps must find the right object; the outputs (mask PNG,
areas), the default layer, --task, and what is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from conftest import corr, explain_tensors, hook_counts
from PIL import Image
from pytorch_grad_cam import GradCAM, HiResCAM, LayerCAM, SegEigenCAM
from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget
from torch import nn

from camcli.api import Explainer
from camcli.errors import CamcliError
from camcli.heads import Head
from camcli.layers import default_layer, probe_layers
from camcli.models import DataConfig, load_model

SEGMENT = Head("softmax", "segment")
SAMPLE = Path(__file__).resolve().parent.parent / "sample_images" / "chelsea.png"


def _torchvision(name: str, classes: int = 5) -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, weights_backbone=None, num_classes=classes).eval()
    for m in model.modules():  # spread the class logits so that several classes are predicted
        if isinstance(m, nn.Conv2d) and m.out_channels == classes:
            nn.init.normal_(m.weight, std=0.5)
            nn.init.zeros_(m.bias)
    return model


class Logits(nn.Module):
    """torchvision's segmentation output ({"out": ...}) as a tensor, for pytorch-grad-cam."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)["out"]


@pytest.mark.parametrize(
    ("name", "layer"), [("fcn_resnet50", "backbone.layer4"), ("lraspp_mobilenet_v3_large", "backbone.16")]
)
def test_maps_match_pytorch_grad_cam_semantic_segmentation_target(name, layer):
    model = _torchvision(name)
    torch.manual_seed(1)
    x = torch.randn(2, 3, 96, 96)
    before = hook_counts(model)
    out = explain_tensors(model, None, x, ["gradcam", "hirescam", "layercam", "segeigencam"], k=2, head=SEGMENT)
    assert hook_counts(model) == before
    with torch.no_grad():
        predicted = model(x)["out"].argmax(dim=1)
    assert out.prediction is not None
    assert torch.equal(out.prediction, predicted)
    areas = torch.stack([(predicted == c).sum(dim=(1, 2)) for c in range(5)], dim=1)
    assert torch.equal(out.ranking, areas.float())
    assert torch.equal(out.classes, areas.topk(2, dim=1).indices)
    assert (areas.gather(1, out.classes) > 0).all(), "the test wants two predicted classes per image"
    wrapped = Logits(model)
    target = dict(wrapped.named_modules())[f"inner.{layer}"]
    oracles = (("gradcam", GradCAM), ("hirescam", HiResCAM), ("layercam", LayerCAM), ("segeigencam", SegEigenCAM))
    for method, kind in oracles:
        _assert_agrees(kind, wrapped, target, x, predicted, out, method)


def _assert_agrees(kind, model, layer, x, predicted, out, method) -> None:
    """camcli's maps of ``method`` against pytorch-grad-cam's ``kind`` with ``SemanticSegmentationTarget``
    and the predicted masks, class column by class column (its API takes one target per image)."""
    with kind(model=model, target_layers=[layer]) as cam:
        for j in range(out.classes.shape[1]):
            targets = [
                SemanticSegmentationTarget(int(c), (predicted[b] == c).float().numpy())
                for b, c in enumerate(out.classes[:, j])
            ]
            ref = cam(input_tensor=x, targets=targets)
            for b in range(x.shape[0]):
                assert ref[b].max() > 0, (method, b, j)  # two empty maps would agree vacuously
                assert corr(out.maps[method].display[b, j], ref[b]) >= 0.99, (method, b, j)


def test_smp_unet_matches_pytorch_grad_cam_and_runs_from_the_command_line(run_cli, tmp_path):
    loaded = load_model("smp:Unet:resnet18", num_classes=4, random_weights=True)
    model = loaded.model
    assert loaded.head.task == "segment"
    assert loaded.data.input_size == (512, 512)
    torch.manual_seed(0)  # pytest-randomly seeds each test anew: the spread head must not depend on it
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.out_channels == 4:
            nn.init.normal_(m.weight, std=0.5)
    torch.manual_seed(2)
    x = torch.randn(2, 3, 128, 128)
    out = explain_tensors(model, None, x, ["gradcam"], k=2, head=SEGMENT)
    with torch.no_grad():
        predicted = model(x).argmax(dim=1)
    assert (out.ranking.gather(1, out.classes) > 0).all()
    _assert_agrees(GradCAM, model, model.encoder.layer4, x, predicted, out, "gradcam")  # camcli's default layer
    torch.save(model.state_dict(), tmp_path / "unet.pth")
    spec = ["-m", "smp:Unet:resnet18", "--num-classes", "4", "--input-size", "128"]
    result = run_cli("explain", SAMPLE, *spec, "--weights", tmp_path / "unet.pth", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "out" / "chelsea.png" / "explanation.json").read_text())
    assert doc["model"]["target_layer"] == "encoder.layer4"
    assert doc["segmentation"]["areas"]
    unsized = run_cli("explain", SAMPLE, "-m", "smp:Unet:resnet18", "--random-weights", "-o", tmp_path / "a")
    assert unsized.exit_code == 2
    assert "--num-classes" in unsized.output
    misspelt = run_cli("explain", SAMPLE, "-m", "smp:Unet:resnet81", "--num-classes", "4", "-o", tmp_path / "b")
    assert misspelt.exit_code == 2
    assert "resnet18" in misspelt.output


def test_default_layer_is_the_end_of_the_encoder():
    for name, expected in (("fcn_resnet50", "backbone.layer4"), ("lraspp_mobilenet_v3_large", "backbone.16")):
        infos = probe_layers(_torchvision(name), (64, 64))
        assert default_layer(infos, "segment").name == expected
        assert default_layer(infos).name != expected  # a classifier's rule would take the decoder's output
    torch.manual_seed(0)
    plain = probe_layers(Planted(), (64, 64))  # no backbone or encoder: the coarsest grid, last, not logits
    assert default_layer(plain, "segment").name == "classifier.1"


# A segmentation model of the user's, trained in the test: class 1 a bright square, class 2 a disc,
# class 0 the cluttered background.
FACTORY = """
import torch
from torch import nn


class Planted(nn.Module):
    def __init__(self, num_classes=3):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU(),
        )
        self.classifier = nn.Sequential(
            nn.Conv2d(32, 32, 3, padding=2, dilation=2), nn.ReLU(), nn.Conv2d(32, num_classes, 1)
        )

    def forward(self, x):
        logits = self.classifier(self.features(x))
        return nn.functional.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def build(num_classes=3):
    return Planted(num_classes)
"""
namespace: dict[str, object] = {}
exec(FACTORY, namespace)
Planted = namespace["Planted"]


def _picture(rng: np.random.Generator, size: int = 64) -> tuple[np.ndarray, np.ndarray, dict[str, tuple[int, int]]]:
    """An RGB picture of clutter with a bright square and a disc that do not overlap, its labels, and the
    objects' centres (x, y)."""
    image = rng.uniform(0.0, 0.45, (size, size, 3))
    labels = np.zeros((size, size), dtype=np.int64)
    yy, xx = np.mgrid[:size, :size]
    while True:
        sx, sy, dx, dy = rng.integers(10, size - 10, 4)
        if max(abs(sx - dx), abs(sy - dy)) > 20:
            break
    square = (abs(xx - sx) <= 7) & (abs(yy - sy) <= 7)
    disc = (xx - dx) ** 2 + (yy - dy) ** 2 <= 8**2
    image[square] = (0.95, 0.95, 0.2)
    image[disc] = (0.95, 0.95, 0.2)  # the same colour: only the shape tells them apart
    labels[square], labels[disc] = 1, 2
    return image.astype(np.float32), labels, {"square": (int(sx), int(sy)), "disc": (int(dx), int(dy))}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """The factory file, the trained weights, and a folder of test pictures with their object centres."""
    root = tmp_path_factory.mktemp("planted")
    (root / "planted_seg.py").write_text(FACTORY)
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    model = Planted()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    mean, std = torch.tensor([0.485, 0.456, 0.406])[:, None, None], torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    for _ in range(250):
        batch = [_picture(rng) for _ in range(16)]
        x = (torch.from_numpy(np.stack([b[0] for b in batch])).permute(0, 3, 1, 2) - mean) / std
        y = torch.from_numpy(np.stack([b[1] for b in batch]))
        loss = nn.functional.cross_entropy(model(x), y, weight=torch.tensor([0.2, 1.0, 1.0]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.save(model.state_dict(), root / "planted.pth")
    images = root / "images"
    images.mkdir()
    centres = {}
    for i in range(4):
        image, truth, where = _picture(rng)
        Image.fromarray((image * 255).round().astype(np.uint8)).save(images / f"p{i}.png")
        centres[f"p{i}.png"] = where
        for index, name in ((1, "square"), (2, "disc")):  # ground truth for camcli evaluate --masks
            (root / "masks" / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(((truth == index) * 255).astype(np.uint8)).save(root / "masks" / name / f"p{i}.png")
    (root / "labels.txt").write_text("background\nsquare\ndisc\n")
    return root, centres


def test_planted_model_maps_find_the_object_of_their_class(planted, run_cli, tmp_path, monkeypatch):
    root, centres = planted
    monkeypatch.syspath_prepend(str(root))
    out = tmp_path / "out"
    args = ["-m", "planted_seg:build", "--weights", root / "planted.pth", "--labels", root / "labels.txt"]
    common = ["--input-size", "64", "--crop-pct", "1", "--class", "square", "--class", "disc", "--top-k", "0"]
    result = run_cli("explain", root / "images", *args, *common, "-o", out, "--method", "gradcam,eigencam")
    assert result.exit_code == 0, result.output
    for name, where in centres.items():
        doc = json.loads((out / name / "explanation.json").read_text())
        assert doc["model"]["task"] == "segment"
        assert doc["model"]["target_layer"] == "classifier.1"
        areas = {a["label"]: a for a in doc["segmentation"]["areas"]}
        assert set(areas) == {"background", "square", "disc"}, areas
        assert 0.03 < areas["square"]["share"] < 0.09
        assert 0.03 < areas["disc"]["share"] < 0.09
        assert sum(a["pixels"] for a in areas.values()) == 64 * 64
        assert doc["segmentation"]["file"] == "segmentation.png"
        with Image.open(out / name / "segmentation.png") as picture:
            assert picture.mode == "P"
            mask = np.asarray(picture)
        for label, index in (("square", 1), ("disc", 2)):
            x, y = where[label]
            assert mask[y, x] == index
            for entry in doc["explanations"]:
                if entry["label"] == label and entry["method"] == "gradcam":
                    heat = np.load(out / name / entry["files"]["raw_map"])
                    other = where["disc" if label == "square" else "square"]
                    # the raw map's grid is 16×16 (stride 4): its value at the object beats that at the other
                    assert heat[y // 4, x // 4] > heat[other[1] // 4, other[0] // 4], (name, label)
                    px, py = entry["peak"]
                    assert max(abs(px - x), abs(py - y)) <= 12, (name, label, entry["peak"], where)


def test_python_api_on_a_segmentation_module(planted):
    root, centres = planted
    model = Planted()
    model.load_state_dict(torch.load(root / "planted.pth", weights_only=True))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = DataConfig((64, 64), (64, 64), "bilinear", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    explainer = Explainer(model, labels=["background", "square", "disc"], data=data, methods=["gradcam"])
    assert explainer.loaded.head.task == "segment"
    [result] = explainer.explain(root / "images" / "p0.png", classes=["square"])
    assert result.segmentation is not None
    assert result.segmentation.shape == (64, 64)
    x, y = centres["p0.png"]["square"]
    assert result.segmentation[y, x] == 1
    assert result.record["model"]["task"] == "segment"
    assert result.record["segmentation"]["areas"][0]["label"] == "background"
    assert "file" not in result.record["segmentation"]
    square = result.get("gradcam", 1)
    assert max(abs(square.peak[0] - x), abs(square.peak[1] - y)) <= 12
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_task_option_and_what_segmentation_refuses(planted, run_cli, tmp_path, monkeypatch):
    root, _ = planted
    monkeypatch.syspath_prepend(str(root))
    spec = ["-m", "planted_seg:build", "--weights", root / "planted.pth", "--input-size", "64"]
    wrong = run_cli("explain", root / "images", *spec, "--task", "classify", "-o", tmp_path / "a")
    assert wrong.exit_code == 2
    assert "--task classify" in wrong.output
    assert "--task segment" in wrong.output
    binary = run_cli("explain", root / "images", *spec, "--head", "sigmoid", "-o", tmp_path / "b")
    assert binary.exit_code == 2
    assert "one class per pixel" in binary.output
    scorecam = run_cli("explain", root / "images", *spec, "--method", "scorecam", "-o", tmp_path / "c")
    assert scorecam.exit_code == 2
    assert "segmentation" in scorecam.output
    with pytest.raises(CamcliError, match="--task classify"):
        load_model("tv:lraspp_mobilenet_v3_large", random_weights=True, task="classify")
    masks = ["--masks", root / "masks", "--class-map", root / "class_map.csv"]
    (root / "class_map.csv").write_text("source,target\nsquare,1\ndisc,2\n")
    faithful = run_cli("evaluate", root / "images", *spec, *masks, "--faithfulness", "-o", tmp_path / "d")
    assert faithful.exit_code == 2
    assert "segmentation model" in faithful.output


def test_evaluate_scores_segmentation_maps_against_masks(planted, run_cli, tmp_path, monkeypatch):
    """Pointing game and energy inside the ground-truth mask of each class, the maps of a trained model."""
    root, _ = planted
    monkeypatch.syspath_prepend(str(root))
    spec = ["-m", "planted_seg:build", "--weights", root / "planted.pth", "--labels", root / "labels.txt"]
    out = tmp_path / "ev"
    common = ["--input-size", "64", "--crop-pct", "1", "--method", "gradcam"]
    result = run_cli("evaluate", root / "images", *spec, *common, "--masks", root / "masks", "-o", out)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["annotated"] == 4
    m = doc["methods"]["gradcam"]
    assert m["pointing_game"]["accuracy"] == 1.0
    assert m["energy_pointing_game"] > 0.15, m  # each object covers about 5% of its picture (0.31 measured)
