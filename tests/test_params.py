"""camcli.params: one declaration gives the option's name, its check and its error message."""

from __future__ import annotations

import math

import pytest

from camcli import methods, runners
from camcli.errors import CamcliError
from camcli.params import Param, integer, key_of, number, resolve

# A whole-number parameter as a method declares one (checked as --occlusion-window when "occlusion" owns it).
WINDOW = Param("window", int, 32, "window side in input pixels", low=1, metavar="N")
RAY = {p.name: p for p in runners.REGISTRY["ray"].params}  # workers: many ints; gpus_per_worker: a float ≥ 0


def test_names_derive_from_the_owner_and_the_parameter():
    assert key_of("gradcam++") == "gradcampp"
    assert key_of("Guided GradCAM") == "guided-gradcam"
    assert key_of("guided-gradcam") == "guided-gradcam"
    assert WINDOW.option("occlusion") == "--occlusion-window"
    assert WINDOW.keyword("occlusion") == "occlusion_window"
    assert RAY["gpus_per_worker"].option("ray") == "--ray-gpus-per-worker"
    assert RAY["gpus_per_worker"].keyword("ray") == "ray_gpus_per_worker"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("16", 16), (" 16 ", 16), (16, 16), (16.0, 16), ("1e1", 10)],
)
def test_whole_numbers_are_taken_as_text_or_values(value, expected):
    got = WINDOW.check(value, "occlusion")
    assert got == expected
    assert type(got) is int


@pytest.mark.parametrize(
    ("value", "wanted"),
    [
        ("2.5", "is not a whole number"),
        (2.5, "is not a whole number"),
        (True, "whole number"),
        (False, "whole number"),
        ("inf", "is not a finite whole number"),
        (math.inf, "is not a finite whole number"),
        ("nan", "is not a finite whole number"),
        ("sixteen", "whole number"),
        (None, "whole number"),
        ("0", "is not a whole number with 1 ≤ value"),
        (-3, "is not a whole number with 1 ≤ value"),
    ],
)
def test_whole_numbers_refuse_fractions_booleans_infinities_and_out_of_range(value, wanted):
    with pytest.raises(CamcliError) as info:
        WINDOW.check(value, "occlusion")
    message = str(info.value)
    assert message.startswith("--occlusion-window ")  # names the option
    assert wanted in message
    assert message.endswith("Pass e.g. --occlusion-window 32.")  # the option and what to pass


def test_floats_refuse_nan_and_respect_open_and_closed_bounds():
    gpus = RAY["gpus_per_worker"]  # low 0, inclusive
    assert gpus.check("0", "ray") == 0.0
    assert type(gpus.check(1, "ray")) is float
    assert gpus.check("0.25", "ray") == 0.25
    for bad, wanted in [("nan", "a finite number"), (math.nan, "a finite number"), ("-0.5", "0 ≤ value")]:
        with pytest.raises(CamcliError, match="--ray-gpus-per-worker") as info:
            gpus.check(bad, "ray")
        assert wanted in str(info.value)
    power = Param("power", float, 1.0, "exponent", low=0.0, low_open=True, high=4.0, high_open=True)
    assert power.check("3.5", "toycam") == 3.5
    for edge in ("0", "4", "4.5"):
        with pytest.raises(CamcliError, match=r"--toycam-power .* is not a number with 0 < value < 4\. "):
            power.check(edge, "toycam")
    assert power.range_text() == "a number with 0 < value < 4"
    assert Param("x", int, 1, "").range_text() == "a whole number"


def test_text_choices_and_booleans():
    mode = Param("mode", str, "fast", "how", choices=("fast", "exact"))
    assert mode.check(" exact ", "m") == "exact"
    with pytest.raises(CamcliError, match=r"--m-mode 'slow' is not one of fast, exact\. Pass e.g\. --m-mode fast\."):
        mode.check("slow", "m")
    with pytest.raises(CamcliError, match=r"--m-mode None is not text"):
        mode.check(None, "m")
    assert Param("label", str, "x", "").check(3, "m") == "3"  # a number in a config file, taken as its text
    flag = Param("flag", bool, False, "on or off")
    assert [flag.check(v, "m") for v in ("yes", "ON", "1", True, "false", "no", "0", False)] == [True] * 4 + [False] * 4
    with pytest.raises(CamcliError, match=r"--m-flag 'maybe' is not true or false\. Pass e.g\. --m-flag false\."):
        flag.check("maybe", "m")


def test_many_takes_comma_separated_lists_each_item_checked():
    workers = RAY["workers"]
    assert workers.check("2", "ray") == (2,)
    assert workers.check("1, 4", "ray") == (1, 4)
    assert workers.check([1, "3"], "ray") == (1, 3)
    assert workers.check(5, "ray") == (5,)  # one value: a list of one
    for bad, wanted in [([], "a comma-separated list"), ("1,x", "whole number"), ("", "whole number")]:
        with pytest.raises(CamcliError, match="--ray-workers") as info:
            workers.check(bad, "ray")
        assert wanted in str(info.value)
    with pytest.raises(CamcliError, match="1 ≤ value"):
        workers.check("0,2", "ray")
    assert Param("sizes", int, (1, 2), "", many=True).describe_default() == "1,2"


def test_resolve_fills_defaults_and_names_the_known_options():
    declared = (WINDOW, Param("stride", int, 16, "step", low=1))
    assert resolve("occlusion", declared, {}) == {"window": 32, "stride": 16}
    assert resolve("occlusion", declared, {"stride": "8"}) == {"window": 32, "stride": 8}
    with pytest.raises(CamcliError, match=r"occlusion has no option 'size'\. Its options: --occlusion-window, "):
        resolve("occlusion", declared, {"size": 3})
    assert set(resolve("occlusion", methods.get("occlusion").params, {})) == {
        p.name for p in methods.get("occlusion").params
    }  # a real declaration: every parameter gets a value
    with pytest.raises(CamcliError, match="Its options: none"):
        resolve("gradcam", (), {"size": 3})


def test_typed_accessors_refuse_the_wrong_type():
    assert integer(3) == 3
    assert number(3) == 3.0
    assert number(2.5) == 2.5
    for bad in (True, 2.5, "3"):
        with pytest.raises(TypeError):
            integer(bad)
    for bad in (True, "3", (1,)):
        with pytest.raises(TypeError):
            number(bad)
