"""How a layer's output is laid out, and its view as B×C×h×w feature maps.

Methods compute on feature maps B×C×h×w. A layer may produce them in another layout; an adapter
turns its output (and the gradient of that output) into maps and, for methods that feed modified
maps back into the network (Ablation-CAM), maps back into the layer's own layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Layout:
    """``nchw``: maps as they are."""

    kind: str = "nchw"
    grid: tuple[int, int] = (0, 0)  # (h, w) of the map

    def to_map(self, output: torch.Tensor) -> torch.Tensor:
        """The layer's output (or its gradient) as B×C×h×w."""
        return output

    def from_map(self, maps: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Maps back in the layer's own layout (``like`` is an output of the layer, for what maps lack)."""
        return maps

    def describe(self) -> dict[str, object]:
        return {"layout": self.kind, "grid": list(self.grid)}
