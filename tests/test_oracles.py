"""Every method agrees with an independent implementation on resnet18, densenet121 and convnext_tiny.

Oracles: pytorch-grad-cam 1.5 (maps min-max scaled at input resolution, one forward and backward per
class) for the CAM family; captum 0.9 for the raw feature-resolution Grad-CAM, the pixel-space
gradients and occlusion. Maps at input resolution must correlate at ≥ 0.99; where the oracle exposes
raw values, they must be equal.

Random weights (seeded); two sample images; for each method the two classes (of the top 20) with the
strongest camcli map, since an untrained model leaves many classes with an empty map, which would
prove nothing. Inputs are small to keep the perturbation methods' hundreds of forwards quick.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import Deconvolution, GuidedBackprop, GuidedGradCam, LayerGradCam, Occlusion, Saliency
from conftest import corr, explain_tensors
from pytorch_grad_cam import (
    AblationCAM,
    EigenCAM,
    EigenGradCAM,
    FullGrad,
    GradCAM,
    GradCAMElementWise,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    SegEigenCAM,
    XGradCAM,
)
from pytorch_grad_cam.ablation_layer import AblationLayer
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection
from torch import nn

from camcli.engine.capture import Capture
from camcli.engine.needs import Needs
from camcli.layout import Layout
from camcli.maps import input_map
from camcli.methods.base import first_component
from camcli.models import DataConfig, load_model
from camcli.preprocess import decode, to_input

GRADIENT_CAMS = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "xgradcam": XGradCAM,
    "hirescam": HiResCAM,
    "gradcam-elementwise": GradCAMElementWise,
    "layercam": LayerCAM,
}
# Per model: the last stage for the gradient methods, and a cheaper layer for the perturbation
# methods (one forward per channel and image). Ablation needs a non-negative layer to compare with
# pytorch-grad-cam's stock ablation (see ablationcam.py); ConvNeXt has none, so there the oracle is
# given an ablation layer that zeroes, as the paper and camcli do.
ARCHS = {
    "resnet18": {"size": 96, "layer": "layer4", "cheap": "layer2"},
    "tv:densenet121": {"size": 96, "layer": "features.denseblock4", "cheap": "features.transition1.relu"},
    "convnext_tiny": {"size": 96, "layer": "stages.3", "cheap": "stages.0"},
}


@pytest.fixture(scope="module", params=list(ARCHS))
def arch(request, samples):
    name = request.param
    torch.manual_seed(0)
    model = load_model(name, random_weights=True).model.eval()
    if name == "convnext_tiny":  # untrained layer scales of 1e-6 leave the blocks nearly silent
        with torch.no_grad():
            for pname, param in model.named_parameters():
                if pname.endswith("gamma"):
                    param.fill_(1.0)
    size = ARCHS[name]["size"]
    data = DataConfig((size, size), size, "bilinear", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    x = torch.stack([to_input(decode(samples / f)[0], data)[0] for f in ("chelsea.png", "coffee.png")])
    return name, model, x, ARCHS[name]


def _strongest(model, layer, x, method, **settings):
    """camcli's maps for the two top-20 classes whose maps are strongest (and not flat), per image."""
    out = explain_tensors(model, layer, x, [method], k=20, **settings)
    display = out.maps[method].display
    spread = (display.flatten(2).amax(-1) - display.flatten(2).amin(-1)) * out.maps[method].locator.flatten(
        2
    ).abs().amax(-1)
    pick = spread.topk(2, dim=1).indices
    classes = out.classes.gather(1, pick)
    again = explain_tensors(model, layer, x, [method], classes=classes, **settings)
    return classes, again


def _pgc(cam, x, classes, j, **kw):
    return cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in classes[:, j]], **kw)


@pytest.mark.parametrize("method", list(GRADIENT_CAMS))
def test_gradient_cams_match_pytorch_grad_cam(arch, method):
    name, model, x, spec = arch
    layer = dict(model.named_modules())[spec["layer"]]
    classes, out = _strongest(model, spec["layer"], x, method)
    with GRADIENT_CAMS[method](model=model, target_layers=[layer]) as cam:
        for j in range(2):
            ref = _pgc(cam, x, classes, j)
            for b in range(2):
                assert corr(out.maps[method].display[b, j], ref[b]) >= 0.99, (name, method, b, j)


def test_gradcam_raw_maps_equal_captum(arch):
    name, model, x, spec = arch
    classes, out = _strongest(model, spec["layer"], x, "gradcam")
    captum = LayerGradCam(model, dict(model.named_modules())[spec["layer"]])
    for b in range(2):
        for j in range(2):
            ref = captum.attribute(x[b : b + 1], target=int(classes[b, j]), relu_attributions=True)[0, 0].detach()
            raw = out.maps["gradcam"].raw[b, j]
            assert torch.allclose(raw, ref, atol=1e-4 * float(ref.abs().max()), rtol=0), (name, b, j)


