"""Deep Feature Factorization, DFF (Collins et al. 2018, "Deep Feature Factorization for Concept
Discovery"), as pytorch-grad-cam's ``DeepFeatureFactorization``.

The target layer's activations of an image, A (C channels × h·w positions), are made non-negative by
subtracting each channel's minimum over the positions (as the reference does), then factorized by
non-negative matrix factorization, A − min ≈ W H with W (C × N) and H (N × h·w) non-negative: N
*concepts*. A concept's map is its row of H (h×w, shown as every heat map: upsampled and min-max
scaled); its vector is W's column plus the channel minima. DFF is not per class: it gives N maps per
image, one per concept, and names each concept by the classes the model's classifier scores highest
for its vector (softmax of the classifier's outputs on it, as the reference's ``computation_on_concepts``
with ``run_dff_on_image``; under ``--head binary`` the sigmoid of −y and y, camcli's two classes).
Naming needs the classifier to read the layer's global average (a pooled linear head, checked as CAM
checks it); where it does not, the concept maps are still given and each entry records why its concept
is unnamed.

The NMF is scikit-learn's (``NMF(init='random', random_state=0)``, the reference's call) written in
torch: the same random start (NumPy's ``RandomState(0)``: H then W, each |avg·N(0, 1)| with
avg = sqrt(mean(A)/N)), the same coordinate-descent solver (HALS: each component's column of W, then
of H, updated in turn, every row at once) and stopping rule (the summed projected gradient falls to
``tol`` times its first value, or 200 iterations), in float32 as scikit-learn computes on the reference's
float32 activations. It is seeded, so a run repeats and resumes. The images of a batch are solved
together, one coordinate step for all of them at once, each stopping at its own iteration: the result is
each image's own factorization.

Each image is factorized on its own, as the reference is when called with one image
(``run_dff_on_image``); the paper and the reference's batched call factorize a batch's activations
together. camcli departs from that on purpose: a folder run's batches are arbitrary groupings (by
``--batch-size``, shards, Ray workers, what ``--resume`` left to do), so concepts shared across a batch
would change with how the run happened to be split; per image they are a property of the image alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..engine.needs import Needs
from ..errors import CamcliError
from ..params import Param, integer
from .base import Concepts, Method, Settings

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..engine.capture import Pass
    from ..engine.probe import Probe

MAX_ITER, TOL = 200, 1e-4  # scikit-learn's NMF defaults, which the reference keeps


def nmf(
    x: torch.Tensor, k: int, max_iter: int = MAX_ITER, tol: float = TOL, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """X (n × m, or a stack of them B × n × m; non-negative) ≈ W H, W n × k and H k × m non-negative,
    each matrix of a stack as scikit-learn's ``NMF(n_components=k, init='random', random_state=seed,
    solver='cd')`` factorizes it alone: returns W, H and each matrix's number of iterations. A stack is
    solved together (one coordinate-descent step for every matrix at once; a matrix that has met the
    stopping rule is left as it is), on X's device in X's precision as scikit-learn keeps it (float64
    for float64, else float32)."""
    import numpy as np
    import torch

    single = x.dim() == 2
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32  # as scikit-learn: X's precision
    x = x.to(dtype)[None] if single else x.to(dtype)
    b, n, m = x.shape
    ws, hs = [], []
    for mean in x.mean(dim=(1, 2)).tolist():  # each matrix's start, as sklearn draws it: H, then W
        avg = float(np.sqrt(mean / k))
        rng = np.random.RandomState(seed)
        hs.append(np.abs(avg * rng.standard_normal(size=(k, m))))
        ws.append(np.abs(avg * rng.standard_normal(size=(n, k))))
    wt = torch.from_numpy(np.stack(ws)).transpose(1, 2).to(x.device, dtype).contiguous()  # B×k×n: W's columns
    h = torch.from_numpy(np.stack(hs)).to(x.device, dtype)  # B×k×m
    active = torch.ones(b, dtype=torch.bool, device=x.device)
    iterations = torch.zeros(b, dtype=torch.long, device=x.device)
    first = torch.zeros(b, dtype=dtype, device=x.device)
    xt = x.transpose(1, 2).contiguous()
    for step in range(1, max_iter + 1):
        iterations += active.long()
        violation = _sweep(xt, wt, h, active) + _sweep(x, h, wt, active)  # W, then H
        if step == 1:
            first = violation
        active &= (first != 0) & (violation > tol * first)
        if not bool(active.any()):  # one synchronization per iteration
            break
    w = wt.transpose(1, 2)
    return (w[0], h[0], iterations[0]) if single else (w.contiguous(), h, iterations)


def _sweep(xt: torch.Tensor, f: torch.Tensor, o: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """One coordinate-descent pass over the k rows of the factor ``f`` (B×k×n, updated in place; W's
    columns, or H's rows), the other factor ``o`` (B×k×m) fixed, for B stacked problems, every row's n
    coordinates at once: with G = O Oᵀ and R = O xt (B×k×n), component t's gradient is
    g = G_t F − R_t and F_t ← max(F_t − g / G_tt, 0), as scikit-learn's ``_update_cdnmf_fast`` does it
    coordinate by coordinate. Only ``active`` problems change (and no component whose G_tt is 0).
    Returns each problem's summed absolute projected gradient (a zero coordinate's positive gradient
    does not count), from the gradients kept as the pass goes. The factors are kept as rows (k × n) so
    that each step is a row-vector product, several times faster than a column one."""
    import torch

    gram = o @ o.transpose(1, 2)  # B×k×k
    target = o @ xt  # B×k×n
    hess = gram.diagonal(dim1=1, dim2=2)  # B×k
    step = torch.where(hess != 0, -1.0 / hess.where(hess != 0, 1.0), 0.0) * active[:, None]  # 0: no change
    before = f.clone()
    grads = torch.empty_like(f)
    for t in range(f.shape[1]):
        grad = torch.baddbmm(target[:, t, None], gram[:, t, None], f, beta=-1)  # B×1×n
        grads[:, t, None] = grad
        row = f[:, t, None]
        row.copy_(torch.addcmul(row, grad, step[:, t, None, None]).clamp_(min=0))
    projected = torch.where(before == 0, grads.clamp(max=0), grads)
    return projected.abs().sum(dim=(1, 2))


def factorize(activations: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's C×h×w activations (B×C×h×w), factorized on its own → the concepts' vectors
    (B × k × C: W's columns plus each channel's minimum over the image's positions) and maps
    (B × k × h × w: H's rows)."""
    import torch

    b, c, hh, ww = activations.shape
    a = torch.nan_to_num(activations.float(), nan=0.0).reshape(b, c, hh * ww)  # float32, as the reference
    offset = a.amin(dim=2, keepdim=True)
    w, h, _ = nmf(a - offset, k)
    return (w + offset).transpose(1, 2), h.reshape(b, k, hh, ww)


