"""Target layers: which outputs are feature maps, in what layout, and which one is the default.

One probe (a seeded random image, batch 1, eval mode, hooks removed in ``finally``) records every
module's output and the gradient of the top class score at each. An output is a *candidate* when it
is a grid of image positions: B×C×h×w (``nchw``), B×h×w×C (``nhwc``, Swin stages) or a token
sequence B×N×C whose last h·w tokens are the patch grid after ``prefix`` class/distillation/register
tokens (``tokens``), where h×w is the input seen at some stride s (h = ⌊H/s⌋ or ⌈H/s⌉, likewise w).
The grid and prefix come from the output itself and the model's ``num_prefix_tokens``, never from a
table. Not candidates: outputs batched over windows, attention probabilities and pass-throughs
(Softmax, Dropout, Identity), anything inside an attention module (q/k/v projections), and modules
that run more than once per forward pass.

**The default rule**: the last candidate (in the order outputs are produced) at whose positions the
classifier's input has a gradient, at half of them or more (the classifier's input, not the class
scores, so that untrained heads, which timm and torchvision initialize to zero, do not hide it).
For pooled models that is the final stage; for
class-token transformers, whose last outputs reach the head through the class token alone, it is
the input of the last attention (its keys and values carry every patch), as pytorch-grad-cam
recommends for ViTs.

**For segmentation models** the default is the end of the image encoder, as pytorch-grad-cam's
segmentation tutorial picks (``backbone.layer4`` of torchvision's FCN and DeepLabV3): the last
candidate inside the model's ``backbone`` (torchvision) or ``encoder`` (segmentation-models-pytorch).
A model with neither gets the last candidate at its coarsest grid that is not the class logits (taken
to be the last map's channels): an encoder-decoder's bottleneck, or the classifier's input.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .engine.capture import model_lock
from .errors import LayerError
from .heads import logits_of
from .layout import Layout

NOT_FEATURE_MAPS = frozenset({"Softmax", "Softmax2d", "Dropout", "Dropout2d", "Identity", "DropPath"})
LIVE = 0.5  # share of positions that must receive gradient for the default


@dataclass(frozen=True)
class LayerInfo:
    """One module's output for a 1×C×H×W input."""

    name: str
    kind: str  # the module's class
    shape: tuple[int, ...]
    layout: Layout | None  # None: not a grid of image positions
    reason: str = ""  # why it is not a candidate ("" when it is)
    live: float = -1.0  # share of grid positions with a gradient from the top class (-1: not measured)

    @property
    def candidate(self) -> bool:
        return self.layout is not None and not self.reason

    @property
    def site(self) -> tuple[str, Layout]:
        """(name, layout) as the engine hooks it; only grids of image positions have one."""
        if self.layout is None:
            raise ValueError(f"Layer '{self.name}' ({self.kind}) is not a grid of image positions.")
        return self.name, self.layout

    def describe(self) -> dict[str, Any]:
        assert self.layout is not None
        return {"name": self.name, **self.layout.describe()}


