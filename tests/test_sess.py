"""SESS (camcli/methods/sess.py) against pytorch-grad-cam's SESS, with two base methods on two
architectures, and from the command line."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import corr, explain_tensors
from pytorch_grad_cam import GradCAM, LayerCAM
from pytorch_grad_cam.sess import SESS
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from camcli.models import load_model

BASES = {"gradcam": GradCAM, "layercam": LayerCAM}


@pytest.fixture(scope="module", params=[("resnet18", "layer3"), ("convnext_tiny", "stages.2")])
def model(request):
    name, layer = request.param
    torch.manual_seed(0)
    found = load_model(name, random_weights=True).model.eval()
    if name == "convnext_tiny":  # untrained layer scales of 1e-6 leave the blocks nearly silent
        with torch.no_grad():
            for pname, param in found.named_parameters():
                if pname.endswith("gamma"):
                    param.fill_(1.0)
    return found, layer


@pytest.mark.parametrize("base", list(BASES))
def test_sess_matches_pytorch_grad_cam(model, base):
    net, layer = model
    torch.manual_seed(1)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        classes = net(x).topk(2, dim=1).indices
    out = explain_tensors(net, layer, x, ["sess"], classes=classes, sess_base=base, sess_num_scales=3, batch_size=16)
    target = dict(net.named_modules())[layer]
    with SESS(net, [target], base_method=BASES[base], num_scales=3, batch_size=16) as sess:
        for j in range(2):
            ref = sess(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in classes[:, j]])
            for b in range(2):
                assert corr(out.maps["sess"].display[b, j], ref[b]) >= 0.99, (base, b, j)


def test_sess_pools_and_filters_as_the_reference(model):
    net, layer = model
    torch.manual_seed(2)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        classes = net(x).topk(1, dim=1).indices
    options = {"sess_num_scales": 3, "sess_pool": "max", "sess_pre_filter": 0.5, "sess_smooth": False}
    out = explain_tensors(net, layer, x, ["sess"], classes=classes, batch_size=16, **options)
    target = dict(net.named_modules())[layer]
    with SESS(net, [target], num_scales=3, pool="max", pre_filter_ratio=0.5, smooth=False, batch_size=16) as sess:
        ref = sess(input_tensor=x, targets=[ClassifierOutputTarget(int(classes[0, 0]))])
    assert corr(out.maps["sess"].display[0, 0], ref[0]) >= 0.99


def test_sess_from_the_command_line(samples, tmp_path, run_cli):
    out = tmp_path / "out"
    args = ["explain", samples / "chelsea.png", "-m", "resnet18", "--random-weights", "--input-size", "64", "-o", out]
    result = run_cli(
        *args,
        "--method",
        "sess",
        "--sess-base",
        "layercam",
        "--sess-num-scales",
        "2",
        "--top-k",
        "2",
        "--save",
        "raw_map",
        "-q",
    )
    assert result.exit_code == 0, result.output
    entries = json.loads((out / "chelsea.png" / "explanation.json").read_text())["explanations"]
    assert [e["params"]["base"] for e in entries] == ["layercam", "layercam"]
    refused = run_cli(*args, "--method", "sess", "--sess-base", "saliency")
    assert refused.exit_code == 2
    assert "not a heat-map method" in refused.output
