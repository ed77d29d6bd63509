"""Your own model: files made by the real tools (PyTorch Lightning, timm's save_for_hf, timm- and
torchvision-style training checkpoints), custom architectures, binary and multi-label heads,
one-channel models, and preprocessing overrides that must equal timm's own eval transform."""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from captum.attr import LayerGradCam
from PIL import Image
from safetensors.torch import save_file
from timm.data import create_transform, resolve_data_config

from camcli.api import Explainer
from camcli.errors import ModelError
from camcli.job import Preprocessing
from camcli.models import load_model
from camcli.preprocess import decode, to_input


def explanation(out: Path, name: str) -> dict:
    return json.loads((out / name / "explanation.json").read_text())


def timm_logits(model: torch.nn.Module, image: Path) -> torch.Tensor:
    """The model's logits on timm's own eval transform (its resolved data config)."""
    transform = create_transform(**resolve_data_config({}, model=model))
    with torch.no_grad():
        return model.eval()(transform(Image.open(image).convert("RGB"))[None])[0]


def camcli_logits(doc: dict) -> torch.Tensor:
    return torch.tensor([p["logit"] for p in doc["predictions"]])


def _small_resnet(classes: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("resnet18", num_classes=classes).eval()


class _Plant:
    """Unpickled normally, this object would create the file ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_lightning_checkpoint_loads_with_its_prefix_stripped(tmp_path, samples, run_cli):
    import pytorch_lightning as pl

    class Classifier(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = _small_resnet().train()  # Lightning warns when it trains modules in eval mode
            self.loss = torch.nn.CrossEntropyLoss()

        def training_step(self, batch, index):
            x, y = batch
            return self.loss(self.encoder(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.TensorDataset(torch.randn(4, 3, 64, 64), torch.randint(0, 3, (4,)))
    trainer = pl.Trainer(
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    module = Classifier()
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=2))
    trainer.save_checkpoint(tmp_path / "trained.ckpt")
    out = tmp_path / "out"
    result = run_cli(
        "explain",
        samples / "coffee.png",
        "-o",
        out,
        "-q",
        "-m",
        "resnet18",
        "--weights",
        tmp_path / "trained.ckpt",
        "--top-k",
        "1",
    )
    assert result.exit_code == 0, result.output  # the head size (3) came from the checkpoint
    doc = explanation(out, "coffee.png")
    assert doc["model"]["checkpoint"] == {"entry": "state_dict", "prefix_stripped": "encoder."}
    assert doc["model"]["num_classes"] == 3
    torch.testing.assert_close(
        camcli_logits(doc),
        timm_logits(module.encoder, samples / "coffee.png").sort(descending=True).values,
        rtol=1e-4,
        atol=1e-4,
    )


def test_timm_train_checkpoint_with_ema_and_training_args(tmp_path, samples, run_cli):
    model, ema = _small_resnet(), _small_resnet()
    with torch.no_grad():
        for p in ema.parameters():
            p.mul_(0.5)
    marker = tmp_path / "code-ran"
    torch.save(
        {
            "epoch": 3,
            "arch": "resnet18",
            "state_dict": model.state_dict(),
            "state_dict_ema": ema.state_dict(),
            "optimizer": {"state": {}, "param_groups": []},
            "version": 2,
            "args": argparse.Namespace(model="resnet18", lr=0.1, plant=_Plant(marker)),
        },
        tmp_path / "last.pth.tar",
    )
    for flags, reference in (([], model), (["--ema"], ema)):
        out = tmp_path / f"out{len(flags)}"
        result = run_cli(
            "explain",
            samples / "chelsea.png",
            "-o",
            out,
            "-q",
            "-m",
            "resnet18",
            "--top-k",
            "1",
            "--weights",
            tmp_path / "last.pth.tar",
            *flags,
        )
        assert result.exit_code == 0, result.output
        doc = explanation(out, "chelsea.png")
        assert doc["model"]["checkpoint"]["entry"] == ("state_dict_ema" if flags else "state_dict")
        torch.testing.assert_close(
            camcli_logits(doc),
            timm_logits(reference, samples / "chelsea.png").sort(descending=True).values,
            rtol=1e-4,
            atol=1e-4,
        )
    assert not marker.exists(), "loading the checkpoint ran code"


@pytest.mark.parametrize("wrapper", ["module.", "_orig_mod.", "module._orig_mod."])
def test_torchvision_reference_checkpoint_with_ddp_and_compile_prefixes(wrapper, tmp_path):
    model = load_model("tv:resnet18", random_weights=True, num_classes=5).model
    state = {wrapper + k: v for k, v in model.state_dict().items()}
    torch.save(
        {
            "model": state,
            "optimizer": {},
            "lr_scheduler": {},
            "epoch": 9,
            "args": argparse.Namespace(data_path="/data"),
        },
        tmp_path / "checkpoint.pth",
    )
    loaded = load_model("tv:resnet18", weights=tmp_path / "checkpoint.pth")
    assert loaded.num_classes == 5
    assert loaded.checkpoint == {"entry": "model", "prefix_stripped": None}
    assert all(torch.equal(v, loaded.model.state_dict()[k]) for k, v in model.state_dict().items())


def test_safetensors_and_ema_missing(tmp_path):
    model = _small_resnet(4)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    assert load_model("resnet18", weights=tmp_path / "w.safetensors").num_classes == 4
    with pytest.raises(ModelError, match="no EMA weights"):
        load_model("resnet18", weights=tmp_path / "w.safetensors", ema=True)


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    """A fine-tuned model as timm writes it: 160 px input, its own mean/std and label names."""
    folder = tmp_path_factory.mktemp("derm") / "derm-model"
    torch.manual_seed(0)
    model = timm.create_model(
        "resnet18",
        num_classes=2,
        pretrained_cfg_overlay={
            "input_size": (3, 160, 160),
            "mean": (0.6, 0.5, 0.4),
            "std": (0.2, 0.25, 0.3),
            "crop_pct": 0.95,
            "interpolation": "bilinear",
        },
    )
    timm.models.save_for_hf(
        model, str(folder), model_config={"label_names": ["benign", "malignant"]}, safe_serialization=True
    )
    return folder, model.eval()


def test_model_folder(model_folder, tmp_path, samples, run_cli):
    folder, model = model_folder
    for spec in (str(folder), f"local-dir:{folder}"):
        out = tmp_path / spec.replace(":", "_").replace("/", "_")
        result = run_cli("explain", samples / "coffee.png", "-o", out, "-q", "-m", spec, "--top-k", "2")
        assert result.exit_code == 0, result.output
        doc = explanation(out, "coffee.png")
        assert doc["model"]["input_size"] == [160, 160]
        assert doc["model"]["num_classes"] == 2
        assert {p["label"] for p in doc["predictions"]} == {"benign", "malignant"}
        assert doc["preprocess"]["mean"] == [0.6, 0.5, 0.4]
        assert doc["preprocess"]["crop_pct"] == 0.95
        expected = timm_logits(model, samples / "coffee.png").sort(descending=True).values
        torch.testing.assert_close(camcli_logits(doc), expected, rtol=1e-4, atol=1e-4)


def test_hf_hub_model_from_the_local_cache_only(model_folder, tmp_path, monkeypatch, samples, run_cli):
    import huggingface_hub.constants

    folder, _model = model_folder
    cache = tmp_path / "hub"
    snapshot = cache / "models--acme--derm-model" / "snapshots" / ("a" * 40)
    snapshot.parent.mkdir(parents=True)
    os.symlink(folder, snapshot)
    (cache / "models--acme--derm-model" / "refs").mkdir()
    (cache / "models--acme--derm-model" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    loaded = load_model("hf-hub:acme/derm-model")
    assert loaded.labels == ("benign", "malignant")
    assert loaded.data.input_size == (160, 160)
    result = run_cli("explain", samples / "coffee.png", "-o", tmp_path / "o", "-q", "-m", "hf-hub:acme/not-cached")
    assert result.exit_code == 2
    assert "not in the local Hugging Face cache" in result.output
    assert "huggingface-cli download" in result.output


OVERRIDES = [
    ["--input-size", "256"],
    ["--input-size", "192x256", "--interpolation", "bilinear"],
    ["--crop-mode", "squash", "--crop-pct", "1.0"],
    ["--crop-mode", "border", "--input-size", "200x240"],
    ["--crop-mode", "center", "--input-size", "240x192", "--crop-pct", "0.9"],
    ["--mean", "0.5,0.4,0.3", "--std", "0.2,0.2,0.2", "--interpolation", "nearest"],
]


@pytest.mark.parametrize("args", OVERRIDES, ids=[" ".join(a) for a in OVERRIDES])
def test_preprocessing_overrides_equal_timms_eval_transform(args, samples):
    pairs = dict(zip(args[::2], args[1::2], strict=False))
    size = pairs.get("--input-size")
    overrides = Preprocessing(
        input_size=tuple(int(v) for v in size.split("x")) * (2 if "x" not in size else 1) if size else None,
        mean=tuple(float(v) for v in pairs["--mean"].split(",")) if "--mean" in pairs else None,
        std=tuple(float(v) for v in pairs["--std"].split(",")) if "--std" in pairs else None,
        interpolation=pairs.get("--interpolation"),
        crop_pct=float(pairs["--crop-pct"]) if "--crop-pct" in pairs else None,
        crop_mode=pairs.get("--crop-mode"),
    )
    loaded = load_model("resnet18", random_weights=True, preprocess=overrides)
    timm_args = {k: v for k, v in overrides.as_timm_args().items()}
    transform = create_transform(**resolve_data_config(timm_args, model=loaded.model))
    for name in ("chelsea.png", "coffee.png", "rocket.jpg"):
        image, _ = decode(samples / name)
        ours, _ = to_input(image, loaded.data)
        theirs = transform(image)
        assert ours.shape == theirs.shape
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


FACTORY = textwrap.dedent('''
    import torch
    from torch import nn

    class Tiny(nn.Module):
        """A classifier of our own: two conv stages, global pooling, a linear head."""

        def __init__(self, num_classes=4, in_chans=3):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(in_chans, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU()
            )
            self.head = nn.Linear(16, num_classes)

        def forward(self, x):
            return self.head(self.features(x).mean(dim=(2, 3)))

    def build(num_classes=4):
        torch.manual_seed(0)
        return Tiny(num_classes)

    def gray(num_classes=2):
        torch.manual_seed(0)
        return Tiny(num_classes, in_chans=1)

    def binary():
        torch.manual_seed(0)
        return Tiny(1)
''')


@pytest.fixture
def factory_file(tmp_path) -> Path:
    path = tmp_path / "my_models.py"
    path.write_text(FACTORY)
    return path


def _captum_gradcam(model, layer, x, target, negate=False):
    wrapped = model if not negate else torch.nn.Sequential(model, _Negate())
    module = dict(model.named_modules())[layer]
    return LayerGradCam(wrapped, module).attribute(x, target=target, relu_attributions=True)[0, 0].detach()


class _Negate(torch.nn.Module):
    def forward(self, x):
        return -x


def test_own_architecture_from_a_file_and_a_module(factory_file, tmp_path, samples, monkeypatch, run_cli):
    weights = tmp_path / "tiny.pth"
    spec = f"{factory_file}:build"
    module_ns = {}
    exec(compile(FACTORY, "factory", "exec"), module_ns)
    model = module_ns["build"](num_classes=4).eval()
    torch.save(model.state_dict(), weights)
    out = tmp_path / "out"
    result = run_cli(
        "explain",
        samples / "chelsea.png",
        "-o",
        out,
        "-q",
        "-m",
        spec,
        "--weights",
        weights,
        "--top-k",
        "2",
        "--save",
        "raw_map",
    )
    assert result.exit_code == 0, result.output
    doc = explanation(out, "chelsea.png")
    layer = doc["model"]["target_layer"]
    assert layer in ("features", "features.3")  # the last feature map (the Sequential's output is its last ReLU's)
    assert doc["preprocess"]["source"].startswith("timm defaults")
    x = to_input(decode(samples / "chelsea.png")[0], load_model(spec, weights=weights).data)[0][None]
    for exp in doc["explanations"]:
        ref = _captum_gradcam(model, layer, x, exp["class_index"])
        raw = np.load(out / "chelsea.png" / exp["files"]["raw_map"])
        np.testing.assert_allclose(raw, ref.numpy(), atol=1e-5 * float(ref.abs().max()))
    monkeypatch.syspath_prepend(str(factory_file.parent))
    assert load_model("my_models:build", weights=weights).num_classes == 4
    with pytest.raises(ModelError, match="has no callable 'missing'"):
        load_model("my_models:missing", random_weights=True)
    with pytest.raises(ModelError, match="--weights"):
        load_model(spec)


def test_binary_head_explains_both_signs(factory_file, samples, tmp_path):
    spec = f"{factory_file}:binary"
    loaded = load_model(spec, random_weights=True, head="binary")
    assert loaded.labels == ("negative", "positive")
    [result] = Explainer(spec, random_weights=True, head="binary").explain([samples / "coffee.png"], classes=[0, 1])
    x = to_input(decode(samples / "coffee.png")[0], loaded.data)[0][None]
    with torch.no_grad():
        logit = float(loaded.model(x)[0, 0])
    probs = {p[0]: p[3] for p in result.predictions}
    assert probs[1] == pytest.approx(torch.sigmoid(torch.tensor(logit)).item(), rel=1e-5)
    assert probs[0] == pytest.approx(1 - probs[1], rel=1e-5)
    layer = result.explanations[0].params["layers"][0]
    for exp in result.explanations:
        ref = _captum_gradcam(loaded.model, layer, x, 0, negate=exp.class_index == 0)
        np.testing.assert_allclose(exp.raw, ref.numpy(), atol=1e-5 * (float(ref.abs().max()) + 1e-12))
    assert result.record["model"]["head"] == "binary"


def test_multi_label_threshold(factory_file, samples, tmp_path, run_cli):
    spec = f"{factory_file}:build"
    loaded = load_model(spec, random_weights=True, head="sigmoid")
    x = to_input(decode(samples / "chelsea.png")[0], loaded.data)[0][None]
    with torch.no_grad():
        probs = torch.sigmoid(loaded.model(x))[0]
    threshold = float(probs.sort().values[1])  # between: exactly the three most probable pass
    out = tmp_path / "out"
    result = run_cli(
        "explain",
        samples / "chelsea.png",
        "-o",
        out,
        "-q",
        "-m",
        spec,
        "--random-weights",
        "--head",
        "sigmoid",
        "--threshold",
        threshold,
        "--save",
        "raw_map",
    )
    assert result.exit_code == 0, result.output
    doc = explanation(out, "chelsea.png")
    explained = {e["class_index"] for e in doc["explanations"]}
    assert explained == {i for i in range(4) if probs[i] >= threshold}
    assert len(explained) == 3
    for p in doc["predictions"]:
        assert p["probability"] == pytest.approx(float(probs[p["class_index"]]), rel=1e-5)
    exp = doc["explanations"][0]
    ref = _captum_gradcam(loaded.model, doc["model"]["target_layer"], x, exp["class_index"])
    np.testing.assert_allclose(
        np.load(out / "chelsea.png" / exp["files"]["raw_map"]), ref.numpy(), atol=1e-5 * float(ref.abs().max())
    )
    assert doc["model"]["head"] == "sigmoid"


def test_one_channel_model(factory_file, samples, tmp_path, run_cli):
    spec = f"{factory_file}:gray"
    with pytest.raises(ModelError, match=r"--mean 0\.5 --std 0\.5"):
        load_model(spec, random_weights=True)
    out = tmp_path / "out"
    result = run_cli(
        "explain",
        samples / "chelsea.png",
        "-o",
        out,
        "-q",
        "-m",
        spec,
        "--random-weights",
        "--mean",
        "0.5",
        "--std",
        "0.25",
        "--top-k",
        "1",
    )
    assert result.exit_code == 0, result.output
    doc = explanation(out, "chelsea.png")
    assert doc["model"]["in_chans"] == 1
    assert doc["preprocess"]["channels"] == 1
    with Image.open(out / "chelsea.png" / doc["explanations"][0]["files"]["overlay"]) as overlay:
        assert overlay.mode == "RGB"
        assert overlay.size == (451, 300)
    loaded = load_model(spec, random_weights=True, preprocess=Preprocessing(mean=(0.5,), std=(0.25,)))
    transform = create_transform(
        input_size=(1, 224, 224), interpolation="bicubic", mean=(0.5,), std=(0.25,), crop_pct=0.875
    )
    image = decode(samples / "chelsea.png")[0]
    torch.testing.assert_close(to_input(image, loaded.data)[0], transform(image.convert("L")), rtol=0, atol=1e-6)


def test_the_api_takes_the_same_models(model_folder, factory_file, samples):
    folder, _model = model_folder
    [result] = Explainer(str(folder)).explain([samples / "coffee.png"], top_k=1)
    assert result.predictions[0][1] in ("benign", "malignant")
    [result] = Explainer(f"{factory_file}:build", random_weights=True, head="sigmoid").explain(
        [samples / "coffee.png"], top_k=2
    )
    assert len(result.explanations) == 2
    assert sys.modules.get("camcli_user_") is None