def test_counterfactual_is_gradcam_of_the_negated_gradient(arch):
    _name, model, x, spec = arch
    out = explain_tensors(model, spec["layer"], x, ["gradcam", "counterfactual"], k=3)
    captum = LayerGradCam(model, dict(model.named_modules())[spec["layer"]])

    class Negated(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, inputs):
            return -self.inner(inputs)

    negated = LayerGradCam(Negated(model), dict(model.named_modules())[spec["layer"]])
    for b in range(2):
        c = int(out.classes[b, 0])
        ref = negated.attribute(x[b : b + 1], target=c, relu_attributions=True)[0, 0].detach()
        got = out.maps["counterfactual"].raw[b, 0]
        assert torch.allclose(got, ref, atol=1e-4 * (float(ref.abs().max()) + 1e-12), rtol=0)
        assert not torch.allclose(got, captum.attribute(x[b : b + 1], target=c, relu_attributions=True)[0, 0])


def _captured(model, layer, x, classes):
    with Capture(model, [(layer, Layout())], Needs(layer_gradients=True)) as capture:
        return capture(x, lambda scores: classes).layers[0]


def _assert_up_to_sign(got, ref, signed, where):
    """``got`` is camcli's map of the signed projection ``signed``; pytorch-grad-cam leaves the sign to its
    SVD, so its map ``ref`` must be ours or, where it picked the other sign, ours flipped."""
    size = tuple(got.shape)
    assert torch.allclose(got, input_map(torch.relu(signed)[None], size)[0], atol=1e-5)
    if corr(got, ref) < 0.99:
        assert corr(input_map(torch.relu(-signed)[None], size)[0], ref) >= 0.99, where


@pytest.mark.parametrize("method", ["eigencam", "eigengradcam"])
def test_eigen_methods_match_pytorch_grad_cam_up_to_sign(arch, method):
    name, model, x, spec = arch
    layer = dict(model.named_modules())[spec["layer"]]
    classes, out = _strongest(model, spec["layer"], x, method)
    captured = _captured(model, spec["layer"], x, classes)
    weighted = captured.activations[:, None] * (1 if method == "eigencam" else captured.gradients)
    signed = first_component(weighted.expand(-1, 2, -1, -1, -1))  # camcli's projection, before ReLU
    oracle = {"eigencam": EigenCAM, "eigengradcam": EigenGradCAM}[method]
    with oracle(model=model, target_layers=[layer]) as cam:
        for j in range(2):
            ref = _pgc(cam, x, classes, j)
            for b in range(2):
                _assert_up_to_sign(out.maps[method].display[b, j], ref[b], signed[b, j], (name, method, b, j))


def test_segeigencam_matches_pytorch_grad_cam(arch):
    """Seg-Eigen-CAM fixes its sign from the map itself, as pytorch-grad-cam does: the maps agree as they are."""
    name, model, x, spec = arch
    layer = dict(model.named_modules())[spec["layer"]]
    classes, out = _strongest(model, spec["layer"], x, "segeigencam")
    with SegEigenCAM(model=model, target_layers=[layer]) as cam:
        for j in range(2):
            ref = _pgc(cam, x, classes, j)
            for b in range(2):
                assert corr(out.maps["segeigencam"].display[b, j], ref[b]) >= 0.99, (name, b, j)


def _activations(model, layer, x):
    seen = {}
    handle = layer.register_forward_hook(lambda m, a, out: seen.update(a=out.detach().clone()))
    with torch.no_grad():
        model(x)
    handle.remove()
    return seen["a"]


def test_eigen_projection_and_sign_rule(arch):
    """The projection equals pytorch-grad-cam's up to sign; camcli's sign correlates with the mean activation."""
    name, model, x, spec = arch
    acts = _activations(model, dict(model.named_modules())[spec["layer"]], x)
    ours = first_component(acts[:, None])[:, 0]
    theirs = torch.from_numpy(get_2d_projection(acts.numpy()))
    for b in range(2):
        c = corr(ours[b], theirs[b])
        assert abs(c) >= 0.999, (name, b, c)
        assert corr(ours[b], acts[b].mean(0)) > 0


def test_scorecam_matches_pytorch_grad_cam(arch):
    name, model, x, spec = arch
    layer = dict(model.named_modules())[spec["cheap"]]
    classes, out = _strongest(model, spec["cheap"], x, "scorecam")
    with ScoreCAM(model=model, target_layers=[layer]) as cam:
        cam.batch_size = 32
        for j in range(2):
            ref = _pgc(cam, x, classes, j)
            for b in range(2):
                assert corr(out.maps["scorecam"].display[b, j], ref[b]) >= 0.99, (name, b, j)


