"""The baselines: randomcam against pytorch-grad-cam's ``RandomCAM`` given the same weights, and sobel against
its ``sobel_cam`` on the 8-bit image the model saw, on a CNN (resnet18) and a ViT's token layer (timm's
test_vit); from the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import corr, explain_tensors
from pytorch_grad_cam import RandomCAM
from pytorch_grad_cam.sobel_cam import sobel_cam
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from camcli.models import DataConfig, load_model
from camcli.preprocess import decode, to_input


def vit_tokens(tensor: torch.Tensor) -> torch.Tensor:
    """test_vit's tokens (a class token, then a 10×10 grid) as B×C×h×w, pytorch-grad-cam's reshape."""
    return tensor[:, 1:, :].reshape(tensor.size(0), 10, 10, tensor.size(2)).permute(0, 3, 1, 2)


ARCHS = {"resnet18": (96, "layer4", None), "test_vit": (160, "blocks.5.norm1", vit_tokens)}


def images(samples, data: DataConfig) -> torch.Tensor:
    return torch.stack([to_input(decode(samples / f)[0], data)[0] for f in ("chelsea.png", "coffee.png")])


@pytest.fixture(scope="module", params=list(ARCHS))
def arch(request, samples):
    size, layer, reshape = ARCHS[request.param]
    torch.manual_seed(0)
    loaded = load_model(request.param, random_weights=True)
    data = DataConfig((size, size), size, "bilinear", loaded.data.mean, loaded.data.std)
    return request.param, loaded.model.eval(), layer, reshape, data, images(samples, data)


def test_randomcam_is_random_cam_with_the_weights_of_seed_and_class(arch, monkeypatch):
    """pytorch-grad-cam draws B×C weights from numpy's global generator per call; it is given, for each image,
    the weights camcli's rule draws for the class: numpy's default_rng((seed, class)), C uniforms in [-1, 1)."""
    name, model, layer, reshape, _data, x = arch
    out = explain_tensors(model, layer, x, ["randomcam"], k=2, randomcam_seed=7)
    drawn = []

    def same_weights(low, high, size):
        assert (low, high, size[0]) == (-1, 1, 2)
        rows = [np.random.default_rng((7, int(c))).uniform(-1.0, 1.0, size[1]) for c in out.classes[:, len(drawn)]]
        drawn.append(np.stack(rows))
        return drawn[-1]

    monkeypatch.setattr(np.random, "uniform", same_weights)
    with RandomCAM(model=model, target_layers=[dict(model.named_modules())[layer]], reshape_transform=reshape) as cam:
        refs = [
            cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in out.classes[:, j]]) for j in (0, 1)
        ]
    display = out.maps["randomcam"].display
    for b in range(2):
        for j in range(2):
            assert float(display[b, j].max()) > 0
            assert corr(display[b, j], refs[j][b]) >= 0.99, (name, b, j)
    alone = explain_tensors(model, layer, x[1:], ["randomcam"], classes=out.classes[1:], randomcam_seed=7)
    assert torch.allclose(alone.maps["randomcam"].raw[0], out.maps["randomcam"].raw[1], atol=1e-5)  # any batch
    other = explain_tensors(model, layer, x, ["randomcam"], classes=out.classes).maps["randomcam"].raw
    assert not torch.allclose(other, out.maps["randomcam"].raw)  # the seed matters


def _sobel_reference(x: torch.Tensor, data: DataConfig) -> np.ndarray:
    """pytorch-grad-cam's sobel_cam of each 8-bit RGB image the model saw (x un-normalized)."""
    mean, std = torch.tensor(data.mean)[:, None, None], torch.tensor(data.std)[:, None, None]
    pictures = ((x * std + mean).clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    return np.stack([sobel_cam(np.ascontiguousarray(p)) for p in pictures]).astype(np.float64)


def _assert_sobel(out, ref: np.ndarray, where) -> None:
    for b in range(len(ref)):
        assert torch.equal(out.maps["sobel"].raw[b, 0], out.maps["sobel"].raw[b, 1])  # one map per image
        assert corr(out.maps["sobel"].display[b, 0], ref[b]) >= 0.99, (where, b)
        # The same values on the 0-255 scale, but for the reference's 8-bit rounding (grey, each derivative, sum).
        assert np.abs(out.maps["sobel"].raw[b, 0].double().numpy() * 255 - ref[b]).max() <= 3.5, (where, b)


def test_sobel_is_sobel_cam_of_the_image_the_model_saw(arch):
    """The input is un-normalized with the model's own std: ImageNet's for resnet18, 0.5 for test_vit."""
    name, model, layer, _reshape, data, x = arch
    _assert_sobel(explain_tensors(model, layer, x, ["sobel"], k=2), _sobel_reference(x, data), name)


def test_sobel_assumes_imagenet_std_for_a_model_without_pretrained_config(tiny_model, samples):
    data = DataConfig((32, 32), 32, "bilinear", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    x = images(samples, data)
    _assert_sobel(explain_tensors(tiny_model.model, None, x, ["sobel"], k=2), _sobel_reference(x, data), "TinyNet")


@pytest.mark.parametrize(("method", "options"), [("randomcam", ["--randomcam-seed", "3"]), ("sobel", [])])
def test_baselines_from_the_command_line(run_cli, samples, tmp_path, method, options):
    args = ["explain", samples / "chelsea.png", "--method", method, "-o", tmp_path / "o", "-q", "--top-k", "2"]
    result = run_cli(*args, "--save", "raw_map", *options)
    assert result.exit_code == 0, result.output
    entries = json.loads((tmp_path / "o" / "chelsea.png" / "explanation.json").read_text())["explanations"]
    assert len(entries) == 2
    raws = [np.load(tmp_path / "o" / "chelsea.png" / e["files"]["raw_map"]) for e in entries]
    assert all(raw.max() > 0 for raw in raws)
    if method == "randomcam":
        assert [e["params"]["seed"] for e in entries] == [3, 3]
        assert raws[0].shape == (7, 7)
        assert not np.array_equal(raws[0], raws[1])  # each class its own weights
    else:
        assert raws[0].shape == (224, 224)
        np.testing.assert_array_equal(raws[0], raws[1])
