"""camcli.session: a job resolved once against a model (tests: conftest's TinyNet, passed as ``loaded``).

The settings fingerprint (what --resume compares) must change with every setting that shapes an image's
outputs and with nothing else; run.json's options are derived from the job."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from camcli import methods as registry
from camcli.errors import CamcliError
from camcli.job import ExplainJob
from camcli.session import default_workers, resolve, resolve_device
from camcli.targets import Targets

BASE = ExplainJob(
    inputs=(Path("in"),),
    out=Path("out"),
    methods=("gradcam", "occlusion"),
    method_params={"occlusion": {"window": "8", "stride": 8}},
    top_k=2,
)

# Each changes what an image's files hold (or, batch size, their rounding: --resume keeps whole batches
# bit-identical), so an image done under BASE must be redone.
SHAPING = {
    "method parameter": {"method_params": {"occlusion": {"window": "16", "stride": 8}}},
    "another method": {"methods": ("gradcam", "occlusion", "layercam")},
    "method order": {"methods": ("occlusion", "gradcam")},
    "smooth": {"smooth": frozenset({"aug"})},
    "colormap": {"colormap": "hot"},
    "alpha": {"alpha": 0.3},
    "top_k": {"top_k": 3},
    "classes": {"classes": ("class_1",)},
    "threshold": {"threshold": 0.5},
    "layer": {"layers": ("features.0",)},
    "save": {"save": frozenset({"raw_map"})},
    "overlay format": {"overlay_format": "jpg"},
    "precision": {"precision": "bf16"},
    "max pixels": {"max_pixels": 1000},
    "batch size": {"batch_size": 4},
}
# Each changes how the run goes, not what it writes: images done under BASE are kept.
NOT_SHAPING = {
    "quiet": {"quiet": True},
    "workers": {"workers": 3},
    "resume": {"resume": False},
    "json lines": {"json_lines": True},
    "config": {"config": "nightly.toml"},
    "inputs": {"inputs": (Path("in"), Path("more"))},
    "include": {"include": ("*.png",)},
    "exclude": {"exclude": ("*.jpg",)},
    "out": {"out": Path("elsewhere")},
    "shard": {"shard": (1, 3)},
    "device spelled otherwise": {"device": "cpu"},
    "ray runner": {"runner": "ray", "runner_params": {"workers": "2"}},
}


OCCLUSION = {p.name: p for p in registry.get("occlusion").params}
RECORDED = {name: p.record for name, p in OCCLUSION.items()}


def _occlusion(**given) -> dict:
    """Occlusion's parameters with ``given`` checked as the command line's text would be, the rest defaults."""
    return {name: p.check(given[name], "occlusion") if name in given else p.default for name, p in OCCLUSION.items()}


@pytest.fixture(scope="module")
def base(tiny_model):
    return resolve(BASE, tiny_model)


def test_a_session_is_the_job_made_concrete(base, tiny_model):
    assert base.loaded is tiny_model
    assert base.device == torch.device("cpu")
    assert [info.name for info in base.layers] == ["features"]  # the default: the last feature map
    assert base.methods == ("gradcam", "occlusion")
    assert base.params["gradcam"] == {}
    assert base.params["occlusion"] == _occlusion(window="8", stride=8)  # the job's values, checked
    assert base.targets == Targets((), 2, None, tiny_model.head)
    assert base.workers == default_workers()
    assert base.channels_last  # a convolutional model on the CPU, no input-space gradients
    assert base.ctx.model["name"] == "module:TinyNet"
    assert base.ctx.model["input_size"] == [32, 32]
    assert base.ctx.model["layers"] == [{"name": "features", "layout": "nchw", "grid": [16, 16]}]
    assert base.ctx.preprocess == tiny_model.data.describe()
    assert len(base.fingerprint) == 32
    assert resolve(BASE, tiny_model).fingerprint == base.fingerprint  # derived, not random


@pytest.mark.parametrize("change", list(SHAPING.values()), ids=list(SHAPING))
def test_fingerprint_changes_with_every_setting_that_shapes_the_outputs(base, tiny_model, change):
    assert resolve(dataclasses.replace(BASE, **change), tiny_model).fingerprint != base.fingerprint


@pytest.mark.parametrize("change", list(NOT_SHAPING.values()), ids=list(NOT_SHAPING))
def test_fingerprint_ignores_how_the_run_goes(base, tiny_model, change):
    assert resolve(dataclasses.replace(BASE, **change), tiny_model).fingerprint == base.fingerprint


def test_explaining_other_classes_or_methods_changes_the_fingerprint(base):
    other = base.with_targets(dataclasses.replace(base.targets, per_image={"a.png": (3,)}))
    assert other.fingerprint != base.fingerprint
    assert other.targets.per_image == {"a.png": (3,)}
    fewer = base.with_methods(("occlusion",))
    assert fewer.methods == ("occlusion",)
    assert fewer.params == {"occlusion": _occlusion(window="8", stride=8)}  # as the job gave them
    assert fewer.job.methods == ("occlusion",)
    assert fewer.fingerprint != base.fingerprint
    assert base.with_methods(("gradcam", "occlusion")).fingerprint == base.fingerprint


def test_the_run_record_is_derived_from_the_job(tiny_model, tmp_path):
    job = dataclasses.replace(
        BASE,
        inputs=(tmp_path / "a.png", tmp_path / "folder"),
        out=tmp_path / "out",
        include=("*.png",),
        exclude=("x*",),
        classes=("class_3", "1", "3"),  # by label and index; duplicates once
        threshold=0.4,
        smooth=frozenset({"eigen", "aug"}),
        save=frozenset({"overlay", "map"}),
        overlay_format="webp",
        colormap="gray",
        alpha=0.25,
        workers=2,
        resume=False,
        config="c.toml",
        max_pixels=5000,
        batch_size=3,
    )
    session = resolve(job, tiny_model)
    record = session.run_record()
    assert record["fingerprint"] == session.fingerprint
    assert record["model"] == session.ctx.model
    assert record["device"] == "cpu"
    assert record["camcli"]
    expected = {
        "inputs": [str(tmp_path / "a.png"), str(tmp_path / "folder")],
        "include": ["*.png"],
        "exclude": ["x*"],
        "methods": ["gradcam", "occlusion"],
        "params": {"occlusion": {k: v for k, v in session.params["occlusion"].items() if RECORDED[k]}},
        "smooth": "aug,eigen",
        "classes": [3, 1],
        "top_k": 2,
        "threshold": 0.4,
        "batch_size": 3,
        "device": "cpu",
        "precision": "fp32",
        "save": ["json", "map", "overlay"],
        "overlay_format": "webp",
        "colormap": "gray",
        "alpha": 0.25,
        "max_pixels": 5000,
        "workers": 2,
        "out": str(tmp_path / "out"),
        "resume": False,
        "config": "c.toml",
        "runner": "local",
    }
    assert {key: record["options"].get(key) for key in expected} == expected


def test_classes_are_resolved_once_and_top_k_is_capped(tiny_model):
    session = resolve(ExplainJob(classes=("CLASS_2", "2"), top_k=9), tiny_model)
    assert session.targets.classes == (2,)
    assert session.targets.top_k == 4  # the model has four classes
    with pytest.raises(CamcliError, match="Unknown class 'class_9'"):
        resolve(ExplainJob(classes=("class_9",)), tiny_model)


def test_what_needs_the_model_is_checked_when_it_is_known(tiny_model):
    too_big = ExplainJob(methods=("occlusion",), method_params={"occlusion": {"window": "48"}})  # fine without a model
    with pytest.raises(CamcliError, match=r"--occlusion-window 48.* is larger than the model input \(32×32\)"):
        resolve(too_big, tiny_model)
    with pytest.raises(CamcliError, match="Layer 'unused' receives no gradient from the class scores"):
        resolve(ExplainJob(layers=("unused",)), tiny_model)
    assert resolve(ExplainJob(layers=("unused",), methods=("eigencam",)), tiny_model).layers[0].name == "unused"
    assert not resolve(ExplainJob(methods=("gradcam", "guided-backprop")), tiny_model).channels_last


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the messages of a machine without CUDA")
def test_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "mps")
    with pytest.raises(
        CamcliError, match=r"Device 'cuda:1' was requested but CUDA is not available here\. Use --device"
    ):
        resolve_device("cuda:1")