class _ZeroAblation(AblationLayer):
    """pytorch-grad-cam's ablation layer, zeroing the channel whatever the layer's minimum (as the paper)."""

    def __call__(self, x):
        output = self.activations
        for i in range(output.size(0)):
            output[i, self.indices[i], :] = 0
        return output


def test_ablationcam_matches_pytorch_grad_cam(arch):
    name, model, x, spec = arch
    layer = dict(model.named_modules())[spec["cheap"]]
    classes, out = _strongest(model, spec["cheap"], x, "ablationcam")
    stock = bool((_activations(model, layer, x) >= 0).all())
    assert stock == (name != "convnext_tiny")  # the layers chosen above are non-negative where stated
    kwargs = {} if stock else {"ablation_layer": _ZeroAblation()}
    with AblationCAM(model=model, target_layers=[layer], batch_size=32, **kwargs) as cam:
        for j in range(2):
            ref = _pgc(cam, x, classes, j)
            for b in range(2):
                assert corr(out.maps["ablationcam"].display[b, j], ref[b]) >= 0.99, (name, b, j)


def test_fullgrad_matches_pytorch_grad_cam(arch):
    name, model, x, _spec = arch
    classes, out = _strongest(model, None, x, "fullgrad")
    with FullGrad(model=model, target_layers=[]) as cam:
        for j in range(2):
            ref = _pgc(cam, x, classes, j)
            for b in range(2):
                assert corr(out.maps["fullgrad"].display[b, j], ref[b]) >= 0.99, (name, b, j)


def _relu_view(name, model):
    """The model as captum can apply backward rules to it: captum only knows nn.ReLU modules.

    torchvision's DenseNet ends with a functional ReLU: the same modules are rearranged with it as a
    module. ConvNeXt uses GELU: it is rebuilt with ReLU (same weights), and camcli explains that model too.
    """
    if name == "tv:densenet121":
        return model, nn.Sequential(
            model.features, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(), model.classifier
        ).eval()
    if name == "convnext_tiny":
        import timm

        relu = timm.create_model("convnext_tiny", act_layer="relu").eval()
        relu.load_state_dict(model.state_dict())
        return relu, relu
    return model, model


@pytest.mark.parametrize(
    ("method", "oracle"), [("saliency", Saliency), ("deconvnet", Deconvolution), ("guided-backprop", GuidedBackprop)]
)
def test_pixel_gradients_equal_captum(arch, method, oracle):
    name, model, x, spec = arch
    ours_model, captum_model = _relu_view(name, model)
    with torch.no_grad():
        assert torch.allclose(ours_model(x), captum_model(x), atol=1e-4)
    out = explain_tensors(ours_model, spec["layer"], x, [method], k=2)
    attr = oracle(captum_model)
    for b in range(2):
        for j in range(2):
            kw = {"abs": False} if method == "saliency" else {}
            ref = attr.attribute(x[b : b + 1].clone().requires_grad_(), target=int(out.classes[b, j]), **kw)[0].detach()
            got = out.maps[method].raw[b, j]
            assert ref.abs().max() > 0
            assert torch.allclose(got, ref, atol=1e-4 * float(ref.abs().max()), rtol=0), (name, method, b, j)


def test_guided_gradcam_equals_captum(arch):
    name, model, x, spec = arch
    ours_model, captum_model = _relu_view(name, model)
    classes, out = _strongest(ours_model, spec["layer"], x, "guided-gradcam")
    layer = dict(captum_model.named_modules())[
        "0" if captum_model is not ours_model and name != "convnext_tiny" else spec["layer"]
    ]
    ggc = GuidedGradCam(captum_model, layer)
    for b in range(2):
        for j in range(2):
            image = x[b : b + 1].clone().requires_grad_()
            ref = ggc.attribute(image, target=int(classes[b, j]), interpolate_mode="bilinear")[0].detach()
            got = out.maps["guided-gradcam"].raw[b, j]
            assert ref.abs().max() > 0
            assert torch.allclose(got, ref, atol=1e-4 * float(ref.abs().max()), rtol=0), (name, b, j)