class Dff(Method):
    name = "dff"
    summary = "DFF: NMF of the layer's activations into concepts, a map per concept named by its top classes"
    needs = Needs()
    concepts = True
    unnamed: str | None = None  # why the concepts cannot be named on this model (set by prepare)
    params = (
        Param(
            "n_components",
            int,
            16,
            "the number of concepts (NMF components) per image; 16 is pytorch-grad-cam's "
            "DeepFeatureFactorization default (its run_dff_on_image uses 5)",
            low=1,
            high=1024,
        ),
        Param("top_k", int, 2, "the classes named per concept, best first (run_dff_on_image's top_k)", low=1),
    )

    def prepare(self, model: nn.Module, layers: tuple[str, ...], s: Settings) -> None:
        from .cam import pooled_head_problem

        if len(layers) != 1:
            raise CamcliError(
                f"dff factorizes one layer's activations, and {len(layers)} target layers were given "
                f"({', '.join(layers)}): pass one --layer (run camcli once per layer to compare them)."
            )
        problem = pooled_head_problem(model, layers, s.input_size)
        self.unnamed = None if problem is None else f"naming concepts needs {problem}"

    def compute(self, p: Pass, probe: Probe, s: Settings) -> Concepts:
        import torch

        from .cam import linear_head

        k, top = integer(s.params["n_components"]), integer(s.params["top_k"])
        vectors, found = factorize(p.layers[0].activations.detach(), k)
        maps = found.float()
        head = None if self.unnamed is not None else linear_head(probe.model)
        if head is None:
            return Concepts(maps, None, self.unnamed or "the model has no linear classifier to name concepts with")
        weight = head.weight.detach().double()
        bias = None if head.bias is None else head.bias.detach().double()
        outputs = torch.nn.functional.linear(vectors.to(weight), weight, bias)  # B×k×classes
        if outputs.shape[-1] == 1 and p.scores.shape[1] == 2:  # --head binary: class 0 scores −y, sigmoids
            scores = torch.cat([-outputs, outputs], dim=-1).sigmoid()
        elif outputs.shape[-1] == p.scores.shape[1]:
            scores = outputs.softmax(dim=-1)  # as the reference names concepts
        else:
            why = f"the classifier gives {outputs.shape[-1]} outputs and the model {p.scores.shape[1]} class scores"
            return Concepts(maps, None, f"naming concepts needs the classifier's outputs to be the classes: {why}")
        best = scores.topk(min(top, scores.shape[-1]), dim=-1)  # B×k×top
        names = [
            [list(zip(i, v, strict=True)) for i, v in zip(idx, val, strict=True)]
            for idx, val in zip(best.indices.tolist(), best.values.tolist(), strict=True)
        ]
        return Concepts(maps, names, None)

    def record(self, s: Settings, layers: tuple[str, ...], variant: str | None = None) -> dict[str, Any]:
        return {"layers": list(layers), **super().record(s, layers, variant)}


METHODS = (Dff,)
