"""LeGrad (Bousselham et al. 2024, "LeGrad: An Explainability Method for Vision Transformers via Feature
Formation Sensitivity", arXiv 2404.03214): the sensitivity of each attention block's class score to that
block's attention probabilities, averaged over blocks.

For every chosen attention block l (``blocks``: the last N; 0, the default, for every block) with output
tokens z^l (B×N×D) and post-softmax attention probabilities A^l (B×heads×N×N):

    s^l = y^c(classifier(norm(mean over tokens of z^l))),    E^l = mean over heads and queries of ReLU(∂s^l/∂A^l),

the prefix keys (class, distillation, register tokens) dropped from E^l, which leaves the patch grid, and
L = (1/|blocks|) Σ_l E^l, shown min-max scaled. The block's score uses the model's own final norm and
classifier on the mean of all tokens, as the authors' code (``ln_post`` of the token mean) and torchcam's
``LeGrad`` (``heads(encoder.ln(tokens.mean(1)))`` for torchvision) do; for timm models that is
``head(fc_norm(norm(mean)))`` (distilled models average ``head`` and ``head_dist``, as their inference
does), the ``score_projection`` one passes torchcam for them. y^c is the score ``--score`` selects.

The attention probabilities: timm's attention calls fused scaled-dot-product attention and
torchvision's ``nn.MultiheadAttention`` a fused kernel, neither forming A. LeGrad runs its own forward
inside ``engine.attention.ExplicitAttention``, a torch function mode that computes those calls as
softmax(q kᵀ / √d) v with A an ordinary tensor the output depends on, and records A; forward hooks on
the blocks (removed in ``finally``) say which block each A and each z^l belongs to. Nothing in the model
is changed. timm attention built unfused (``fused_attn`` off) forms A itself and passes it through its
``attn_drop`` module, whose output is recorded instead.

Relation to the references: torchcam's ``LeGrad`` averages over the blocks it is given, and camcli by
default over every block; the authors' code starts at a chosen depth (the last two blocks by default),
which ``--legrad-blocks 2`` reproduces. Shared work: that forward runs once per batch, with gradients, for
all images and classes (the engine's own pass, without gradients, chooses the classes); then one backward
per class and block, from the block's score to its attention only (through that block and the
classifier), all images at once. Each class has its own gradients, so classes cannot share a backward.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import CamcliError
from ..params import Param, integer
from .base import HEAT, Method, Settings

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..engine.capture import Pass
    from ..engine.probe import Probe


@dataclass(frozen=True)
class Transformer:
    """A vision transformer as LeGrad reads it: its attention blocks in order, the classifier that scores a
    block's tokens (B×N×D → B×C logits), and how many prefix tokens come before the patch grid."""

    blocks: tuple[nn.Module, ...]
    score: Callable[[torch.Tensor], torch.Tensor]
    prefix: int


def transformer(model: nn.Module) -> Transformer | None:
    """torchvision's ``VisionTransformer``, or a timm vision transformer (``blocks`` whose members hold an
    ``attn``, a final ``norm`` and a ``head``, no attention-pooling head); None for anything else."""
    import torch
    from torch import nn

    encoder = getattr(model, "encoder", None)
    layers, final = getattr(encoder, "layers", None), getattr(encoder, "ln", None)
    heads = getattr(model, "heads", None)
    if (
        isinstance(layers, nn.Module)
        and isinstance(final, nn.Module)
        and isinstance(heads, nn.Module)
        and isinstance(getattr(model, "class_token", None), torch.Tensor)
    ):
        children = tuple(layers.children())
        if children and all(isinstance(getattr(b, "self_attention", None), nn.MultiheadAttention) for b in children):
            return Transformer(children, lambda tokens: heads(final(tokens.mean(dim=1))), 1)
    blocks, norm, head = getattr(model, "blocks", None), getattr(model, "norm", None), getattr(model, "head", None)
    if (
        isinstance(blocks, nn.Module)
        and isinstance(norm, nn.Module)
        and isinstance(head, nn.Module)
        and getattr(model, "attn_pool", None) is None
    ):
        children = tuple(blocks.children())
        if children and all(isinstance(getattr(b, "attn", None), nn.Module) for b in children):
            fc_norm = getattr(model, "fc_norm", None)
            distilled = getattr(model, "head_dist", None)

            def score(tokens: torch.Tensor) -> torch.Tensor:
                pooled = norm(tokens.mean(dim=1))
                pooled = fc_norm(pooled) if isinstance(fc_norm, nn.Module) else pooled
                logits: torch.Tensor = head(pooled)
                return (logits + distilled(pooled)) / 2 if isinstance(distilled, nn.Module) else logits

            return Transformer(children, score, int(getattr(model, "num_prefix_tokens", 1)))
    return None