def test_occlusion_equals_captum(arch):
    name, model, x, spec = arch
    x = F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False)  # 6×6 windows: quick
    out = explain_tensors(
        model,
        spec["layer"] if name != "resnet18" else "layer3",
        x,
        ["occlusion"],
        k=2,
        occlusion_window=16,
        occlusion_stride=12,
    )
    occlusion = Occlusion(model)
    for b in range(2):
        for j in range(2):
            ref = occlusion.attribute(
                x[b : b + 1],
                target=int(out.classes[b, j]),
                sliding_window_shapes=(3, 16, 16),
                strides=(3, 12, 12),
                baselines=0,
                perturbations_per_eval=16,
            )[0]
            got = out.maps["occlusion"].raw[b, j]
            assert torch.allclose(ref[0], ref[2])  # captum occludes all channels together
            assert torch.allclose(got, ref[0], atol=1e-4 * float(ref.abs().max()), rtol=0), (name, b, j)


def test_aug_and_eigen_smoothing_and_several_layers_match_pytorch_grad_cam(arch):
    name, model, x, spec = arch
    modules = dict(model.named_modules())
    classes, out = _strongest(model, spec["layer"], x, "gradcam", smooth="aug")
    with GradCAM(model=model, target_layers=[modules[spec["layer"]]]) as cam:
        for j in range(2):
            ref = _pgc(cam, x, classes, j, aug_smooth=True)
            for b in range(2):
                assert corr(out.maps["gradcam"].display[b, j], ref[b]) >= 0.99, ("aug", name, b, j)
    two = [spec["cheap"], spec["layer"]]
    classes, out = _strongest(model, two, x, "gradcam")
    with GradCAM(model=model, target_layers=[modules[n] for n in two]) as cam:
        for j in range(2):
            ref = _pgc(cam, x, classes, j)
            for b in range(2):
                assert corr(out.maps["gradcam"].display[b, j], ref[b]) >= 0.99, ("layers", name, b, j)
    classes, out = _strongest(model, spec["layer"], x, "layercam", smooth="eigen")
    captured = _captured(model, spec["layer"], x, classes)
    signed = first_component(torch.relu(captured.gradients) * captured.activations[:, None])
    with LayerCAM(model=model, target_layers=[modules[spec["layer"]]]) as cam:
        for j in range(2):
            ref = _pgc(cam, x, classes, j, eigen_smooth=True)
            for b in range(2):
                _assert_up_to_sign(out.maps["layercam"].display[b, j], ref[b], signed[b, j], ("eigen", name, b, j))


# Grad-CAM, the default, on more families and in the channels-last layout the CLI uses for CAM-only jobs.
# torchvision's DenseNet applies an in-place ReLU to `features`' output, which corrupts the activation
# pytorch-grad-cam stores, so the comparison there uses the last dense block (camcli is immune: test_engine).
MORE = [
    ("mobilenetv3_large_100", None, False),
    ("tv:vgg11", None, False),
    ("tf_efficientnet_lite0", None, False),
    ("resnet18", None, True),
    ("tf_efficientnet_lite0", None, True),
    ("tv:densenet121", "features.denseblock4", True),
]


@pytest.mark.parametrize(
    ("name", "layer_name", "channels_last"), MORE, ids=[f"{n}{'-nhwc' if c else ''}" for n, _, c in MORE]
)
def test_gradcam_on_more_architectures_and_layouts(name, layer_name, channels_last, samples):
    torch.manual_seed(0)
    loaded = load_model(name, random_weights=name != "tf_efficientnet_lite0")
    model, size = loaded.model, loaded.data.input_size
    x = torch.stack([to_input(decode(samples / f)[0], loaded.data)[0] for f in ("chelsea.png", "coffee.png")])
    out = explain_tensors(model, layer_name, x, ["gradcam"], k=20, channels_last=channels_last)
    strongest = out.maps["gradcam"].raw.amax(dim=(2, 3)).topk(2, dim=1).indices
    classes = out.classes.gather(1, strongest)
    raw = out.maps["gradcam"].raw.gather(
        1, strongest[:, :, None, None].expand(-1, -1, *out.maps["gradcam"].raw.shape[-2:])
    )
    assert (raw.amax(dim=(2, 3)) > 0).all()
    up = input_map(raw, size)
    from camcli.layers import resolve_layer

    module = dict(model.named_modules())[resolve_layer(model, size, layer_name).name]
    captum = LayerGradCam(model, module)
    with GradCAM(model=model, target_layers=[module]) as pgc:
        for b in range(2):
            for j in range(2):
                c = int(classes[b, j])
                ref = captum.attribute(x[b : b + 1], target=c, relu_attributions=True)[0, 0].detach()
                assert torch.allclose(raw[b, j], ref, atol=1e-4 * float(ref.abs().max()), rtol=0)
                scaled = pgc(input_tensor=x[b : b + 1], targets=[ClassifierOutputTarget(c)])[0]
                assert np.abs(up[b, j].numpy() - scaled).max() < 1e-3
