"""What the peers' own scenarios found (issue 26): the predictions list under a saturated softmax, both
smoothings at once, a default layer that only repeats one position, the perturbed forwards' own batch
and prompt stops, `.jfif` files, and the explained score (logit, probability, ReST) against
pytorch-grad-cam's targets."""

from __future__ import annotations

import json
import shutil
import signal
import time

import numpy as np
import pytest
import torch
from conftest import corr, explain_tensors
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import (
    ClassifierOutputReST,
    ClassifierOutputSoftmaxTarget,
    ClassifierOutputTarget,
)

from camcli.job import Preprocessing
from camcli.layers import default_layer, probe_layers
from camcli.models import load_model

from background import Background


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return load_model("resnet18", random_weights=True).model.eval()


def test_predictions_are_ranked_by_score_when_the_softmax_saturates(tmp_path, samples, run_cli):
    code = tmp_path / "saturated.py"
    code.write_text(
        "import torch\nfrom torch import nn\n\n\ndef build():\n"
        "    torch.manual_seed(3)\n"
        "    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),\n"
        "                          nn.Flatten(), nn.Linear(8, 40))\n"
        "    with torch.no_grad():\n"
        "        model[-1].weight.mul_(1e8)\n"
        "    return model\n"
    )
    out = tmp_path / "out"
    result = run_cli(
        "explain",
        samples / "chelsea.png",
        "-m",
        f"{code}:build",
        "--random-weights",
        "-o",
        out,
        "--top-k",
        "3",
        "-q",
        "--save",
        "raw_map",
    )
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "chelsea.png" / "explanation.json").read_text())
    logits = [p["logit"] for p in doc["predictions"]]
    assert logits == sorted(logits, reverse=True)  # never a class far down tied at probability 0
    top = [p["class_index"] for p in doc["predictions"]][:3]
    ranked = {e["rank"]: e["class_index"] for e in doc["explanations"]}
    assert [ranked[r] for r in (1, 2, 3)] == top


def test_aug_and_eigen_smoothing_together_average_the_eigen_maps_of_the_augmented_copies(resnet):
    """pytorch-grad-cam applies both: the eigen map of each of the six augmented copies (flips × 0.9, 1,
    1.1), flipped back, averaged. Its SVD sign is arbitrary per copy, so the composition is checked here
    against camcli's own eigen maps of the copies, each of which test_oracles checks against it."""
    from camcli.maps import input_map, min_max

    torch.manual_seed(4)
    x = torch.randn(1, 3, 64, 64)
    classes = torch.tensor([[1, 2]])
    both = explain_tensors(resnet, "layer3", x, ["layercam"], classes=classes, smooth="aug,eigen")
    copies = []
    for flip in (False, True):
        for factor in (0.9, 1.0, 1.1):
            copy = x * factor
            out = explain_tensors(
                resnet, "layer3", copy.flip(-1) if flip else copy, ["layercam"], classes=classes, smooth="eigen"
            )
            shown = input_map(out.maps["layercam"].raw, (64, 64))
            copies.append(shown.flip(-1) if flip else shown)
    expected = min_max(torch.stack(copies).mean(dim=0))
    torch.testing.assert_close(both.maps["layercam"].display, expected, atol=1e-5, rtol=1e-4)


def test_a_layer_that_repeats_one_position_is_no_default():
    loaded = load_model("tv:vgg11", random_weights=True, preprocess=Preprocessing(input_size=(32, 32)))
    infos = probe_layers(loaded.model, (32, 32))
    avgpool = next(i for i in infos if i.name == "avgpool")
    assert not avgpool.candidate
    assert "repeats one position" in avgpool.reason
    assert default_layer(infos).name == "features.19"  # the last real grid (2×2)


@pytest.mark.parametrize(
    ("score", "target"), [("probability", ClassifierOutputSoftmaxTarget), ("rest", ClassifierOutputReST)]
)
def test_the_explained_score_matches_pytorch_grad_cam_targets(resnet, score, target):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        classes = resnet(x).topk(2, dim=1).indices  # the classes whose maps are not empty
    out = explain_tensors(resnet, "layer4", x, ["gradcam"], classes=classes, score=score)
    assert out.params["gradcam"]["score"] == score
    compared = 0
    with GradCAM(model=resnet, target_layers=[resnet.layer4]) as cam:
        for j in range(2):
            ref = cam(input_tensor=x, targets=[target(int(c)) for c in classes[:, j]])
            for b in range(2):
                if np.ptp(ref[b]) > 0:
                    assert corr(out.maps["gradcam"].display[b, j], ref[b]) >= 0.99, (score, b, j)
                    compared += 1
    assert compared >= 2
    logit = explain_tensors(resnet, "layer4", x, ["gradcam"], classes=classes)
    assert "score" not in logit.params["gradcam"]  # the paper's logit, as before


