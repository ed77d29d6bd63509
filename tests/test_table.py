"""camcli.evaluate.table: metrics.json as a text table for stderr, metrics in a fixed order, then the gates."""

from __future__ import annotations

from camcli.evaluate.gates import evaluate_gates, parse_gate
from camcli.evaluate.table import format_table

METRICS: dict[str, dict[str, float | None]] = {
    "gradcam": {"top1_loc_error": 0.4, "pointing_game": 0.8, "energy_pointing_game": None},
    "counterfactual": {"top1_loc_error": 0.9, "pointing_game": 0.2, "energy_pointing_game": 0.1},
}


def test_table_lists_methods_metrics_and_gates() -> None:
    gates = evaluate_gates(METRICS, [parse_gate("max-loc-error", 0.5), parse_gate("max-deletion-auc", "gradcam:0.3")])
    methods = {
        # known metrics in schema order whatever the dict's order; unknown keys after them, sorted
        "gradcam": {"zeta": 3, "average_drop_pct": 12.345, **METRICS["gradcam"], "alpha": "x"},
        "counterfactual": METRICS["counterfactual"],
    }
    assert format_table({"methods": methods, "gates": gates}).splitlines() == [
        "metric                gradcam  counterfactual",
        "top-1 loc. error        0.400           0.900",
        "pointing game           0.800           0.200",
        "energy pointing game      n/a           0.100",  # n/a: computed over nothing
        "average drop %           12.3               -",  # -: not computed; a percentage to one decimal
        "alpha                       x               -",
        "zeta                        3               -",
        "",
        "gates",
        "  max-loc-error ≤ 0.5     gradcam         0.400  PASS",
        "  max-loc-error ≤ 0.5     counterfactual  0.900  FAIL",
        "  max-deletion-auc ≤ 0.3  gradcam         n/a    FAIL  not computed: needs --faithfulness",
    ]


def test_parts_without_content_are_left_out() -> None:
    assert format_table({}) == ""
    assert format_table({"methods": {"gradcam": {}}}) == ""
    gates = evaluate_gates({}, [parse_gate("min-energy", 0.5)])
    assert format_table({"gates": gates}).splitlines() == [
        "",
        "gates",
        "  min-energy ≥ 0.5    n/a  FAIL  no method was evaluated",
    ]
