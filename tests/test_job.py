"""camcli.job: the frozen requests and the checks that need no model (usage errors before torch loads)."""

from __future__ import annotations

import dataclasses
import math
import pickle
from pathlib import Path

import pytest

from camcli import methods
from camcli.choices import DEFAULT_SAVE
from camcli.errors import CamcliError
from camcli.job import (
    MAX_INPUT_SIDE,
    ExplainJob,
    ModelSpec,
    Preprocessing,
    check_whole,
    parse_floats,
    parse_save,
    parse_size,
    top_k,
)


def test_defaults_and_derived_values():
    job = ExplainJob()
    assert (job.methods, job.k, job.save, job.runner) == (("gradcam",), 3, DEFAULT_SAVE, "local")
    assert job.params == {"gradcam": {}}
    assert job.runner_options == {}
    occlusion = ExplainJob(methods=("gradcam", "occlusion"), method_params={"occlusion": {"stride": "8"}})
    assert occlusion.params["gradcam"] == {}
    assert occlusion.params["occlusion"]["stride"] == 8  # given, checked; the others their defaults
    assert set(occlusion.params["occlusion"]) == {p.name for p in methods.get("occlusion").params}
    ray = ExplainJob(runner="ray", runner_params={"workers": "1,2"})
    assert ray.runner_options == {"address": "", "workers": (1, 2), "gpus_per_worker": 0.0}


def test_a_job_is_frozen_and_travels_to_other_processes():
    job = ExplainJob(
        inputs=(Path("a.png"),),
        model=ModelSpec("resnet18", random_weights=True, preprocess=Preprocessing(input_size=(64, 64))),
        classes=("espresso",),
        smooth=frozenset({"aug"}),
        method_params={"gradcam": {}},
    )
    assert pickle.loads(pickle.dumps(job)) == job
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.top_k = 5  # type: ignore[misc]


def test_top_k():
    assert top_k(None, (), None) == 3  # the default
    assert top_k(None, ("espresso",), None) == 0  # named classes only
    assert top_k(None, (), 0.5) == 0  # the classes above the threshold only
    assert top_k(2, ("espresso",), 0.5) == 2  # as given
    assert ExplainJob(top_k=0, classes=("1",)).k == 0
    assert ExplainJob(threshold=0.2).k == 0
    with pytest.raises(CamcliError, match=r"Nothing to explain: --top-k 0 and no --class\. Pass --top-k K"):
        ExplainJob(top_k=0)
    with pytest.raises(CamcliError, match="--top-k -1 must be a whole number of at least 0"):
        ExplainJob(top_k=-1)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"batch_size": 0}, "--batch-size 0 must be a whole number of at least 1"),
        ({"batch_size": True}, "--batch-size True must be a whole number"),
        ({"batch_size": 2.5}, "--batch-size 2.5 must be a whole number"),
        ({"workers": 0}, "--workers 0 must be a whole number of at least 1"),
        ({"alpha": math.nan}, "--alpha must be a finite number, not nan"),
        ({"alpha": math.inf}, "--alpha must be a finite number, not inf"),
        ({"alpha": 1.5}, "--alpha 1.5 is outside 0-1"),
        ({"threshold": 1.5}, "--threshold 1.5 is not a probability"),
        ({"threshold": math.nan}, "--threshold nan is not a probability"),
        ({"device": "gpu"}, "Unknown device 'gpu'. Use auto, cpu, cuda, cuda:N or mps."),
        ({"device": "cuda:x"}, "Unknown device"),
        ({"precision": "fp64"}, "Unknown precision 'fp64'. Use one of fp32, bf16, fp16."),
        ({"precision": "fp16", "device": "cpu"}, "--precision fp16 needs a GPU"),
        ({"smooth": frozenset({"eigen"}), "methods": ("saliency",)}, "--smooth eigen applies to none"),
        ({"method_params": {"occlusion": {"stride": 8}}}, "Add it: --method gradcam,occlusion."),
        ({"runner": "slurm"}, "Unknown runner 'slurm'. Use one of local, ray."),
        ({"runner_params": {"workers": 2}}, "local has no option 'workers'"),
        ({"runner": "ray", "runner_params": {"workers": "4,1"}}, "MIN <= MAX"),
    ],
)
def test_usage_errors_say_what_to_pass(fields, message):
    with pytest.raises(CamcliError) as info:
        ExplainJob(**fields)
    assert message in str(info.value)


