"""Backward rules at every activation (guided backprop, deconvnet), without touching the model's modules.

While a ``Rules`` block is open every activation output is gated, and ``rules.mode(...)`` picks what
the next backward passes do at the gates:

- ``plain``: nothing; the true gradient (saliency, Grad-CAM, FullGrad).
- ``guided`` (Springenberg et al. 2015): at every activation y = f(x) only the positive part of the
  gradient arriving from above passes, times the local derivative: ∂/∂x = f'(x) · max(∂/∂y, 0).
  For ReLU this is exactly the paper's rule (positive gradient, positive forward input); for
  ReLU6 / Hardtanh f' also zeroes the saturated range; for smooth units (SiLU, GELU, Mish,
  Hardswish, ...) it is the natural generalization. The clamp is a gradient hook on the
  activation's *output tensor*, so autograd applies f'(x) itself, whatever f is.
- ``deconv`` (Zeiler & Fergus 2014): the gradient passes an activation as max(∂/∂y, 0) whatever the
  forward input was: f' is skipped. With ``deconv=True`` each activation output is wrapped in a
  function whose backward routes max(∂/∂y, 0) straight to the activation's input in this mode, and
  the gradient to the activation itself otherwise, so one forward serves every mode.

Activations are found two ways while the block is open:
- temporary forward hooks on activation modules (torch's and timm's), removed in ``finally``;
- a ``TorchFunctionMode`` around the forward call (``rules.functional()``) that catches functional
  calls such as ``F.relu(x, inplace=True)`` in torchvision's DenseNet. An ``nn.ReLU`` is seen by both;
  each tensor version is gated once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

ACTIVATION_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.Hardtanh,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Softplus,
)
# timm's own activation classes (used when its memory-efficient or scriptable variants are chosen).
TIMM_ACTIVATIONS = frozenset(
    {
        "Swish",
        "SwishMe",
        "SwishAuto",
        "Mish",
        "MishMe",
        "MishAuto",
        "HardSwish",
        "HardSwishMe",
        "HardMish",
        "HardMishMe",
        "GELU",
        "GELUTanh",
        "QuickGELU",
        "PReLU",
    }
)
ACTIVATION_FUNCTIONS = frozenset(
    {
        F.relu,
        F.relu_,
        torch.relu,
        torch.relu_,
        torch.Tensor.relu,
        torch.Tensor.relu_,
        F.relu6,
        F.hardtanh,
        F.hardtanh_,
        F.leaky_relu,
        F.leaky_relu_,
        F.rrelu,
        F.prelu,
        F.elu,
        F.elu_,
        F.selu,
        F.celu,
        F.gelu,
        F.silu,
        F.mish,
        F.hardswish,
        F.softplus,
    }
)
IN_PLACE_FUNCTIONS = frozenset({F.relu_, torch.relu_, torch.Tensor.relu_, F.hardtanh_, F.leaky_relu_, F.elu_})
MODES = ("plain", "guided", "deconv")


def is_activation(module: nn.Module) -> bool:
    kind = type(module)
    return isinstance(module, ACTIVATION_MODULES) or (
        kind.__name__ in TIMM_ACTIVATIONS and kind.__module__.startswith("timm.")
    )


class _Deconv(torch.autograd.Function):
    """Identity on the activation's output ``y``; its backward follows ``rules.active``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, y: torch.Tensor, rules: Rules) -> torch.Tensor:
        ctx.rules = rules
        return y.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        if ctx.rules.active == "deconv":
            return grad.clamp(min=0), None, None  # straight to the input: f' is skipped
        return None, grad, None


class _FunctionalActivations(TorchFunctionMode):
    """Gates the outputs of functional activation calls made during one forward pass."""

    def __init__(self, rules: Rules) -> None:
        super().__init__()
        self.rules = rules

    def __torch_function__(
        self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        if func not in ACTIVATION_FUNCTIONS:
            return func(*args, **kwargs)
        source = args[0] if args else kwargs.get("input")
        in_place = func in IN_PLACE_FUNCTIONS or bool(kwargs.get("inplace"))
        before = self.rules.input_copy(source, in_place)
        result = func(*args, **kwargs)
        return self.rules.gate(result, before)


class Rules:
    """``with Rules(model, deconv=...) as rules:`` gates every activation until the block ends."""

    def __init__(self, model: nn.Module, deconv: bool = False) -> None:
        self.model = model
        self.deconv = deconv
        self.active = "plain"
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._inputs: dict[nn.Module, torch.Tensor] = {}

    def __enter__(self) -> Rules:
        try:
            for module in self.model.modules():
                if is_activation(module):
                    if self.deconv:
                        self._handles.append(module.register_forward_pre_hook(self._before_activation))
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
        self._inputs.clear()

    def _before_activation(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        source = args[0] if args else None
        copy = self.input_copy(source, bool(getattr(module, "inplace", False)))
        if copy is not None:
            self._inputs[module] = copy

    def _on_activation(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        if isinstance(output, torch.Tensor):
            return self.gate(output, self._inputs.pop(module, None))
        return None

    def input_copy(self, source: Any, in_place: bool) -> torch.Tensor | None:
        """What the deconv rule routes gradient to: the activation's input (a copy if it is overwritten)."""
        if not self.deconv or not isinstance(source, torch.Tensor) or not source.requires_grad:
            return None
        return source.clone() if in_place else source

    def _clamp(self, grad: torch.Tensor) -> torch.Tensor | None:
        return grad.clamp(min=0) if self.active == "guided" else None

    def gate(self, output: Any, source: torch.Tensor | None = None) -> Any:
        """Gate an activation's output: the guided clamp (once per tensor version), and the deconv route."""
        if not isinstance(output, torch.Tensor) or not output.requires_grad:
            return output
        mark = (id(self), output._version)  # an in-place activation makes a new version: gate it too
        if getattr(output, "_camcli_gated", None) != mark:
            output._camcli_gated = mark  # type: ignore[attr-defined]  # our marker, read back above
            output.register_hook(self._clamp)  # type: ignore[no-untyped-call]  # torch leaves it unannotated
        if source is None or getattr(output, "_camcli_deconv", False):
            return output
        routed = _Deconv.apply(source, output, self)
        routed._camcli_deconv = True
        return routed

    @contextmanager
    def functional(self) -> Iterator[None]:
        """Wrap the forward call: also gates functional activation calls (thread-local)."""
        with _FunctionalActivations(self):
            yield

    @contextmanager
    def mode(self, name: str) -> Iterator[None]:
        """Backward passes inside this block follow rule ``name`` (one of MODES)."""
        if name not in MODES:
            raise ValueError(f"unknown backward rule {name!r}")
        self.active = name
        try:
            yield
        finally:
            self.active = "plain"
