"""camcli.evaluate.job: what `camcli evaluate` is asked to do, checked before any model loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from camcli.errors import CamcliError
from camcli.evaluate.job import CORRELATION_STRIDE, CORRELATION_WINDOW, EvaluateJob, parse_percentiles
from camcli.job import ExplainJob
from camcli.methods.occlusion import Occlusion

TRUTH = Path("boxes.csv")


def test_a_job_needs_ground_truth_and_takes_its_folder_from_the_explain_job():
    job = EvaluateJob(ExplainJob(out=Path("o")), annotations=TRUTH)
    assert job.out == Path("o")
    assert EvaluateJob(ExplainJob(), masks=Path("masks")).masks == Path("masks")
    with pytest.raises(CamcliError, match=r"needs ground truth: --annotations FILE .* --masks DIR"):
        EvaluateJob(ExplainJob())


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"loc_threshold": 0.0}, "--loc-threshold 0.0 is outside (0, 1)"),
        ({"loc_threshold": 1.0}, "--loc-threshold 1.0 is outside (0, 1)"),
        ({"steps": 1}, "--steps must be at least 2"),
        ({"source": Path("run"), "explain": ExplainJob(shard=(0, 2))}, "--shard splits the images to explain"),
        ({"source": Path("run"), "explain": ExplainJob(runner="ray")}, "--runner ray has nothing to run"),
        ({"sanity": True, "explain": ExplainJob(shard=(1, 2))}, "--sanity randomizes the model"),
        ({"correlation_window": 8, "correlation_stride": 9}, "--correlation-stride 9 is not between 1 and"),
    ],
)
def test_contradictions_are_usage_errors(fields, message):
    with pytest.raises(CamcliError) as info:
        EvaluateJob(**{"explain": ExplainJob(), "annotations": TRUTH, **fields})
    assert message in str(info.value)


def test_road_percentiles_and_occlusion_defaults():
    assert parse_percentiles(()) == (10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0)  # pytorch-grad-cam's
    assert parse_percentiles(("70,30", "50", 30)) == (30.0, 50.0, 70.0)  # a config file's list may hold numbers
    for bad, message in (("0", "between 0 and 100"), ("10,100", "100 is not"), ("ten", "is not a list")):
        with pytest.raises(CamcliError, match=message):
            parse_percentiles((bad,))
    defaults = {p.name: p.default for p in Occlusion.params}  # the correlation's occlusion is the method's
    assert (str(CORRELATION_WINDOW), CORRELATION_STRIDE) == (defaults["window"][0], defaults["stride"])
    from camcli.cli import evaluate

    options = {p.name: p.default for p in evaluate.params}
    assert (options["correlation_window"], options["correlation_stride"]) == (CORRELATION_WINDOW, CORRELATION_STRIDE)
