"""Guided backpropagation for every activation type, without touching the model's modules.

Rule: at every activation y = f(x), only the positive part of the incoming gradient is passed
back, times the local derivative: ∂L/∂x = f'(x) · max(∂L/∂y, 0). For ReLU this is exactly the
paper's rule (positive gradient, positive forward input); for ReLU6 / Hardtanh the derivative
also zeroes the saturated range; for smooth units (SiLU, GELU, Mish, Hardswish, ...) it is the
natural generalization. The clamp is a gradient hook on each activation's *output tensor*, so
autograd applies f'(x) itself, whatever f is.

Activations are found two ways while a ``GuidedBackprop`` block is open:
- temporary forward hooks on activation modules (torch's and timm's), removed in ``finally``;
- a ``TorchFunctionMode`` around the forward call that catches functional calls such as
  ``F.relu(x, inplace=True)`` in torchvision's DenseNet. An ``nn.ReLU`` is seen by both; each
  tensor version is gated once.
The gate is switchable (``enabled``) so one forward pass can serve both the plain gradients that
Grad-CAM needs and the guided gradients of the input.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

ACTIVATION_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU,
    nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish, nn.Softplus,
)
# timm's own activation classes (used when its memory-efficient or scriptable variants are chosen).
TIMM_ACTIVATIONS = frozenset({
    "Swish", "SwishMe", "SwishAuto", "Mish", "MishMe", "MishAuto", "HardSwish", "HardSwishMe",
    "HardMish", "HardMishMe", "GELU", "GELUTanh", "QuickGELU", "PReLU",
})
ACTIVATION_FUNCTIONS = frozenset({
    F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_,
    F.relu6, F.hardtanh, F.hardtanh_, F.leaky_relu, F.leaky_relu_, F.rrelu, F.prelu,
    F.elu, F.elu_, F.selu, F.celu, F.gelu, F.silu, F.mish, F.hardswish, F.softplus,
})


def is_activation(module: nn.Module) -> bool:
    kind = type(module)
    return isinstance(module, ACTIVATION_MODULES) or (
        kind.__name__ in TIMM_ACTIVATIONS and kind.__module__.startswith("timm.")
    )


class _FunctionalActivations(TorchFunctionMode):
    """Gates the outputs of functional activation calls made during one forward pass."""

    def __init__(self, guided: "GuidedBackprop") -> None:
        super().__init__()
        self.guided = guided

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        if func in ACTIVATION_FUNCTIONS:
            self.guided.gate(result)
        return result


class GuidedBackprop:
    """``with GuidedBackprop(model) as guided:`` hooks every activation module until the block ends."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.enabled = False
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> "GuidedBackprop":
        try:
            for module in self.model.modules():
                if is_activation(module):
                    self._handles.append(module.register_forward_hook(self._on_activation))
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._remove()

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _on_activation(self, module: nn.Module, args: object, output: object) -> None:
        if isinstance(output, torch.Tensor):
            self.gate(output)

    def _clamp(self, grad: torch.Tensor) -> torch.Tensor | None:
        return grad.clamp(min=0) if self.enabled else None

    def gate(self, tensor: torch.Tensor) -> None:
        """Clamp the gradient arriving at ``tensor`` while guidance is enabled (once per version)."""
        if not isinstance(tensor, torch.Tensor) or not tensor.requires_grad:
            return
        mark = (id(self), tensor._version)  # an in-place activation makes a new version: gate it too
        if getattr(tensor, "_camcli_guided", None) != mark:
            tensor._camcli_guided = mark
            tensor.register_hook(self._clamp)

    @contextmanager
    def functional(self) -> Iterator[None]:
        """Wrap the forward call: also gates functional activation calls (thread-local)."""
        with _FunctionalActivations(self):
            yield

    @contextmanager
    def guiding(self) -> Iterator[None]:
        """Backward passes inside this block are guided."""
        self.enabled = True
        try:
            yield
        finally:
            self.enabled = False
