"""FullGrad (Srinivas & Fleuret 2019): the input-gradient term and every bias-gradient term of the
network, as saliency maps at the input's resolution.

For class score y: |x ⊙ ∂y/∂x| (each of the 3 channels min-max scaled) plus, for every layer ℓ with
a spatial bias b_ℓ (convolutions with a bias, batch norms: b = β − μ γ / √(σ² + ε)), the sum over
its channels of |b_ℓ,c ⋅ ∂y/∂z_ℓ,c| (z_ℓ the layer's output; each channel map min-max scaled with
ε = 1e-7, then upsampled bilinearly to the input), as pytorch-grad-cam computes it. Its target
layers are all those layers: ``--layer`` does not apply.

Beyond pytorch-grad-cam (which matches the exact types ``Conv2d`` and ``BatchNorm2d``), subclasses
count too, and timm's ``BatchNormAct2d`` is taken before its activation, where its bias acts.
Every layer's channel sum is taken before the upsampling (which is linear): the same map at a
fraction of the cost.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..engine.needs import Needs
from .base import HEAT, Method, Settings, scale_channels

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..engine.capture import Pass, Tap
    from ..engine.probe import Probe


def _bias(module: nn.Module) -> torch.Tensor | None:
    import torch
    from torch import nn

    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        if module.bias is None or module.weight is None or module.running_mean is None or module.running_var is None:
            return None
        return (
            module.bias - module.running_mean * module.weight / torch.sqrt(module.running_var + module.eps)
        ).detach()
    if isinstance(module, nn.Conv2d) and module.bias is not None:
        return module.bias.detach()
    return None


class BiasLayers:
    """The tap: records every bias layer's output during the forward; per class, reduces their
    gradients to one B×H×W map (the sum of all bias terms)."""

    def __init__(self) -> None:
        self._recorded: list[torch.Tensor] = []
        self._biases: list[torch.Tensor] = []

    def attach(self, model: nn.Module, armed: Callable[[], bool]) -> list[torch.utils.hooks.RemovableHandle]:
        from torch import nn

        handles = []
        for module in model.modules():
            bias = _bias(module)
            if bias is None or not isinstance(module, (nn.Conv2d, nn.BatchNorm2d)):
                continue
            act = getattr(module, "act", None)
            if isinstance(module, nn.BatchNorm2d) and isinstance(act, nn.Module):  # timm's BatchNormAct2d
                handles.append(act.register_forward_pre_hook(self._before(bias, armed)))
            else:
                handles.append(module.register_forward_hook(self._after(bias, armed)))
        return handles

    def _record(self, tensor: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        self._recorded.append(tensor)
        self._biases.append(bias)
        return tensor.clone()  # what runs on is a copy: in-place ops after it leave the recorded tensor alone

    def _after(self, bias: torch.Tensor, armed: Callable[[], bool]) -> Callable[..., Any]:
        import torch

        def hook(module: nn.Module, args: object, output: Any) -> Any:
            if armed() and isinstance(output, torch.Tensor) and output.requires_grad:
                return self._record(output, bias)
            return None

        return hook

    def _before(self, bias: torch.Tensor, armed: Callable[[], bool]) -> Callable[..., Any]:
        import torch

        def hook(module: nn.Module, args: tuple[Any, ...]) -> Any:
            if armed() and args and isinstance(args[0], torch.Tensor) and args[0].requires_grad:
                return (self._record(args[0], bias), *args[1:])
            return None

        return hook

    def tensors(self) -> list[torch.Tensor]:
        return list(self._recorded)

    def reduce(self, gradients: Sequence[torch.Tensor | None], x: torch.Tensor) -> torch.Tensor:
        import torch

        from ..maps import upsample

        total = torch.zeros(x.shape[0], *x.shape[-2:], device=x.device)
        for bias, grad in zip(self._biases, gradients, strict=True):
            if grad is None:
                continue
            term = scale_channels((bias.to(grad.dtype)[None, :, None, None] * grad).abs().float(), 1e-7).sum(dim=1)
            total += upsample(term, (int(x.shape[-2]), int(x.shape[-1])))
        return total

    def reset(self) -> None:
        self._recorded.clear()
        self._biases.clear()


class FullGrad(Method):
    name = "fullgrad"
    kind = HEAT
    summary = "FullGrad: input-gradient and bias-gradient terms"
    smoothing = frozenset({"aug"})
    needs = Needs(rules=frozenset({"plain"}), taps=("fullgrad",))

    def compute(self, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        grad_x = p.input_gradients["plain"]  # B×K×3×H×W
        input_term = scale_channels((grad_x * p.x.float()[:, None]).abs(), 1e-7).sum(dim=2)
        return (input_term + p.taps["fullgrad"]).relu()

    def taps(self, s: Settings) -> dict[str, Tap]:
        return {"fullgrad": BiasLayers()}

    def record(self, s: Settings, layers: tuple[str, ...], variant: str | None = None) -> dict[str, Any]:
        return {
            "layers": "every convolution and batch norm with a bias",
            **({"smooth": "aug"} if "aug" in s.smooth else {}),
        }


METHODS = (FullGrad,)
