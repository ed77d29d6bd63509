"""Pass/fail gates for ``camcli evaluate``: ``--max-loc-error``, ``--min-pointing-game``, ... .

Each bounds one metric that has a direction: an error or AUC that should stay low, a share, a score or a
correlation that should stay high. Complexity has no gate: its range, ln(H·W), depends on the model's
input size, so no one threshold would mean the same for every model. ARCC's parts have none of their
own: ``--min-arcc`` bounds them together.

A gate's value is ``VALUE`` (every evaluated method must meet it) or ``METHOD:VALUE`` (that method
only; it replaces a plain value of the same gate for that method). Every gate given is checked,
and a gate whose metric was not computed fails with the reason: a gate never passes by default.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import CamcliError
from .schema import BY_KEY


@dataclass(frozen=True)
class GateKind:
    name: str  # the option without its dashes
    metric: str  # the metric it bounds (``schema.METRICS``)
    bound: Literal["min", "max"]
    low: float = 0.0  # the smallest threshold that means something: 0 for shares, -1 for ROAD and ρ

    @property
    def label(self) -> str:
        return BY_KEY[self.metric].label


GATES = {
    g.name: g
    for g in (
        GateKind("max-loc-error", "top1_loc_error", "max"),
        GateKind("min-pointing-game", "pointing_game", "min"),
        GateKind("min-energy", "energy_pointing_game", "min"),
        GateKind("min-insertion-auc", "insertion_auc", "min"),
        GateKind("max-deletion-auc", "deletion_auc", "max"),
        GateKind("min-road-combined", "road_combined", "min", low=-1.0),
        GateKind("min-occlusion-correlation", "occlusion_correlation", "min", low=-1.0),
        GateKind("min-sparseness", "sparseness", "min"),
        GateKind("min-arcc", "arcc", "min"),
    )
}


@dataclass(frozen=True)
class Gate:
    name: str
    method: str | None  # None: every evaluated method
    threshold: float


def parse_gate(name: str, value: str | float, where: str = "") -> Gate:
    """``--NAME VALUE`` or ``--NAME METHOD:VALUE`` (also from config files: ``where`` says which)."""
    key = name.strip().lstrip("-").replace("_", "-")
    context = f"{where}: " if where else ""
    if key not in GATES:
        close = difflib.get_close_matches(key, list(GATES), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else f" Gates are {', '.join(GATES)}."
        raise CamcliError(f"{context}unknown gate '{name}'.{hint}")
    method: str | None = None
    text = str(value)
    if isinstance(value, str):
        method_text, _, text = value.rpartition(":")
        method = method_text.strip().lower() or None
    if method is not None:
        from .. import methods

        method = methods.ALIASES.get(method, method)
        if method not in methods.names():
            raise CamcliError(
                f"{context}--{key} '{value}' names the method '{method}', which camcli does not know. "
                f"Write VALUE for every method or METHOD:VALUE with one of {', '.join(methods.names())}."
            )
    try:
        threshold = float(text)
    except ValueError:
        raise CamcliError(
            f"{context}--{key} '{value}' is not a number. Write VALUE or METHOD:VALUE, e.g. 0.5 or gradcam:0.5."
        ) from None
    low = GATES[key].low
    if not math.isfinite(threshold) or not low <= threshold <= 1:
        what = "a share between 0 and 1 (write 0.45 for 45%)" if low == 0 else f"between {low:g} and 1"
        raise CamcliError(f"{context}--{key} {text.strip()} is not {what}.")
    return Gate(key, method, threshold)


def read_gates_table(table: Mapping[str, Any], source: str = "[gates]") -> list[Gate]:
    """A config file's ``[gates]`` table: ``min-pointing-game = 0.6`` (or ``min_pointing_game``), a
    ``"METHOD:VALUE"`` string, or a list of those. ``source`` names the table in messages."""
    gates: list[Gate] = []
    for key, value in table.items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, bool) or not isinstance(item, (int, float, str)):
                raise CamcliError(f"{source}: {key} = {item!r} is not a number or a 'METHOD:VALUE' string.")
            gates.append(parse_gate(key, item, source))
    return gates


def _judge(gate: Gate, method: str | None, values: Mapping[str, float | None] | None) -> dict[str, Any]:
    kind = GATES[gate.name]
    value = None if values is None else values.get(kind.metric)
    if values is None:
        reason: str | None = "no method was evaluated" if method is None else f"method '{method}' was not evaluated"
    elif kind.metric not in values:
        reason = f"not computed: needs {BY_KEY[kind.metric].needs}"
    elif value is None or not math.isfinite(value):
        reason = "no image could be scored (none had the ground truth or maps it needs)"
    else:
        reason = None
    passed = (
        reason is None
        and value is not None
        and (value <= gate.threshold if kind.bound == "max" else value >= gate.threshold)
    )
    return {
        "name": gate.name,
        "method": method,
        "metric": kind.metric,
        "threshold": gate.threshold,
        "value": value,
        "passed": passed,
        "reason": reason,
    }


def evaluate_gates(metrics: Mapping[str, Mapping[str, float | None]], gates: Sequence[Gate]) -> list[dict[str, Any]]:
    """One result per (gate, method): {"name", "method", "metric", "threshold", "value", "passed",
    "reason"}. ``metrics`` maps each evaluated method to its metrics (``metrics.json``'s "methods").
    A plain gate applies to every evaluated method without a ``METHOD:VALUE`` gate of the same name."""
    targeted = {(g.name, g.method) for g in gates if g.method is not None}
    results = []
    for gate in gates:
        if gate.method is not None:
            results.append(_judge(gate, gate.method, metrics.get(gate.method)))
            continue
        methods: list[str | None] = [m for m in metrics if (gate.name, m) not in targeted] if metrics else [None]
        results.extend(_judge(gate, m, None if m is None else metrics[m]) for m in methods)
    return results
