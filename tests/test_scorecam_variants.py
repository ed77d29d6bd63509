"""SS-CAM and IS-CAM equal torchcam's SSCAM and ISCAM (SS-CAM given the same noise), on a CNN with real
weights and on a ViT's tokens; SS-CAM's noise is seeded and the same whatever batch an image falls in;
both run from the command line with their options."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from conftest import corr, explain_tensors
from torchcam.methods import ISCAM, SSCAM

from camcli import methods
from camcli.models import DataConfig
from camcli.preprocess import decode, to_input


def shown(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A feature-resolution map at input resolution, min-max scaled."""
    up = F.interpolate(cam[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    return (up - up.min()) / (up.max() - up.min() + 1e-12)


def tokens_to_map(tensor: torch.Tensor) -> torch.Tensor:
    """The reshape transform for test_vit at 64 px with 8-pixel patches: 1 class token, then 8×8 patches."""
    return tensor[:, 1:].reshape(tensor.shape[0], 8, 8, tensor.shape[2]).permute(0, 3, 1, 2)


def images(samples, size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    data = DataConfig((size, size), size, "bilinear", mean, std)
    return torch.stack([to_input(decode(samples / f)[0], data)[0] for f in ("chelsea.png", "coffee.png")])


@pytest.fixture(scope="module", params=["tf_efficientnet_lite0", "test_vit"])
def arch(request, samples):
    """Real weights for the CNN: random ones score every mask alike, and the maps would be the mean
    activation whatever the weights' maths. A 40-channel layer keeps the forwards few."""
    if request.param == "tf_efficientnet_lite0":
        loaded = request.getfixturevalue("lite0")
        x = images(samples, 64, loaded.data.mean, loaded.data.std)
        return loaded.model.eval(), "blocks.2", None, x
    torch.manual_seed(0)
    model = timm.create_model("test_vit", img_size=64, patch_size=8).eval()
    return model, "blocks.5.norm1", tokens_to_map, images(samples, 64, (0.5,) * 3, (0.5,) * 3)


CASES = {
    "sscam": (SSCAM, {"sscam_num_samples": 3, "sscam_std": 1.5, "sscam_seed": 5}, {"num_samples": 3, "std": 1.5}),
    "iscam": (ISCAM, {"iscam_num_samples": 3}, {"num_samples": 3}),
}


@pytest.mark.parametrize("method", list(CASES))
def test_equals_torchcam(arch, method):
    model, layer, reshape, x = arch
    oracle, options, settings = CASES[method]
    out = explain_tensors(model, layer, x, [method], k=2, batch_size=64, **options)
    maps = out.maps[method]
    size = (x.shape[-2], x.shape[-1])
    shape = tuple(x.shape[1:])
    with oracle(model, layer, batch_size=64, input_shape=shape, reshape_transform=reshape, **settings) as cam:
        for b in range(2):
            for j in range(2):
                with torch.no_grad():
                    model(x[b : b + 1])  # torchcam keeps this input and its activations
                torch.manual_seed(5)  # SS-CAM: the noise camcli draws from its seed
                ref = cam(class_idx=int(out.classes[b, j]), normalized=False)[0][0]
                assert ref.amax() > ref.amin()
                assert corr(maps.display[b, j], shown(ref, size)) >= 0.99, (layer, method, b, j)
                assert torch.allclose(maps.raw[b, j], ref, atol=1e-4 * float(ref.abs().max()), rtol=0), (b, j)
    assert not torch.allclose(maps.raw[:, 0], maps.raw[:, 1])  # each class has its own map


def test_defaults_are_torchcams():
    sscam, iscam = inspect.signature(SSCAM).parameters, inspect.signature(ISCAM).parameters
    ours = {name: {p.name: p.default for p in methods.get(name).params} for name in CASES}
    assert ours["sscam"] == {"num_samples": sscam["num_samples"].default, "std": sscam["std"].default, "seed": 0}
    assert ours["iscam"] == {"num_samples": iscam["num_samples"].default}


def test_sscam_noise_is_seeded_and_independent_of_the_batch(samples):
    torch.manual_seed(0)
    model = timm.create_model("test_vit", img_size=64, patch_size=8).eval()
    x = images(samples, 64, (0.5,) * 3, (0.5,) * 3)
    classes = torch.tensor([[3, 5], [3, 5]])
    options = {"sscam_num_samples": 2, "batch_size": 48}
    both = explain_tensors(model, None, x, ["sscam"], classes=classes, **options).maps["sscam"].raw
    alone = explain_tensors(model, None, x[1:], ["sscam"], classes=classes[1:], **options).maps["sscam"].raw
    assert torch.allclose(both[1:], alone, atol=1e-5 * float(alone.abs().max()), rtol=0)
    other = explain_tensors(model, None, x, ["sscam"], classes=classes, sscam_seed=1, **options).maps["sscam"].raw
    assert not torch.allclose(both, other, atol=1e-3 * float(both.abs().max()), rtol=0)


def test_run_from_the_command_line_with_their_options(run_cli, samples, tmp_path):
    common = ["explain", samples / "chelsea.png", "-m", "resnet18", "--random-weights", "--input-size", "64"]
    result = run_cli(
        *common,
        *("--layer", "layer1", "-o", tmp_path / "o", "-q", "--top-k", "2", "--save", "raw_map"),
        *("--method", "sscam,iscam", "--sscam-num-samples", "2", "--sscam-std", "1", "--sscam-seed", "4"),
        *("--iscam-num-samples", "2"),
    )
    assert result.exit_code == 0, result.output
    folder = tmp_path / "o" / "chelsea.png"
    entries = json.loads((folder / "explanation.json").read_text())["explanations"]
    assert sorted(e["method"] for e in entries) == ["iscam", "iscam", "sscam", "sscam"]
    expected = {"sscam": {"num_samples": 2, "std": 1.0, "seed": 4}, "iscam": {"num_samples": 2}}
    for entry in entries:
        assert {**expected[entry["method"]], "layers": ["layer1"]}.items() <= entry["params"].items()
        assert np.load(folder / entry["files"]["raw_map"]).shape == (16, 16)
    refused = run_cli(*common, "-o", tmp_path / "p", "--method", "sscam", "--sscam-std", "-1")
    assert refused.exit_code == 2
    assert "--sscam-std" in refused.output
