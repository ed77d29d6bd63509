"""camcli.methods (the registry): names and aliases, --smooth, and every method's parameters resolved and
checked before any model loads."""

from __future__ import annotations

import pytest

from camcli import methods
from camcli.errors import CamcliError
from camcli.methods.base import Method


def test_registry_lists_the_default_first_and_knows_each_kind():
    names = methods.names()
    assert names[0] == methods.DEFAULT == "gradcam"
    assert len(names) == len(set(names))
    assert {"gradcam++", "occlusion", "saliency", "guided-backprop", "guided-gradcam"} <= set(names)
    assert methods.is_heat("gradcam")
    assert methods.is_heat("occlusion")
    assert methods.kind("guided-backprop") == "pixel"
    assert methods.get("occlusion").key == "occlusion"
    assert methods.get("gradcam++").key == "gradcampp"
    assert isinstance(methods.load("layercam"), Method)
    assert {methods.get(name).origin for name in ("gradcam", "occlusion", "saliency")} == {"camcli"}


def test_parse_methods_takes_aliases_commas_repeats_and_keeps_order():
    assert methods.parse_methods(["GradCAMpp, grad-cam", "vanilla,guided", "gradcam"]) == (
        "gradcam++",
        "gradcam",
        "saliency",
        "guided-backprop",
    )
    assert methods.parse_methods([]) == ("gradcam",)
    assert methods.parse_methods([" , "]) == ("gradcam",)
    with pytest.raises(CamcliError) as info:
        methods.parse_methods(["gradcam,gradcan"])
    message = str(info.value)
    assert message.startswith("Unknown method 'gradcan'.")
    assert all(name in message for name in methods.names())
    assert "--method gradcam,scorecam" in message


def test_parse_smoothing():
    assert methods.parse_smoothing(None) == frozenset()
    assert methods.parse_smoothing("aug,eigen") == {"aug", "eigen"}
    assert methods.parse_smoothing(["aug", " EIGEN "]) == {"aug", "eigen"}
    assert methods.parse_smoothing(("aug", "aug,")) == {"aug"}
    assert methods.parse_smoothing("") == frozenset()
    with pytest.raises(CamcliError, match=r"Unknown --smooth 'blur'\. Use aug, eigen, or both: --smooth aug,eigen\."):
        methods.parse_smoothing("aug,blur")


def test_smoothing_must_apply_to_a_method_asked_for():
    methods.check_methods(("saliency", "gradcam"), frozenset({"aug", "eigen"}), {})
    methods.check_methods(("fullgrad",), frozenset({"aug"}), {})
    with pytest.raises(CamcliError, match="--smooth eigen applies to none of the methods asked for") as info:
        methods.check_methods(("fullgrad", "saliency"), frozenset({"eigen"}), {})
    assert "gradcam" in str(info.value)
    assert "fullgrad," not in str(info.value)  # only the methods it applies to are named


def test_resolve_params_fills_defaults_and_checks_values():
    defaults = {p.name: p.default for p in methods.get("occlusion").params}
    assert methods.resolve_params(("gradcam", "occlusion"), {}) == {"gradcam": {}, "occlusion": defaults}
    given = methods.resolve_params(("occlusion",), {"occlusion": {"stride": "8"}})["occlusion"]
    assert given == {**defaults, "stride": 8}  # checked and converted: text from the command line
    with pytest.raises(CamcliError, match=r"^--occlusion-stride 2\.5 is not a whole number\."):
        methods.resolve_params(("occlusion",), {"occlusion": {"stride": 2.5}})


def test_a_value_for_a_method_not_asked_for_is_an_error_that_says_how_to_ask():
    with pytest.raises(CamcliError) as info:
        methods.resolve_params(("gradcam", "layercam"), {"occlusion": {"window": "16"}})
    message = str(info.value)
    assert message.startswith("--occlusion-window, --occlusion-stride")  # the method's options
    assert "set for occlusion, which is not among the methods asked for (gradcam, layercam)" in message
    assert message.endswith("Add it: --method gradcam,layercam,occlusion.")


def test_occlusion_checks_stride_against_window_and_window_against_the_input():
    methods.resolve_params(("occlusion",), {"occlusion": {"window": "16", "stride": 16}})
    with pytest.raises(CamcliError, match=r"--occlusion-stride 20 is larger than .*--occlusion-window 16"):
        methods.resolve_params(("occlusion",), {"occlusion": {"window": "16", "stride": 20}})
    big = {"occlusion": {"window": "300", "stride": 16}}
    methods.resolve_params(("occlusion",), big)  # the input size is not known yet: nothing to compare
    methods.resolve_params(("occlusion",), big, input_size=(320, 320))
    with pytest.raises(CamcliError) as info:
        methods.resolve_params(("occlusion",), big, input_size=(224, 224))
    message = str(info.value)
    assert message.startswith("--occlusion-window 300")
    assert "is larger than the model input (224×224)" in message
    assert "Pass a window of at most 224 (e.g. 32)." in message


def test_split_options_pops_given_method_keywords_only():
    options = {"occlusion_window": 8, "occlusion_stride": None, "top_k": 2}
    assert methods.split_options(options) == {"occlusion": {"window": 8}}
    assert options == {"top_k": 2}  # not given (None) is taken out too


def test_a_declaration_that_is_not_a_method_is_refused():
    class NoName(Method):
        name = "Has Capitals"

    class BadKind(Method):
        name = "badkind"
        kind = "volume"

    with pytest.raises(TypeError, match="not a subclass"):
        methods.MethodInfo.of(object, "test")
    with pytest.raises(TypeError, match="lower-case method name"):
        methods.MethodInfo.of(NoName, "test")
    with pytest.raises(TypeError, match="kind must be one of heat, pixel"):
        methods.MethodInfo.of(BadKind, "test")