def test_the_perturbation_batch_changes_no_number(resnet):
    torch.manual_seed(2)
    x = torch.randn(1, 3, 64, 64)
    one = explain_tensors(
        resnet, "layer1", x, ["scorecam", "occlusion"], k=2, batch_size=5, occlusion_window=16, occlusion_stride=16
    )
    many = explain_tensors(
        resnet, "layer1", x, ["scorecam", "occlusion"], k=2, batch_size=64, occlusion_window=16, occlusion_stride=16
    )
    for method in ("scorecam", "occlusion"):
        np.testing.assert_allclose(one.maps[method].raw, many.maps[method].raw, rtol=1e-4, atol=1e-5)
        assert "batch" not in json.dumps(one.params[method])


@pytest.mark.slow
def test_a_stop_ends_long_per_image_work_within_seconds(tmp_path, samples):
    out = tmp_path / "out"
    args = [
        "explain",
        str(samples),
        "-o",
        str(out),
        "-m",
        "resnet18",
        "--random-weights",
        "--method",
        "ablationcam",
        "--layer",
        "layer3",
        "--perturbation-batch",
        "1",
        "--top-k",
        "1",
        "--save",
        "raw_map",
    ]
    run = Background(out, *args)
    deadline = time.time() + 240
    while "explain" not in run.stderr():  # the model is loaded and the first batch is being explained
        assert run.poll() is None, run.stderr()
        assert time.time() < deadline
        time.sleep(0.05)
    time.sleep(1.0)
    run.send_signal(signal.SIGINT)
    assert run.wait(timeout=60) == 130, run.stderr()  # one batch alone runs 7 images × 256 forwards
    assert not list(out.glob("*/explanation.json"))  # the interrupted batch was not half written
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"


def test_jfif_files_are_images(tmp_path, samples, run_cli):
    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(samples / "rocket.jpg", folder / "rocket.jfif")
    result = run_cli("explain", folder, "-o", tmp_path / "out", "-q", "--top-k", "1", "--save", "raw_map")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "rocket.jfif" / "explanation.json").is_file()


def test_several_layers_as_separate_maps_equal_each_layer_alone(resnet, samples, tmp_path, run_cli):
    torch.manual_seed(5)
    x = torch.randn(1, 3, 64, 64)
    classes = torch.tensor([[3, 8]])
    both = explain_tensors(resnet, ["layer3", "layer4"], x, ["gradcam"], classes=classes, layers_as="separate")
    assert list(both.maps) == ["gradcam[layer3]", "gradcam[layer4]"]
    for layer in ("layer3", "layer4"):
        alone = explain_tensors(resnet, layer, x, ["gradcam"], classes=classes)
        torch.testing.assert_close(both.maps[f"gradcam[{layer}]"].raw, alone.maps["gradcam"].raw)
        assert both.params[f"gradcam[{layer}]"]["layers"] == [layer]
    out = tmp_path / "out"
    args = ["explain", samples / "chelsea.png", "-o", out, "-q", "--top-k", "1", "-m", "resnet18", "--random-weights"]
    done = run_cli(*args, "--layer", "layer3", "--layer", "layer4", "--layers-as", "separate")
    assert done.exit_code == 0, done.output
    doc = json.loads((out / "chelsea.png" / "explanation.json").read_text())
    assert [e["variant"] for e in doc["explanations"]] == ["layer3", "layer4"]
    assert all((out / "chelsea.png" / e["files"]["raw_map"]).is_file() for e in doc["explanations"])
    assert len({e["files"]["overlay"] for e in doc["explanations"]}) == 2


def test_each_image_explains_its_own_classes_from_a_file(samples, tmp_path, run_cli):
    listing = tmp_path / "labels.csv"
    listing.write_text(
        f"path,class\n{samples / 'chelsea.png'},tabby\n{samples / 'coffee.png'},espresso\n"
        f"{samples / 'coffee.png'},cup\n{tmp_path / 'gone.png'},tabby\n"
    )
    out = tmp_path / "out"
    done = run_cli(
        "explain",
        samples / "chelsea.png",
        samples / "coffee.png",
        "-o",
        out,
        "--classes-from",
        listing,
        "--save",
        "raw_map",
    )
    assert done.exit_code == 0, done.output
    assert "1 row(s)" in done.output  # gone.png names no input
    found = {
        name: [e["class_index"] for e in json.loads((out / name / "explanation.json").read_text())["explanations"]]
        for name in ("chelsea.png", "coffee.png")
    }
    assert found == {"chelsea.png": [281], "coffee.png": [967, 968]}  # tabby; espresso, cup


