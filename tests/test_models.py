"""Model names, weights files and labels: offline, with errors that say what to type."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from camcli.errors import ModelError, WeightsUnavailable
from camcli.models import load_model, parse_model_name


def test_bundled_default_predicts_imagenet(lite0, samples):
    from camcli.preprocess import decode, to_input

    assert lite0.weights.startswith("bundled:")
    x = torch.stack([to_input(decode(samples / f)[0], lite0.data)[0] for f in ("chelsea.png", "coffee.png")])
    with torch.no_grad():
        top = lite0.model(x).argmax(1).tolist()
    assert 281 <= top[0] <= 285
    assert top[1] == 967
    assert lite0.labels[967] == "espresso"


def test_names():
    assert parse_model_name("resnet18").source == "timm"
    assert parse_model_name("timm:resnet18").name == "resnet18"
    assert parse_model_name("tv:resnet18").source == "tv"
    with pytest.raises(ModelError, match="resnet18"):
        parse_model_name("resnet_18")
    assert parse_model_name("keras:resnet18").source == "factory"  # package.module:FACTORY
    with pytest.raises(ModelError, match="Importing 'keras'"):
        load_model("keras:resnet18", random_weights=True)
    with pytest.raises(ModelError, match="tv:NAME"):
        parse_model_name("some/where:not-a-factory!")


@pytest.mark.parametrize("name", ["resnet18", "tv:resnet18"])
def test_pretrained_never_downloads(name, empty_caches):
    with pytest.raises(WeightsUnavailable, match="--weights"):
        load_model(name)


@pytest.mark.parametrize("form", ["plain", "wrapped", "module", "safetensors"])
def test_weights_files(form, tmp_path):
    torch.manual_seed(1)
    source = load_model("resnet18", random_weights=True, num_classes=4).model
    state = source.state_dict()
    path = tmp_path / ("w.safetensors" if form == "safetensors" else "w.pth")
    if form == "safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        obj = {
            "plain": state,
            "wrapped": {"state_dict": state, "epoch": 3},
            "module": {f"module.{k}": v for k, v in state.items()},
        }[form]
        torch.save(obj, path)
    loaded = load_model("resnet18", weights=path, num_classes=4)
    assert loaded.num_classes == 4
    assert loaded.labels == ("class_0", "class_1", "class_2", "class_3")
    assert all(torch.equal(state[k], v) for k, v in loaded.model.state_dict().items())


def test_head_size_comes_from_the_checkpoint_or_the_error_names_it(tmp_path):
    torch.save(load_model("resnet18", random_weights=True, num_classes=7).model.state_dict(), tmp_path / "w.pth")
    assert load_model("resnet18", weights=tmp_path / "w.pth").num_classes == 7
    with pytest.raises(ModelError, match="--num-classes 7"):
        load_model("resnet18", weights=tmp_path / "w.pth", num_classes=3)


def test_labels_file(tmp_path):
    (tmp_path / "labels.txt").write_text("benign\nmalignant\n\n")
    loaded = load_model("resnet18", random_weights=True, num_classes=2, labels_file=tmp_path / "labels.txt")
    assert loaded.labels == ("benign", "malignant")
    with pytest.raises(ModelError, match="2 names but the model has 3"):
        load_model("resnet18", random_weights=True, num_classes=3, labels_file=tmp_path / "labels.txt")


def test_random_and_weights_conflict(tmp_path):
    (tmp_path / "w.pth").write_bytes(b"")
    with pytest.raises(ModelError, match="contradict"):
        load_model("resnet18", weights=tmp_path / "w.pth", random_weights=True)