def plausible_grid(h: int, w: int, size: tuple[int, int]) -> bool:
    """An h×w grid is the input seen at some integer stride s (both sides rounded the same way)."""
    height, width = size
    if h * w <= 1:
        return False
    return any(
        (h, w) in ((height // s, width // s), (-(-height // s), -(-width // s)))
        for s in range(1, max(height, width) + 1)
    )


def token_grid(n: int, size: tuple[int, int], prefixes: Sequence[int]) -> tuple[int, tuple[int, int]] | None:
    """(prefix, (h, w)) such that n − prefix tokens form a plausible grid, trying ``prefixes`` in order."""
    aspect = size[0] / size[1]
    for prefix in dict.fromkeys(prefixes):
        m = n - prefix
        if m <= 1:
            continue
        grids = [(h, m // h) for h in range(1, m + 1) if m % h == 0 and plausible_grid(h, m // h, size)]
        if grids:
            return prefix, min(grids, key=lambda g: abs(g[0] / g[1] - aspect))
    return None


def layout_of(shape: tuple[int, ...], size: tuple[int, int], prefix_hint: int) -> Layout | None:
    """The layout of an output of ``shape`` for an input of ``size`` (H, W), or None."""
    if len(shape) == 4:
        if plausible_grid(shape[2], shape[3], size):
            return Layout("nchw", (shape[2], shape[3]))
        if plausible_grid(shape[1], shape[2], size):
            return Layout("nhwc", (shape[1], shape[2]))
    if len(shape) == 3 and shape[2] > 1:
        found = token_grid(shape[1], size, (prefix_hint, 0, 1, 2))
        if found:
            return Layout("tokens", found[1], found[0])
    return None


def _prefix_tokens(model: nn.Module) -> int:
    """timm's ``num_prefix_tokens``; torchvision's ViT has one class token."""
    n = getattr(model, "num_prefix_tokens", None)
    if isinstance(n, int):
        return n
    return 1 if isinstance(getattr(model, "class_token", None), torch.Tensor) else 0


def _attention_modules(model: nn.Module) -> set[str]:
    """Attention modules (not the blocks that hold one): their insides are queries, keys and values."""
    return {
        name
        for name, m in model.named_modules()
        if name
        and re.search("Att(n|ention)|MHSA|GPSA|XCA", type(m).__name__)
        and not re.search("Block|Layer|Stage", type(m).__name__)
    }


def probe_layers(model: nn.Module, input_size: tuple[int, int], channels: int = 3) -> list[LayerInfo]:
    """Every named module's output, in the order produced, with its layout and gradient coverage."""
    outputs: dict[str, tuple[str, torch.Tensor]] = {}
    calls: dict[str, int] = {}
    handles = []

    def hook_for(name: str) -> Callable[[nn.Module, object, Any], None]:
        def hook(module: nn.Module, args: object, output: Any) -> None:
            calls[name] = calls.get(name, 0) + 1
            if isinstance(output, torch.Tensor):
                outputs.pop(name, None)  # re-insert so the order follows the last call
                outputs[name] = (type(module).__name__, output)

        return hook

    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    lock = model_lock(model)
    lock.acquire()
    modes = {m: m.training for m in model.modules()}
    try:
        for name, module in model.named_modules():
            if name:
                handles.append(module.register_forward_hook(hook_for(name)))
        model.eval()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            x = torch.randn(1, channels, *input_size, device=device)
        head = _classifier(model)
        seen: list[tuple[Any, Any]] = []
        if head is not None:
            handles.append(
                head.register_forward_hook(lambda m, args, out: seen.append((args[0] if args else None, out)))
            )
        with torch.enable_grad():
            scores = logits_of(model(x.requires_grad_(True)))
            # The classifier's input, when the classifier's output is what the model returns; else the output.
            target = seen[0][0] if len(seen) == 1 and seen[0][1] is scores else scores
            grads = _gradients(target, [out for _, out in outputs.values()])
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in modes.items():
            module.training = mode
        lock.release()
    prefix = _prefix_tokens(model)
    inside_attention = _attention_modules(model)
    infos = []
    for (name, (kind, out)), grad in zip(outputs.items(), grads, strict=True):
        shape = tuple(out.shape)
        layout = layout_of(shape, input_size, prefix) if shape and shape[0] == 1 else None
        reason = _reason(name, kind, shape, layout, calls[name], inside_attention)
        if not reason and layout is not None and _repeats_one_position(out.detach(), layout):
            reason = "repeats one position over its grid (a 1×1 map spread out), so it locates nothing"
        infos.append(LayerInfo(name, kind, shape, layout, reason, _coverage(grad, layout)))
    return _family_rules(model, infos)


def _family_rules(model: nn.Module, infos: list[LayerInfo]) -> list[LayerInfo]:
    """The rules a family truly needs, all in this one place.

    Hiera keeps its tokens in "unrolled" order (each mask unit contiguous) until its strides are all
    consumed: only outputs at the final grid are row-major.
    """
    if type(getattr(model, "unroll", None)).__name__ == "Unroll":
        grids = [i.layout.grid for i in infos if i.candidate and i.layout is not None and i.layout.kind == "tokens"]
        final = min(grids, key=lambda g: g[0] * g[1]) if grids else None
        return [
            dataclasses.replace(i, reason="Hiera: tokens in unrolled order before the last stage")
            if i.candidate and i.layout is not None and i.layout.kind == "tokens" and i.layout.grid != final
            else i
            for i in infos
        ]
    return infos


def _classifier(model: nn.Module) -> nn.Module | None:
    """The final classifier (timm's ``get_classifier()``, else the last Linear): what reaches its input
    reaches every class score, whatever its weights (untrained heads start at zero)."""
    get = getattr(model, "get_classifier", None)
    if callable(get):
        head = get()
        return head if isinstance(head, nn.Module) else None
    linear = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linear[-1] if linear else None


def _gradients(target: Any, tensors: list[torch.Tensor]) -> list[torch.Tensor | None]:
    """Gradients, at each tensor, of a fixed random projection of ``target`` (the classifier's input, or
    the class scores): None where there is none."""
    wanted = [i for i, t in enumerate(tensors) if t.requires_grad and t.is_floating_point()]
    found: list[torch.Tensor | None] = [None] * len(tensors)
    if not isinstance(target, torch.Tensor) or not target.requires_grad or not wanted:
        return found
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        weights = torch.randn(target.shape, device=target.device, dtype=target.dtype)
    got = torch.autograd.grad((target * weights).sum(), [tensors[i] for i in wanted], allow_unused=True)
    for i, g in zip(wanted, got, strict=True):
        found[i] = g
    return found


def _coverage(grad: torch.Tensor | None, layout: Layout | None) -> float:
    if layout is None:
        return -1.0
    if grad is None:
        return 0.0
    per_position = layout.to_map(grad.detach()).abs().sum(dim=1)  # 1×h×w
    return float((per_position > 0).float().mean())


def _repeats_one_position(output: torch.Tensor, layout: Layout) -> bool:
    """Every position holds the same non-zero vector (for the probe's random image): an adaptive pooling
    that upsamples a 1×1 map (VGG's avgpool at small inputs) is a grid in shape only. (A layer silent for
    the probe, all zeros, says nothing about its grid: its units may just not fire on noise.)"""
    maps = layout.to_map(output.float())
    top = float(maps.abs().max())
    return top > 0 and bool((maps - maps[..., :1, :1]).abs().max() <= 1e-6 * top)


def _reason(
    name: str, kind: str, shape: tuple[int, ...], layout: Layout | None, calls: int, inside_attention: set[str]
) -> str:
    if not shape or shape[0] != 1:
        return "batched over windows, not one map per image"
    if layout is None:
        return "not a grid of image positions"
    if kind in NOT_FEATURE_MAPS:
        return "a pass-through or attention probabilities"
    if any(name.startswith(a + ".") for a in inside_attention):
        return "inside an attention module (queries, keys, values)"
    if calls > 1:
        return f"runs {calls} times per forward pass"
    return ""


def activation_bytes(infos: list[LayerInfo]) -> int:
    """What one image's forward pass holds in module outputs (float32): sizes batches of perturbed forwards."""
    total = 0
    for info in infos:
        count = 1
        for side in info.shape:
            count *= side
        total += 4 * count
    return total


ENCODERS = ("backbone", "encoder")  # where segmentation models keep their image encoder (torchvision; smp)


def default_layer(infos: list[LayerInfo], task: str = "classify") -> LayerInfo:
    """The default rule (see the module docstring)."""
    candidates = [info for info in infos if info.candidate]
    live = [info for info in candidates if info.live < 0 or info.live >= LIVE]
    if live and task == "segment":
        return _encoder_end(live)
    if live:
        return live[-1]
    if candidates:
        raise LayerError(
            "No layer of this model gives a map: its feature-map layers "
            f"({', '.join(i.name for i in candidates[-3:])}) receive no gradient from the class score. "
            "Pick a layer with --layer NAME; 'camcli layers MODEL --all' lists every output."
        )
    raise LayerError(
        "This model has no layer whose output is a grid of image positions, so it cannot be explained "
        "with a CAM. 'camcli layers MODEL --all' lists every output."
    )


def _encoder_end(live: list[LayerInfo]) -> LayerInfo:
    for prefix in ENCODERS:
        inside = [info for info in live if info.name.startswith(prefix + ".")]
        if inside:
            return inside[-1]
    logits = live[-1].shape[1]  # the last map is the class logits' (before any upsampling): not them
    features = [info for info in live if info.shape[1] != logits] or live
    area = {info.name: info.layout.grid[0] * info.layout.grid[1] for info in features if info.layout is not None}
    coarsest = min(area.values())
    return [info for info in features if area.get(info.name) == coarsest][-1]


def resolve_layer(
    model: nn.Module,
    input_size: tuple[int, int],
    name: str | None = None,
    probed: list[LayerInfo] | None = None,
    channels: int = 3,
    task: str = "classify",
) -> LayerInfo:
    """The layer named ``name``, or the default for the model's task."""
    infos = probe_layers(model, input_size, channels) if probed is None else probed
    if name is None:
        return default_layer(infos, task)
    by_name = {info.name: info for info in infos}
    if name not in by_name:
        all_names = [n for n, _ in model.named_modules() if n]
        close = difflib.get_close_matches(name, all_names, n=5, cutoff=0.5)
        hint = f" Close names: {', '.join(close)}." if close else ""
        raise LayerError(
            f"No layer named '{name}' produces a tensor output.{hint} See 'camcli layers MODEL' for candidates."
        )
    info = by_name[name]
    if not info.candidate:
        raise LayerError(
            f"Layer '{name}' outputs {list(info.shape)}: {info.reason}, so it cannot be explained as a B×C×H×W map. "
            "Pick a layer from 'camcli layers MODEL'."
        )
    return info


def resolve_layers(
    model: nn.Module,
    input_size: tuple[int, int],
    names: Sequence[str] = (),
    channels: int = 3,
    probed: list[LayerInfo] | None = None,
    task: str = "classify",
) -> tuple[LayerInfo, ...]:
    """The named layers (in the order given, each once), or the default layer for the model's task."""
    probed = probe_layers(model, input_size, channels) if probed is None else probed
    if not names:
        return (default_layer(probed, task),)
    return tuple(resolve_layer(model, input_size, name, probed) for name in dict.fromkeys(names))
