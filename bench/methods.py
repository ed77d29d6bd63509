"""Every method, camcli's engine vs the library users come from, on the same tensors.

For each method: the same images (sample_images/, preprocessed), the same model and layer, top-5
classes, the same batch; camcli computes all five classes from one pass (and shares every
perturbed forward across them), the oracle library is called once per class rank, as its API
requires. Rounds alternate between the contenders, and the ratio is the median of per-round ratios.

Oracles: pytorch-grad-cam 1.5 for the CAM family (gradient methods, Score-CAM, Ablation-CAM,
FullGrad, Eigen methods), captum 0.9 for saliency, deconvnet, guided backprop, Guided Grad-CAM and
occlusion. Perturbation methods run hundreds of forwards per image and class, so they use smaller
inputs (``--perturb-size``) and fewer images (``--perturb-images``).

    python bench/methods.py [--model resnet18] [--images 8] [--rounds 3] [--methods gradcam,scorecam]
"""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Callable

os.environ.setdefault("TQDM_DISABLE", "1")  # pytorch-grad-cam's per-call progress bars

import torch
import torch.nn.functional as F
from common import camcli_explain, paired, race, sample_batch
from torch import nn

from camcli.allocator import keep_freed_memory
from camcli.layers import resolve_layer
from camcli.methods import METHODS, REGISTRY
from camcli.models import load_model

K = 5
PERTURBATION = ("scorecam", "ablationcam", "occlusion")
CAPTUM = ("saliency", "deconvnet", "guided-backprop", "guided-gradcam", "occlusion")
# The targets: gradient CAMs 10x pytorch-grad-cam, perturbation methods 4x. Eigen-CAM needs
# no gradient (both tools run forwards only: k per image for the oracle, one for camcli), and the
# pixel-space methods need one full backward per class in both tools: no target is set for those.
TARGETS = {
    "scorecam": 4.0,
    "ablationcam": 4.0,
    "occlusion": 4.0,
    **{
        m: 10.0
        for m in (
            "gradcam",
            "counterfactual",
            "gradcam++",
            "xgradcam",
            "hirescam",
            "gradcam-elementwise",
            "layercam",
            "eigengradcam",
            "fullgrad",
        )
    },
}


class Negated(nn.Module):
    """The model with its outputs negated: Grad-CAM of it is the counterfactual map."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -self.inner(x)


def oracle(
    method: str, model: nn.Module, layer: nn.Module, x: torch.Tensor, window: int, stride: int, batch: int
) -> Callable[[], object]:
    """The oracle library computing the same top-5 maps, one call per class rank."""
    with torch.no_grad():
        classes = model(x).topk(K, dim=1).indices.tolist()
    if method in CAPTUM:
        from captum.attr import Deconvolution, GuidedBackprop, GuidedGradCam, Occlusion, Saliency

        def captum_maps() -> list[torch.Tensor]:
            maps = []
            for j in range(K):
                target = [c[j] for c in classes]
                if method == "saliency":
                    maps.append(Saliency(model).attribute(x, target=target, abs=False))
                elif method == "deconvnet":
                    maps.append(Deconvolution(model).attribute(x, target=target))
                elif method == "guided-backprop":
                    maps.append(GuidedBackprop(model).attribute(x, target=target))
                elif method == "guided-gradcam":
                    maps.append(GuidedGradCam(model, layer).attribute(x, target=target, interpolate_mode="bilinear"))
                else:
                    maps.append(
                        Occlusion(model).attribute(
                            x,
                            target=target,
                            sliding_window_shapes=(3, window, window),
                            strides=(3, stride, stride),
                            baselines=0,
                            perturbations_per_eval=batch,
                        )
                    )
            return maps

        return captum_maps
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    kind = {
        "gradcam": pgc.GradCAM,
        "counterfactual": pgc.GradCAM,
        "gradcam++": pgc.GradCAMPlusPlus,
        "xgradcam": pgc.XGradCAM,
        "hirescam": pgc.HiResCAM,
        "gradcam-elementwise": pgc.GradCAMElementWise,
        "layercam": pgc.LayerCAM,
        "eigencam": pgc.EigenCAM,
        "eigengradcam": pgc.EigenGradCAM,
        "scorecam": pgc.ScoreCAM,
        "ablationcam": pgc.AblationCAM,
        "fullgrad": pgc.FullGrad,
    }[method]
    target_model = Negated(model) if method == "counterfactual" else model

    def pgc_maps() -> list[object]:
        layers = [] if method == "fullgrad" else [layer]
        with kind(model=target_model, target_layers=layers) as cam:
            if method in ("scorecam", "ablationcam"):
                cam.batch_size = batch
            return [cam(input_tensor=x, targets=[ClassifierOutputTarget(c[j]) for c in classes]) for j in range(K)]

    return pgc_maps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--images", type=int, default=8, help="batch of images for the gradient methods")
    parser.add_argument("--perturb-images", type=int, default=2, help="images for the perturbation methods")
    parser.add_argument("--perturb-size", type=int, default=112, help="input side for the perturbation methods")
    parser.add_argument("--batch-size", type=int, default=32, help="perturbed forwards per batch, both contenders")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS))
    args = parser.parse_args()
    keep_freed_memory()
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    loaded = load_model(args.model, random_weights=args.model != "tf_efficientnet_lite0")
    model = loaded.model.eval()
    full = sample_batch(loaded, max(args.images, args.perturb_images))
    print(f"{args.model}, top-{K}, CPU threads {torch.get_num_threads()}, torch {torch.__version__}")
    print(f"{'method':<20} {'camcli img/s':>12} {'oracle img/s':>12} {'ratio':>7}  target  oracle")
    for method in args.methods.split(","):
        perturb = method in PERTURBATION
        x = full[: args.perturb_images] if perturb else full[: args.images]
        if perturb:
            x = F.interpolate(x, size=(args.perturb_size, args.perturb_size), mode="bilinear", align_corners=False)
        size = (int(x.shape[-2]), int(x.shape[-1]))
        layer = resolve_layer(model, size)
        window, stride = (32, 16)
        channels_last = not any(r in REGISTRY[method].module for r in ("gradients", "fullgrad"))

        def ours(
            method: str = method,
            x: torch.Tensor = x,
            layer_name: str = layer.name,
            channels_last: bool = channels_last,
            window: int = window,
            stride: int = stride,
        ) -> object:
            return camcli_explain(
                model,
                (layer_name,),
                x,
                [method],
                K,
                channels_last=channels_last,
                batch_size=args.batch_size,
                occlusion_window=window,
                occlusion_stride=stride,
            )

        theirs = oracle(method, model, dict(model.named_modules())[layer.name], x, window, stride, args.batch_size)
        times, _ = race({"camcli": ours, "oracle": theirs}, args.rounds)
        n = x.shape[0]
        ratio = paired(times["oracle"], times["camcli"])
        target = TARGETS.get(method)
        verdict = "  n/a     " if target is None else f"  {'ok ' if ratio >= target else 'MISS'} {target:4.0f}x"
        source = "captum" if method in CAPTUM else "pytorch-grad-cam"
        print(
            f"{method:<20} {n / min(times['camcli']):12.2f} {n / min(times['oracle']):12.2f} {ratio:6.1f}x"
            f"{verdict}  {source}",
            flush=True,
        )


if __name__ == "__main__":
    main()
