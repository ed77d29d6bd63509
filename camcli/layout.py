"""How a layer's output is laid out, and its view as B×C×h×w feature maps.

Methods compute on feature maps B×C×h×w. Convolutional layers produce them as they are (``nchw``);
Swin-style stages produce B×h×w×C (``nhwc``); transformers produce token sequences B×N×C whose
first ``prefix`` tokens (class, distillation, register tokens) are not image positions and whose
other h·w tokens are the patch grid in row-major order (``tokens``). An adapter turns an output
(and the gradient of that output) into maps and, for methods that feed modified maps back into the
network (Ablation-CAM), maps back into the layer's own layout, prefix tokens unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

KINDS = ("nchw", "nhwc", "tokens")


@dataclass(frozen=True)
class Layout:
    kind: str = "nchw"
    grid: tuple[int, int] = (0, 0)  # (h, w) of the map
    prefix: int = 0  # tokens before the patch grid

    def to_map(self, output: torch.Tensor) -> torch.Tensor:
        """The layer's output (or its gradient) as B×C×h×w."""
        if self.kind == "nhwc":
            return output.permute(0, 3, 1, 2)
        if self.kind == "tokens":
            h, w = self.grid
            patches = output[:, self.prefix :, :]
            return patches.reshape(output.shape[0], h, w, output.shape[-1]).permute(0, 3, 1, 2)
        return output

    def from_map(self, maps: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Maps back in the layer's own layout; ``like`` is an output of the layer (one image), which gives
        the prefix tokens."""
        if self.kind == "nhwc":
            return maps.permute(0, 2, 3, 1).contiguous()
        if self.kind == "tokens":
            n = maps.shape[0]
            tokens = maps.permute(0, 2, 3, 1).reshape(n, -1, maps.shape[1])
            return torch.cat([like[:1, : self.prefix].to(tokens.dtype).expand(n, -1, -1), tokens], dim=1)
        return maps

    def describe(self) -> dict[str, object]:
        return {
            "layout": self.kind,
            "grid": list(self.grid),
            **({"prefix_tokens": self.prefix} if self.kind == "tokens" else {}),
        }
