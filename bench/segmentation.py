"""Segmentation models, top-5 classes per image: camcli's engine vs pytorch-grad-cam with
``SemanticSegmentationTarget``, the same target and layer.

Same model (torchvision's, random weights with a spread classifier so that several classes are
predicted: none can be downloaded here), same preprocessed images, same batch, one process. pytorch-grad-cam
takes one target per image per call, so it is called once per class rank (a forward and a full backward
each); camcli explains the five classes from one forward and five backward passes from the target layer.
camcli is set up once, as a run over a folder is; the classes (by predicted area) and their masks come from
one plain forward that counts against pytorch-grad-cam.

    python bench/segmentation.py [--models tv:fcn_resnet50 tv:lraspp_mobilenet_v3_large] [--images 4]
        [--size 256] [--rounds 3]
"""

from __future__ import annotations

import argparse
import warnings

import torch
import torch.nn.functional as F
from common import camcli_engine, paired, race, sample_batch
from torch import nn

from camcli.allocator import keep_freed_memory
from camcli.heads import Head
from camcli.layers import resolve_layer
from camcli.models import load_model

K = 5


class Logits(nn.Module):
    """torchvision's segmentation output ({"out": ...}) as a tensor, for pytorch-grad-cam."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)["out"]


def run(name: str, images: int, size: int, rounds: int) -> None:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget

    loaded = load_model(name, random_weights=True)
    model = loaded.model.eval()
    classes = loaded.num_classes
    for m in model.modules():  # spread the class logits so that several classes are predicted
        if isinstance(m, nn.Conv2d) and m.out_channels == classes:
            nn.init.normal_(m.weight, std=0.5)
            nn.init.zeros_(m.bias)
    x = F.interpolate(sample_batch(loaded, images), size=(size, size), mode="bilinear", align_corners=False)
    layer = resolve_layer(model, (size, size), task="segment").name
    wrapped = Logits(model)
    target = dict(wrapped.named_modules())[f"inner.{layer}"]

    def top(areas: torch.Tensor) -> torch.Tensor:
        return areas.topk(K, dim=1).indices

    def pgc_maps() -> list[object]:
        with torch.no_grad():
            predicted = wrapped(x).argmax(dim=1)
        areas = torch.stack([(predicted == c).sum(dim=(1, 2)) for c in range(classes)], dim=1)
        chosen = top(areas)
        maps = []
        with GradCAM(model=wrapped, target_layers=[target]) as cam:
            for j in range(K):
                targets = [
                    SemanticSegmentationTarget(int(c), (predicted[b] == c).float().numpy())
                    for b, c in enumerate(chosen[:, j])
                ]
                maps.append(cam(input_tensor=x, targets=targets))
        return maps

    engine = camcli_engine(model, (layer,), x, ["gradcam"], channels_last=True, head=Head("softmax", "segment"))
    with engine:
        times, _ = race({"camcli": lambda: engine(x, top), "pytorch-grad-cam": pgc_maps}, rounds)
    ours, theirs = min(times["camcli"]), min(times["pytorch-grad-cam"])
    print(f"{name:<36} batch {images} at {size}x{size}, top-{K} classes by area, layer {layer}")
    print(f"  camcli            {images / ours:8.2f} img/s   (best of {rounds}: {ours:.2f} s)")
    print(f"  pytorch-grad-cam  {images / theirs:8.2f} img/s   (best of {rounds}: {theirs:.2f} s)")
    print(f"  ratio             {paired(times['pytorch-grad-cam'], times['camcli']):8.2f}x   (median per round)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["tv:fcn_resnet50", "tv:lraspp_mobilenet_v3_large"])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    keep_freed_memory()
    warnings.filterwarnings("ignore")
    print(f"CPU threads {torch.get_num_threads()}, torch {torch.__version__}")
    for name in args.models:
        run(name, args.images, args.size, args.rounds)


if __name__ == "__main__":
    main()