def test_devices_are_spelled_right_without_torch():
    for device in ("auto", "cpu", "mps", "cuda", "cuda:0", "cuda:12"):
        assert ExplainJob(device=device).device == device


def test_parse_save():
    assert parse_save([]) == DEFAULT_SAVE
    assert parse_save(["overlay,MAP", " raw_map "]) == {"overlay", "map", "raw_map"}
    assert parse_save(["json"]) == frozenset()  # explanation.json only (always written)
    with pytest.raises(CamcliError) as info:
        parse_save(["overlay,heatmap"])
    assert str(info.value).startswith("Unknown --save value(s): heatmap. Use any of overlay,map,raw_map,json")


def test_parse_size_and_its_limit():
    assert parse_size("384") == (384, 384)
    assert parse_size("384x512") == (384, 512)
    assert parse_size("384×512") == (384, 512)
    assert parse_size("8X4096") == (8, MAX_INPUT_SIDE)
    assert MAX_INPUT_SIDE == 4096
    for bad in ("4097", "224x4097", "7", "0x224"):
        with pytest.raises(CamcliError, match=r"outside 8 to 4096 pixels a side\. Pass the size the model was"):
            parse_size(bad)
    for bad in ("big", "1x2x3", "", "224x"):
        with pytest.raises(CamcliError, match=r"is not N or HxW \(e\.g\. 384 or 384x512\)"):
            parse_size(bad)


def test_parse_floats_takes_commas_and_toml_lists():
    assert parse_floats("mean", "0.5,0.25,0") == (0.5, 0.25, 0.0)
    assert parse_floats("std", "[0.5, 0.5, 0.5]") == (0.5, 0.5, 0.5)
    with pytest.raises(CamcliError, match=r"--std 'a,b' is not comma-separated numbers"):
        parse_floats("std", "a,b")


def test_preprocessing_overrides_are_checked():
    given = Preprocessing(input_size=(64, 96), mean=(0.5,), crop_pct=1.0)
    assert given.any
    assert not Preprocessing().any
    assert given.given() == ("--input-size", "--mean", "--crop-pct")
    assert given.as_timm_args() == {"mean": (0.5,), "crop_pct": 1.0, "input_size": (3, 64, 96)}
    for fields, message in [
        ({"mean": (0.5, 0.5)}, "--mean takes 1 or 3 finite numbers"),
        ({"std": (math.nan,)}, "--std takes 1 or 3 finite numbers"),
        ({"std": (0.5, 0.0, 0.5)}, "--std values must be positive"),
        ({"crop_pct": 0.0}, "--crop-pct 0.0 is outside (0, 1.5]"),
        ({"crop_pct": math.inf}, "--crop-pct inf is outside (0, 1.5]"),
        ({"input_size": (4, 224)}, "--input-size 4×224 is outside 8 to 4096"),
    ]:
        with pytest.raises(CamcliError) as info:
            Preprocessing(**fields)
        assert message in str(info.value)


def test_model_spec_is_checked():
    assert ModelSpec().name == "tf_efficientnet_lite0"
    with pytest.raises(CamcliError, match=r"Unknown head 'logits'\. Use one of softmax, sigmoid, binary\."):
        ModelSpec(head="logits")
    for bad in (0, True):
        with pytest.raises(CamcliError, match=r"--num-classes .* must be a whole number of at least 1"):
            ModelSpec(num_classes=bad)


def test_check_whole():
    assert check_whole("top-k", 0, low=0) == 0
    with pytest.raises(CamcliError, match=r"--top-k '3' must be a whole number"):
        check_whole("top-k", "3")
