"""Grad-CAM maps agree with two independent implementations on several architectures.

captum's LayerGradCam (relu_attributions=True) gives the raw feature-resolution map L^c;
pytorch-grad-cam gives the min-max scaled map at input resolution (resized with OpenCV).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import LayerGradCam
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from camcli.engine import GradCam
from camcli.maps import input_map
from camcli.layers import resolve_layer
from camcli.models import load_model
from camcli.preprocess import decode, to_input

# (model, layer): None picks camcli's default layer. torchvision's DenseNet applies an in-place
# ReLU to `features`' output, which corrupts the activation pytorch-grad-cam stores, so the
# comparison uses the last dense block there (camcli itself is immune: see test_engine).
CASES = [
    ("resnet18", None),
    ("tv:densenet121", "features.denseblock4"),
    ("mobilenetv3_large_100", None),
    ("convnext_tiny", None),
    ("tv:vgg11", None),
    ("tf_efficientnet_lite0", None),
]


# camcli's CLI runs CAM-only jobs in channels-last layout: check that path against the oracles too.
LAYOUTS = [(name, layer, False) for name, layer in CASES] + [("resnet18", None, True), ("tf_efficientnet_lite0", None, True)]


@pytest.mark.parametrize("name,layer_name,channels_last", LAYOUTS,
                         ids=[f"{n}{'-nhwc' if c else ''}" for n, _, c in LAYOUTS])
def test_gradcam_matches_captum_and_pytorch_grad_cam(name, layer_name, channels_last, samples):
    torch.manual_seed(0)
    loaded = load_model(name, random_weights=name != "tf_efficientnet_lite0")
    model, size = loaded.model, loaded.data.input_size
    layer = resolve_layer(model, size, layer_name).name
    x = torch.stack([to_input(decode(samples / f)[0], loaded.data)[0] for f in ("chelsea.png", "coffee.png")])
    with GradCam(model, layer, channels_last=channels_last) as cam:
        out = cam(x, lambda logits: logits.topk(20, dim=1).indices)
    # Random weights leave some classes with no positive evidence: an all-zero map proves
    # nothing, so compare the two classes with the strongest maps per image.
    strongest = out.cam().amax(dim=(2, 3)).topk(2, dim=1).indices
    classes = out.classes.gather(1, strongest)
    raw = out.cam().gather(1, strongest[:, :, None, None].expand(-1, -1, *out.activations.shape[-2:]))
    assert (raw.amax(dim=(2, 3)) > 0).all()
    up = input_map(raw, size)

    module = dict(model.named_modules())[layer]
    captum = LayerGradCam(model, module)
    with GradCAM(model=model, target_layers=[module]) as pgc:
        for b in range(2):
            for j in range(2):
                c = int(classes[b, j])
                ref = captum.attribute(x[b : b + 1], target=c, relu_attributions=True)[0, 0].detach()
                assert ref.abs().max() > 0, "degenerate oracle map"
                assert torch.allclose(raw[b, j], ref, atol=1e-4 * float(ref.abs().max()), rtol=0)
                scaled = pgc(input_tensor=x[b : b + 1], targets=[ClassifierOutputTarget(c)])[0]
                assert np.abs(up[b, j].numpy() - scaled).max() < 1e-3
