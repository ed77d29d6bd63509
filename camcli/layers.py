"""Find the target layer: the last module whose output is a B×C×H×W map with H·W > 1.

Outputs shaped like B×H×W×C (H = W < C, as in Swin stages), batched over windows, or out of
Softmax / Dropout / Identity modules (attention probabilities, pass-throughs) are not candidates.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import nn

from .errors import LayerError
from .layout import Layout


NOT_FEATURE_MAPS = frozenset({"Softmax", "Softmax2d", "Dropout", "Dropout2d", "Identity"})


@dataclass(frozen=True)
class LayerInfo:
    name: str
    kind: str
    shape: tuple[int, ...]  # output shape for a 1×3×H×W input

    @property
    def layout(self) -> Layout:
        return Layout("nchw", (self.shape[2], self.shape[3]))

    @property
    def channels_last(self) -> bool:
        """Looks like B×H×W×C (transformer stages such as Swin's): H = W and C larger."""
        return len(self.shape) == 4 and self.shape[1] == self.shape[2] and self.shape[3] > self.shape[1]

    @property
    def spatial(self) -> bool:
        """A per-image B×C×H×W feature map: batch 1 as probed (not images × windows), H·W > 1,
        and not attention probabilities (heads × tokens × tokens out of a Softmax or its Dropout)."""
        return (len(self.shape) == 4 and self.shape[0] == 1 and self.shape[2] * self.shape[3] > 1
                and not self.channels_last and self.kind not in NOT_FEATURE_MAPS)


def probe_layers(model: nn.Module, input_size: tuple[int, int], channels: int = 3) -> list[LayerInfo]:
    """Every named module's output shape, in the order the outputs are produced.

    Runs one zero input through the model with temporary hooks, removed in ``finally``.
    Modules whose output is not a single tensor are left out; a module called more than once
    keeps its last output.
    """
    seen: dict[str, LayerInfo] = {}
    handles = []

    def hook_for(name: str):
        def hook(module: nn.Module, args, output) -> None:
            if isinstance(output, torch.Tensor):
                seen.pop(name, None)  # re-insert so dict order follows the last call
                seen[name] = LayerInfo(name, type(module).__name__, tuple(output.shape))

        return hook

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = {m: m.training for m in model.modules()}
    try:
        for name, module in model.named_modules():
            if name:
                handles.append(module.register_forward_hook(hook_for(name)))
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, channels, *input_size, device=device))
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in was_training.items():
            module.training = mode
    return list(seen.values())


def resolve_layer(model: nn.Module, input_size: tuple[int, int], name: Optional[str] = None,
                  probed: Optional[list[LayerInfo]] = None) -> LayerInfo:
    """The layer named ``name``, or the default: the last spatial 4-D output."""
    layers = probe_layers(model, input_size) if probed is None else probed
    if name is None:
        spatial = [info for info in layers if info.spatial]
        if not spatial:
            raise LayerError("This model has no layer with a 4-D spatial output, so Grad-CAM cannot be applied.")
        return spatial[-1]
    by_name = {info.name: info for info in layers}
    if name not in by_name:
        all_names = [n for n, _ in model.named_modules() if n]
        close = difflib.get_close_matches(name, all_names, n=5, cutoff=0.5)
        hint = f" Close names: {', '.join(close)}." if close else ""
        raise LayerError(f"No layer named '{name}' produces a tensor output.{hint} See 'camcli layers MODEL' for candidates.")
    info = by_name[name]
    if info.channels_last:
        raise LayerError(
            f"Layer '{name}' outputs {list(info.shape)}, which looks like B×H×W×C (channels last); Grad-CAM "
            "here needs B×C×H×W feature maps. Pick a convolutional layer from 'camcli layers MODEL'."
        )
    if not info.spatial:
        raise LayerError(
            f"Layer '{name}' outputs shape {list(info.shape)}, not a B×C×H×W map with H·W > 1. "
            "Pick a layer from 'camcli layers MODEL'."
        )
    return info


def resolve_layers(model: nn.Module, input_size: tuple[int, int], names: Sequence[str] = (),
                   channels: int = 3) -> tuple[LayerInfo, ...]:
    """The named layers (in the order given, each once), or the default layer."""
    probed = probe_layers(model, input_size, channels)
    if not names:
        return (resolve_layer(model, input_size, probed=probed),)
    return tuple(resolve_layer(model, input_size, name, probed) for name in dict.fromkeys(names))