def test_guided_backprop_times_any_cam_matches_pytorch_grad_cam(resnet):
    import copy

    from pytorch_grad_cam import LayerCAM
    from pytorch_grad_cam.guided_backprop import GuidedBackpropReLUModel

    torch.manual_seed(6)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        cls = int(resnet(x).argmax())
    out = explain_tensors(
        resnet, "layer3", x, ["guided-cam"], classes=torch.tensor([[cls]]), guided_cam_base="layercam"
    )
    oracle = copy.deepcopy(resnet)  # pytorch-grad-cam swaps the model's ReLU modules
    with LayerCAM(model=oracle, target_layers=[oracle.layer3]) as cam:
        mask = cam(input_tensor=x, targets=[ClassifierOutputTarget(cls)])[0]
    gb = GuidedBackpropReLUModel(oracle, device="cpu")(x, target_category=cls)  # H×W×3
    expected = mask[..., None] * gb
    assert corr(out.maps["guided-cam"].raw[0, 0].permute(1, 2, 0), expected) >= 0.99


def reference_occlusion(model, x, cls, window, stride, fill, centred):
    """Occlusion as grad-cam-pytorch's occlusion_sensitivity places its windows (centred on every
    stride-th pixel), averaged over the windows covering each pixel, written out loop by loop."""
    h, w = x.shape[-2:]
    total, count = torch.zeros(h, w), torch.zeros(h, w)
    with torch.no_grad():
        base = model(x)[0, cls]
        rows = range(0, h, stride) if centred else range(0, h - window[0] + 1, stride)
        cols = range(0, w, stride) if centred else range(0, w - window[1] + 1, stride)
        for r in rows:
            for c in cols:
                top, left = (r - window[0] // 2, c - window[1] // 2) if centred else (r, c)
                sl = (slice(max(top, 0), max(top + window[0], 0)), slice(max(left, 0), max(left + window[1], 0)))
                covered = x.clone()
                covered[..., sl[0], sl[1]] = fill
                drop = base - model(covered)[0, cls]
                total[sl] += drop
                count[sl] += 1
    return total / count.clamp_min(1)


def test_occlusion_windows_centred_rectangular_and_filled_as_grad_cam_pytorch_places_them(resnet):
    torch.manual_seed(7)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        cls = int(resnet(x).argmax())
    out = explain_tensors(
        resnet,
        "layer3",
        x,
        ["occlusion"],
        classes=torch.tensor([[cls]]),
        occlusion_window="8,6x10",
        occlusion_stride=4,
        occlusion_fill=0.5,
        occlusion_border="centred",
    )
    assert list(out.maps) == ["occlusion[8]", "occlusion[6x10]"]
    for name, window in (("occlusion[8]", (8, 8)), ("occlusion[6x10]", (6, 10))):
        expected = reference_occlusion(resnet, x, cls, window, 4, 0.5, centred=True)
        torch.testing.assert_close(out.maps[name].raw[0, 0], expected, rtol=1e-4, atol=1e-4)
    assert out.params["occlusion[6x10]"]["window"] == "6x10"


def test_hugging_face_classifiers_are_explained_like_timm_vits(tmp_path, samples, run_cli):
    pytest.importorskip("transformers")
    code = tmp_path / "vit.py"
    code.write_text(
        "import torch\nfrom transformers import ViTConfig, ViTForImageClassification\n\n\ndef build():\n"
        "    torch.manual_seed(0)\n"
        "    config = ViTConfig(image_size=32, patch_size=8, num_hidden_layers=2, hidden_size=32,\n"
        "                       num_attention_heads=2, intermediate_size=64, num_labels=3)\n"
        "    return ViTForImageClassification(config)\n"
    )
    out = tmp_path / "out"
    done = run_cli(
        "explain",
        samples / "chelsea.png",
        "-m",
        f"{code}:build",
        "--random-weights",
        "--input-size",
        "32",
        "-o",
        out,
        "--top-k",
        "1",
        "--method",
        "gradcam,scorecam",
        "--save",
        "raw_map",
    )
    assert done.exit_code == 0, done.output
    doc = json.loads((out / "chelsea.png" / "explanation.json").read_text())
    [layer] = doc["model"]["layers"]
    assert layer["layout"] == "tokens"
    assert layer["prefix_tokens"] == 1  # the class token, found from the output alone
    assert layer["name"].endswith("layers.1.layernorm_before")  # the last attention's input, as for timm ViTs
    raw = np.load(out / "chelsea.png" / doc["explanations"][0]["files"]["raw_map"])
    assert raw.shape == (4, 4)
