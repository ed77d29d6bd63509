"""Baselines: maps that know nothing of the class, to tell what a method adds over chance or over edges.

- randomcam (pytorch-grad-cam's ``RandomCAM``): L = ReLU(Σ_c w_c A_c), the target layer's channels
  weighted by w_c drawn uniformly in [−1, 1]. pytorch-grad-cam draws fresh weights from numpy's global
  generator for every image and call, so its maps change from run to run and with the batch an image
  shares. camcli draws them from ``seed`` and the class: the weights of class k are the first C numbers
  of a generator seeded with (seed, k) (numpy's ``default_rng``), the same for every image. So a map
  depends neither on its batch, its position in it, its shard nor on the other classes asked for; runs
  repeat and resume. Several target layers draw from the same stream, each its own C.
- sobel (pytorch-grad-cam's ``sobel_cam``): the edges of the image the model saw, (min(|S_x ∗ g|, 1) +
  min(|S_y ∗ g|, 1)) / 2, g its grayscale in [0, 1] (0.299 R + 0.587 G + 0.114 B, OpenCV's) and S the
  3×3 Sobel kernels, borders reflected as OpenCV does (``BORDER_REFLECT_101``). The cap at 1 is the
  reference's: it works on 8-bit images, whose derivatives saturate at 255, so an edge steeper than a
  quarter of the brightness range across the window counts as that; a few hard edges then do not flatten
  the rest of the display. camcli's grey is not rounded to 8 bits. No layer and no class: one map per
  image, shared by its classes. g comes from the model input x, un-normalized: a colour channel is
  x · std + mean, and the mean, constant over the image, has no edges, so only the std matters. It is
  the model's (``pretrained_cfg``, the normalization timm and camcli use for it), else ImageNet's
  (camcli's for other models); a ``--std`` override is not seen by the method.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..engine.needs import Needs
from ..params import Param, integer
from .base import HEAT, CamMethod, Method, Settings

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..engine.capture import LayerCapture, Pass
    from ..engine.probe import Probe

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, OpenCV's RGB → gray
IMAGENET_STD = (0.229, 0.224, 0.225)


def class_weights(seed: int, classes: torch.Tensor, channels: int) -> torch.Tensor:
    """RandomCAM's weights, B×K×C: for each class k, ``channels`` draws uniform in [−1, 1) from a
    generator seeded with (seed, k)."""
    import numpy as np
    import torch

    wanted = classes.flatten().tolist()
    drawn = {c: torch.from_numpy(np.random.default_rng((seed, c)).uniform(-1.0, 1.0, channels)) for c in set(wanted)}
    rows = [drawn[c] for c in wanted]
    return torch.stack(rows).reshape(*classes.shape, channels).to(classes.device, torch.float32)


class RandomCam(CamMethod):
    name = "randomcam"
    summary = "baseline: ReLU(Σ_c w_c A_c), w uniform in [-1, 1] drawn per class from the seed"
    needs = Needs()
    params = (Param("seed", int, 0, "seed of the random channel weights (with the class)", low=0),)

    def weights(self, layer: LayerCapture, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        return class_weights(integer(s.params["seed"]), p.classes, layer.activations.shape[1])


def input_std(model: nn.Module, channels: int) -> tuple[float, ...]:
    """The std that normalized the model's input: timm's ``pretrained_cfg``, else ImageNet's."""
    config = getattr(model, "pretrained_cfg", None)
    std = config.get("std") if isinstance(config, dict) else None
    values = tuple(float(v) for v in std) if isinstance(std, (tuple, list)) else IMAGENET_STD
    return values if len(values) == channels else (sum(values) / len(values),) * channels


def sobel_edges(gray: torch.Tensor) -> torch.Tensor:
    """B×H×W → (min(|S_x ∗ g|, 1) + min(|S_y ∗ g|, 1)) / 2, borders reflected without repeating the edge
    pixel."""
    import torch
    import torch.nn.functional as F

    kernel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=gray.device)
    padded = F.pad(gray[:, None], (1, 1, 1, 1), mode="reflect")
    found = F.conv2d(padded, torch.stack([kernel, kernel.T])[:, None])
    return found.abs().clamp_max(1.0).mean(dim=1)


class Sobel(Method):
    name = "sobel"
    kind = HEAT
    summary = "baseline: Sobel edges of the grayscale input, no model (class-agnostic)"
    needs = Needs()

    def compute(self, p: Pass, probe: Probe, s: Settings) -> torch.Tensor:
        import torch

        x = p.x.float()
        std = torch.tensor(input_std(probe.model, x.shape[1]), device=x.device)
        image = x * std[:, None, None]  # the mean is left out: constant, it has no edges
        if x.shape[1] == len(LUMA):
            gray = torch.einsum("bchw,c->bhw", image, torch.tensor(LUMA, device=x.device))
        else:
            gray = image.mean(dim=1)
        return sobel_edges(gray)[:, None].expand(-1, p.classes.shape[1], -1, -1)


METHODS = (RandomCam, Sobel)