class LeGrad(Method):
    name = "legrad"
    kind = HEAT
    summary = "LeGrad: positive gradients of each block's class score w.r.t. its attention, averaged"
    params = (Param("blocks", int, 0, "average over the last N attention blocks (0: every block)", low=0),)

    def prepare(self, model: nn.Module, layers: tuple[str, ...], s: Settings) -> None:
        found = transformer(model)
        if found is None:
            raise CamcliError(
                f"legrad explains vision transformers; {type(model).__name__} has no attention blocks it can read "
                "(it takes torchvision's VisionTransformer, or a timm vision transformer with `blocks`, `norm` and "
                "`head`). Use gradcam or another CAM method for this model."
            )
        wanted = integer(s.params["blocks"])
        if wanted > len(found.blocks):
            raise CamcliError(
                f"--legrad-blocks {wanted}: this model has {len(found.blocks)} attention blocks. "
                f"Pass at most {len(found.blocks)}, or 0 for every block."
            )

    def compute(self, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        import torch

        from ..layers import token_grid

        vit = transformer(probe.model)
        if vit is None:  # prepare() refused such a model already
            raise CamcliError("legrad explains vision transformers; use gradcam or another CAM method.")
        wanted = integer(s.params["blocks"])
        chosen = vit.blocks[-wanted:] if wanted else vit.blocks
        tokens, attention = self._forward(probe, p.x, chosen)
        b, k = p.classes.shape
        found = token_grid(int(tokens[0].shape[1]), s.input_size, (vit.prefix,))
        if found is None or found[0] != vit.prefix:
            raise CamcliError(
                f"legrad: {tokens[0].shape[1]} tokens do not form a patch grid after {vit.prefix} prefix tokens, so "
                "their relevance cannot be drawn as a map. Use gradcam or another CAM method for this model."
            )
        scores = [probe.scores(vit.score(z).float()) for z in tokens]
        maps = []
        for j in range(k):
            total = torch.zeros(b, int(tokens[0].shape[1]) - vit.prefix, device=p.x.device)
            for score, probabilities in zip(scores, attention, strict=True):
                (grad,) = torch.autograd.grad(
                    score.gather(1, p.classes[:, j : j + 1]).sum(), probabilities, retain_graph=True
                )
                total += grad.float().relu().mean(dim=(1, 2))[:, vit.prefix :]
            maps.append(total / len(chosen))
        return torch.stack(maps, dim=1).reshape(b, k, *found[1])

    @staticmethod
    def _forward(
        probe: Probe, x: torch.Tensor, blocks: tuple[nn.Module, ...]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """One forward with gradients: each block's output tokens and its attention probabilities."""
        import torch

        from ..engine.attention import ExplicitAttention

        names = {id(m): n for n, m in probe.model.named_modules()}
        outputs: list[torch.Tensor | None] = [None] * len(blocks)
        recorded: list[list[torch.Tensor]] = [[] for _ in blocks]
        inside: list[int] = []  # the block running now

        def record(probabilities: torch.Tensor) -> None:
            if inside:
                recorded[inside[-1]].append(probabilities)

        def enter(index: int) -> Callable[..., None]:
            return lambda module, args: inside.append(index)

        def leave(index: int) -> Callable[..., None]:
            def hook(module: nn.Module, args: Any, output: Any) -> None:
                inside.pop()
                outputs[index] = output

            return hook

        handles = []
        try:
            for i, block in enumerate(blocks):
                handles.append(block.register_forward_pre_hook(enter(i)))
                handles.append(block.register_forward_hook(leave(i)))
                attn = getattr(block, "attn", None)
                dropout = getattr(attn, "attn_drop", None)
                if getattr(attn, "fused_attn", True) is False and isinstance(dropout, torch.nn.Module):
                    handles.append(dropout.register_forward_hook(lambda m, a, out: record(out)))
            with torch.enable_grad(), ExplicitAttention(record), probe.autocast():
                probe.model(x.detach().requires_grad_(True))
        finally:
            for handle in handles:
                handle.remove()
        tokens, attention = [], []
        for block, output, found in zip(blocks, outputs, recorded, strict=True):
            where = names.get(id(block), type(block).__name__)
            if not isinstance(output, torch.Tensor) or output.dim() != 3:
                raise CamcliError(
                    f"legrad: block '{where}' did not output B×N×D tokens. Use gradcam or another CAM method."
                )
            if len(found) != 1 or found[0].shape[-1] != output.shape[1]:
                raise CamcliError(
                    f"legrad: block '{where}' computed {len(found)} self-attention maps over its tokens, not one, "
                    "so its attention cannot be read. Use gradcam or another CAM method for this model."
                )
            tokens.append(output)
            attention.append(found[0])
        return tokens, attention


METHODS = (LeGrad,)
