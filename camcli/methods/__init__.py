"""The explanation methods, by name.

This module is light (no torch): the command line checks ``--method`` before the heavy
libraries load. Each method's maths live in its own module, imported on first use.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import CamcliError


@dataclass(frozen=True)
class MethodInfo:
    """A registered method: ``kind`` "cam" maps live on the target layer's grid, "pixel" maps on the input."""

    name: str
    kind: str
    summary: str


_REGISTRY = (
    MethodInfo("gradcam", "cam", "Grad-CAM: ReLU(Σ_k α_k A^k), α the spatially averaged gradient"),
    MethodInfo("counterfactual", "cam", "ReLU(Σ_k −α_k A^k): regions whose removal would raise the score"),
    MethodInfo("guided-backprop", "pixel", "input gradient with every activation guided"),
    MethodInfo("guided-gradcam", "pixel", "guided backprop ⊙ Grad-CAM upsampled to the input"),
)
REGISTRY = {m.name: m for m in _REGISTRY}
METHODS = tuple(REGISTRY)
ALIASES: dict[str, str] = {}
CAM_METHODS = tuple(m.name for m in _REGISTRY if m.kind == "cam")
GUIDED_METHODS = ("guided-backprop", "guided-gradcam")


def parse_methods(specs: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Comma-separated, repeatable method names (or aliases) → unique names in the order given."""
    names = [n.strip().lower() for spec in specs for n in spec.split(",") if n.strip()]
    resolved = []
    for name in names:
        name = ALIASES.get(name, name)
        if name not in REGISTRY:
            raise CamcliError(
                f"Unknown method '{name}'. Use one or more of: {', '.join(METHODS)} "
                "(e.g. --method gradcam,guided-gradcam)."
            )
        resolved.append(name)
    return tuple(dict.fromkeys(resolved)) or ("gradcam",)


def needs_guided(methods: tuple[str, ...]) -> bool:
    return any(m in GUIDED_METHODS for m in methods)
