"""Grad-CAM (and guided backprop) for k classes of a whole batch from one forward pass.

Plain mode: the target layer's output is detached and re-enters the network as a leaf that
requires grad; the forward below it runs under ``no_grad`` (no graph, no saved activations) and
the graph starts at that leaf. Gradients of the k selected logits are taken with
``torch.autograd.grad`` with respect to that leaf only: parameters' ``.grad`` are never touched.

Guided mode: the input requires grad and the whole graph is kept; the same forward serves the
plain gradients at the target layer (for the CAM) and then, with the guided gate on, the k
input gradients (guided backprop).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .errors import LayerError
from .guided import GuidedBackprop

ClassChooser = Callable[[torch.Tensor], torch.Tensor]  # logits B×C → class indices B×K


@dataclass(frozen=True)
class CamBatch:
    """Everything the engine computed for one batch, on the model's device."""

    logits: torch.Tensor  # B×C, float32
    classes: torch.Tensor  # B×K, long
    activations: torch.Tensor  # B×C'×h×w, the target layer's output A
    weights: torch.Tensor  # B×K×C', α^c_k: spatially averaged ∂y^c/∂A^k
    guided: Optional[torch.Tensor] = None  # B×K×3×H×W guided-backprop input gradients (guided mode)

    def cam(self, sign: float = 1.0) -> torch.Tensor:
        """B×K×h×w ReLU(Σ_k α_k A^k); ``sign=-1`` gives the counterfactual map."""
        return F.relu(torch.einsum("bkc,bchw->bkhw", sign * self.weights, self.activations))


class GradCam:
    """Hooks ``layer`` of ``model`` (and, with ``guided``, its activations) for a ``with`` block.

    On exit the hooks are removed and every module's train/eval mode restored, also after an
    exception, so the caller's model is left as it was.
    """

    def __init__(self, model: nn.Module, layer: str, guided: bool = False, channels_last: bool = False) -> None:
        modules = dict(model.named_modules())
        if layer not in modules:
            raise LayerError(f"No layer named '{layer}'. See 'camcli layers MODEL'.")
        self.model = model
        self.layer = layer
        self._module = modules[layer]
        self._handle: Optional[torch.utils.hooks.RemovableHandle] = None
        self._modes: dict[nn.Module, bool] = {}
        self._activation: Optional[torch.Tensor] = None
        self._guided = GuidedBackprop(model) if guided else None
        self.channels_last = channels_last
        self._original_data: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __enter__(self) -> "GradCam":
        self._modes = {m: m.training for m in self.model.modules()}
        self.model.eval()
        try:
            if self.channels_last:
                # Conv kernels run faster in NHWC; the caller's own tensors are put back on exit.
                for tensor in [*self.model.parameters(), *self.model.buffers()]:
                    if tensor.dim() == 4 and id(tensor) not in self._original_data:
                        self._original_data[id(tensor)] = (tensor, tensor.data)
                        tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
            self._handle = self._module.register_forward_hook(self._capture)
            if self._guided is not None:
                self._guided.__enter__()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self._handle is not None:
                self._handle.remove()
            if self._guided is not None:
                self._guided.__exit__()
        finally:
            self._handle = None
            self._activation = None
            for module, mode in self._modes.items():
                module.training = mode
            for tensor, data in self._original_data.values():
                tensor.data = data
            self._original_data.clear()

    def _capture(self, module: nn.Module, args: object, output: torch.Tensor) -> torch.Tensor:
        if self._activation is not None:
            raise LayerError(f"Layer '{self.layer}' runs more than once per forward pass; pick a layer that runs once.")
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            raise LayerError(f"Layer '{self.layer}' does not output a B×C×H×W tensor.")
        # A copy goes on, so in-place ops downstream (e.g. F.relu(..., inplace=True)) leave A intact.
        if self._guided is not None:
            self._activation = output
            return output.clone()
        torch.set_grad_enabled(True)  # the graph starts here; restored when the no_grad block exits
        self._activation = output.detach().float().requires_grad_(True)
        return self._activation.to(output.dtype).clone()

    def __call__(self, x: torch.Tensor, choose: ClassChooser) -> CamBatch:
        """Forward ``x`` once and return α (and guided input gradients) for the classes ``choose`` picks."""
        if self._handle is None:
            raise RuntimeError("GradCam must be used inside a 'with' block")
        self._activation = None
        guided = self._guided
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        try:
            if guided is None:
                with torch.no_grad():
                    logits = self.model(x)
            else:
                x = x.detach().requires_grad_(True)
                with torch.enable_grad(), guided.functional():
                    logits = self.model(x)
            activation = self._activation
            if activation is None:
                raise LayerError(f"Layer '{self.layer}' was not run by the model's forward pass.")
            logits = logits.float()
            classes = choose(logits.detach())
            selected = logits.gather(1, classes)
            k = classes.shape[1]
            keep = guided is not None
            alphas = [
                torch.autograd.grad(selected[:, j].sum(), activation, retain_graph=keep or j < k - 1)[0].mean(dim=(2, 3))
                for j in range(k)
            ]
            input_grads = None
            if guided is not None:
                with guided.guiding():
                    input_grads = torch.stack(
                        [torch.autograd.grad(selected[:, j].sum(), x, retain_graph=j < k - 1)[0] for j in range(k)], dim=1
                    )
        finally:
            self._activation = None
        return CamBatch(logits.detach(), classes, activation.detach().float(), torch.stack(alphas, dim=1).float(),
                        None if input_grads is None else input_grads.float())
