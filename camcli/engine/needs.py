"""What a method needs from the engine's pass. Light (no torch): methods declare it at import, and the
command line reads methods' declarations before torch loads."""

from __future__ import annotations

from dataclasses import dataclass

RULES = ("plain", "guided", "deconv")  # backward rules for input gradients (see ``engine.rules``)


@dataclass(frozen=True)
class Needs:
    """What a method needs from the pass; the engine serves the union of every method's needs."""

    layer_gradients: bool = False
    rules: frozenset[str] = frozenset()  # input gradients under these backward rules
    taps: tuple[str, ...] = ()  # names of taps (see ``Capture``'s ``taps``)
    # Hessian-vector products H·A of each class score at the target layers (ShapleyCAM): the layer
    # gradients keep their graph (create_graph), and attention runs unfused so it can be differentiated twice.
    hessian: bool = False

    def __or__(self, other: Needs) -> Needs:
        return Needs(
            self.layer_gradients or other.layer_gradients,
            self.rules | other.rules,
            tuple(dict.fromkeys(self.taps + other.taps)),
            self.hessian or other.hessian,
        )


NOTHING = Needs()  # a pass that needs only the target layers' activations
