"""camcli.evaluate.gates: --max-loc-error, --min-pointing-game, ... parsed from the command line and config
files, and judged against a run's metrics (a gate never passes by default)."""

from __future__ import annotations

import pytest

from camcli.errors import CamcliError
from camcli.evaluate.gates import GATES, evaluate_gates, parse_gate, read_gates_table
from camcli.evaluate.schema import BY_KEY

METRICS: dict[str, dict[str, float | None]] = {
    "gradcam": {"top1_loc_error": 0.4, "pointing_game": 0.8, "energy_pointing_game": None},
    "counterfactual": {"top1_loc_error": 0.9, "pointing_game": 0.2, "energy_pointing_game": 0.1},
}


def test_gates_pass_fail_missing_and_per_method() -> None:
    gates = [
        parse_gate("--max-loc-error", "0.5"),
        parse_gate("min_pointing_game", 0.7),
        parse_gate("min-pointing-game", "counterfactual:0.1"),
        parse_gate("min-energy", "0.05"),
        parse_gate("max-deletion-auc", "gradcam:0.2"),
        parse_gate("min-insertion-auc", "scorecam:0.5"),
    ]
    results = {(r["name"], r["method"]): r for r in evaluate_gates(METRICS, gates)}
    assert set(results) == {
        ("max-loc-error", "gradcam"),
        ("max-loc-error", "counterfactual"),
        ("min-pointing-game", "gradcam"),
        ("min-pointing-game", "counterfactual"),
        ("min-energy", "gradcam"),
        ("min-energy", "counterfactual"),
        ("max-deletion-auc", "gradcam"),
        ("min-insertion-auc", "scorecam"),
    }
    assert results["max-loc-error", "gradcam"]["passed"]
    assert not results["max-loc-error", "counterfactual"]["passed"]
    assert results["min-pointing-game", "counterfactual"] == {  # METHOD:VALUE replaces the plain 0.7 for it
        "name": "min-pointing-game",
        "method": "counterfactual",
        "metric": "pointing_game",
        "threshold": 0.1,
        "value": 0.2,
        "passed": True,
        "reason": None,
    }
    assert not results["min-energy", "gradcam"]["passed"]  # computed over nothing: never a pass
    assert "no image could be scored" in results["min-energy", "gradcam"]["reason"]
    missing = results["max-deletion-auc", "gradcam"]
    assert (missing["passed"], missing["value"]) == (False, None)
    assert missing["reason"] == "not computed: needs --faithfulness"
    assert results["min-insertion-auc", "scorecam"]["reason"] == "method 'scorecam' was not evaluated"
    assert evaluate_gates({}, [gates[0]])[0]["reason"] == "no method was evaluated"


def test_gate_values_and_config_tables_are_checked() -> None:
    for bad, message in [
        ("nan", "not a share"),
        ("inf", "not a share"),
        ("45", "write 0.45 for 45%"),
        ("gradcam:x", "not a number"),
    ]:
        with pytest.raises(CamcliError, match=message):
            parse_gate("min-pointing-game", bad)
    with pytest.raises(CamcliError, match=r"unknown gate 'min-pointing'\. Did you mean min-pointing-game"):
        parse_gate("min-pointing", 0.5)
    table = {"max-loc-error": 0.5, "min_pointing_game": ["0.6", "counterfactual:0.1"]}
    gates = read_gates_table(table, "ci.toml [gates]")
    assert [(g.name, g.method, g.threshold) for g in gates] == [
        ("max-loc-error", None, 0.5),
        ("min-pointing-game", None, 0.6),
        ("min-pointing-game", "counterfactual", 0.1),
    ]
    with pytest.raises(CamcliError, match=r"ci\.toml \[gates\]: unknown gate 'max_loc'"):
        read_gates_table({"max_loc": 0.5}, "ci.toml [gates]")
    with pytest.raises(CamcliError, match="not a share"):
        read_gates_table({"min-energy": float("nan")})
    with pytest.raises(CamcliError, match="is not a number or"):
        read_gates_table({"min-energy": True})


def test_every_gate_bounds_a_known_metric():
    assert set(GATES) == {
        "max-loc-error",
        "min-pointing-game",
        "min-energy",
        "min-insertion-auc",
        "max-deletion-auc",
        "min-road-combined",
        "min-occlusion-correlation",
        "min-sparseness",
        "min-arcc",
    }
    for name, kind in GATES.items():
        assert kind.metric in BY_KEY
        assert name.startswith(kind.bound)
        assert kind.label == BY_KEY[kind.metric].label


def test_gates_on_signed_metrics_take_negative_thresholds():
    assert parse_gate("min-road-combined", "-0.25").threshold == -0.25
    assert parse_gate("min-occlusion-correlation", "gradcam:-1").threshold == -1.0
    with pytest.raises(CamcliError, match="is not between -1 and 1"):
        parse_gate("min-occlusion-correlation", "-1.5")
    with pytest.raises(CamcliError, match="not a share between 0 and 1"):
        parse_gate("min-sparseness", "-0.1")
