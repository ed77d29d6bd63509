"""camcli.layers: which module outputs are feature maps, their layout, and the default target layer."""

from __future__ import annotations

import pytest
import torch

from camcli.errors import LayerError
from camcli.layers import plausible_grid, probe_layers, resolve_layer, resolve_layers
from camcli.models import load_model


def test_probe_records_every_output_with_its_layout_and_gradient(tiny_model):
    infos = {info.name: info for info in probe_layers(tiny_model.model, (32, 32))}
    assert infos["features.0"].shape == (1, 8, 32, 32)
    assert (infos["features"].layout.kind, infos["features"].layout.grid) == ("nchw", (16, 16))
    assert infos["features"].candidate
    assert infos["head"].layout is None
    assert not infos["head"].candidate
    assert infos["unused"].live == 0.0  # the class scores never see it
    assert infos["features"].live == 1.0
    [default] = resolve_layers(tiny_model.model, (32, 32))
    assert default.name == "features"  # the last grid the classifier's input depends on
    assert [i.name for i in resolve_layers(tiny_model.model, (32, 32), ["features.2", "features.0", "features.2"])] == [
        "features.2",
        "features.0",
    ]


def test_plausible_grids_are_the_input_at_some_stride():
    assert plausible_grid(7, 7, (224, 224))
    assert plausible_grid(12, 16, (384, 512))
    assert plausible_grid(15, 15, (225, 225))
    assert plausible_grid(8, 8, (225, 225))  # rounded up: ⌈225/32⌉
    assert not plausible_grid(7, 9, (224, 224))  # not one stride for both sides
    assert not plausible_grid(1, 1, (224, 224))  # a pooled output


def test_default_layer_is_last_spatial_output():
    torch.manual_seed(0)
    model = load_model("tv:resnet18", random_weights=True).model
    assert resolve_layer(model, (224, 224)).name == "layer4"
    names = [info.name for info in probe_layers(model, (224, 224))]
    assert names.index("layer4.1") < names.index("layer4") < names.index("fc")


def test_unknown_layer_suggests_close_names(tiny_model):
    with pytest.raises(LayerError, match="features"):
        resolve_layer(tiny_model.model, (32, 32), "feature")
    with pytest.raises(LayerError, match="not a grid of image positions"):
        resolve_layer(tiny_model.model, (32, 32), "head")


def test_transformer_layers_become_feature_maps():
    torch.manual_seed(0)
    model = load_model("swin_tiny_patch4_window7_224", random_weights=True).model
    info = resolve_layer(model, (224, 224))
    assert (info.name, info.layout.kind, info.layout.grid) == ("norm", "nhwc", (7, 7))
    vit = load_model("vit_tiny_patch16_224", random_weights=True).model
    info = resolve_layer(vit, (224, 224))
    assert (info.name, info.layout.kind, info.layout.grid, info.layout.prefix) == (
        "blocks.11.norm1",
        "tokens",
        (14, 14),
        1,
    )
    with pytest.raises(LayerError, match="attention"):
        resolve_layer(vit, (224, 224), "blocks.11.attn.qkv")
