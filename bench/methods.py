"""Every method, camcli's engine vs the library users come from, on the same tensors.

For each method: the same images (sample_images/, preprocessed), the same model and layer, top-5
classes, the same batch; camcli computes all five classes from one pass (and shares every
perturbed forward across them), the oracle library is called once per class rank, as its API
requires. Rounds alternate between the contenders, and the ratio is the median of per-round ratios.
camcli is set up once per method, as a run over a folder is (its layer check runs a forward and a
backward); ``--cold`` sets it up on every call instead. LeGrad needs a vision transformer: run it with
``--model tv:vit_b_16 --methods legrad`` (torchcam reads torchvision's encoder blocks).

Oracles: pytorch-grad-cam 1.5 for the CAM family (gradient methods, Score-CAM, Ablation-CAM, FullGrad,
Eigen methods, FEM, KPCA-CAM, RandomCAM, Sobel, ShapleyCAM, RefineCAM, Finer-CAM, SESS, guided backprop
times a CAM), torchcam 0.5 for CAM, SmoothGrad-CAM++, SS-CAM, IS-CAM and LeGrad, captum 0.9 for saliency,
deconvnet, guided backprop, Guided Grad-CAM and occlusion. Perturbation methods run hundreds of forwards
per image and class, so they use smaller inputs (``--perturb-size``) and fewer images (``--perturb-images``).

    python bench/methods.py [--model resnet18] [--images 8] [--rounds 3] [--methods gradcam,scorecam]
"""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Callable
from functools import partial

os.environ.setdefault("TQDM_DISABLE", "1")  # pytorch-grad-cam's per-call progress bars

import numpy as np
import torch
import torch.nn.functional as F
from common import camcli_engine, paired, race, sample_batch
from torch import nn

from camcli import methods as registry
from camcli.allocator import keep_freed_memory
from camcli.explainer import BatchExplainer
from camcli.layers import resolve_layer
from camcli.models import load_model

K = 5
# Methods whose cost is hundreds of forwards per image: smaller inputs and fewer images, for both tools.
PERTURBATION = ("scorecam", "ablationcam", "occlusion", "sscam", "iscam", "sess")
CAPTUM = ("saliency", "deconvnet", "guided-backprop", "guided-gradcam", "occlusion")
TORCHCAM = ("cam", "smoothgradcam++", "sscam", "iscam", "legrad")
# The targets: gradient CAMs 10x their reference, perturbation methods 4x. Eigen methods, KPCA-CAM,
# FEM and the baselines need no gradient (both tools run forwards only), and the pixel-space methods need one
# full backward per class in both tools: no target is set for those. SS-CAM, IS-CAM and SESS repeat
# Score-CAM's (or the base's) forwards over samples or patches, all shared across the classes.
GRADIENT = ("gradcam", "counterfactual", "gradcam++", "xgradcam", "hirescam", "gradcam-elementwise", "layercam")
TARGETS = {
    **{m: 4.0 for m in PERTURBATION},
    **{
        m: 10.0
        for m in (*GRADIENT, "eigengradcam", "segeigencam", "fullgrad", "smoothgradcam++", "finercam", "shapleycam")
    },
    "refinecam": 10.0,
}
VIT_ONLY = ("legrad",)  # run with --model tv:vit_b_16 (or another ViT); skipped on a CNN
# DFF is class-free: both tools factorize each image once whatever the classes (the reference called per image,
# as camcli factorizes), so its row compares the factorization itself, scikit-learn's NMF against camcli's.


class Negated(nn.Module):
    """The model with its outputs negated: Grad-CAM of it is the counterfactual map."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -self.inner(x)


def source(method: str) -> str:
    return "captum" if method in CAPTUM else "torchcam" if method in TORCHCAM else "pytorch-grad-cam"


def oracle(
    method: str,
    model: nn.Module,
    layers: list[nn.Module],
    x: torch.Tensor,
    window: int,
    stride: int,
    batch: int,
    samples: int | None,
) -> Callable[[], object]:
    """The reference library computing the same top-5 maps, one call per class rank (as its API asks)."""
    with torch.no_grad():
        classes = model(x).topk(K, dim=1).indices.tolist()
    ranks = [[c[j] for c in classes] for j in range(K)]
    layer = layers[-1]
    if method in CAPTUM:
        from captum.attr import Deconvolution, GuidedBackprop, GuidedGradCam, Occlusion, Saliency

        def captum_maps() -> list[torch.Tensor]:
            maps = []
            for target in ranks:
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
    if method in TORCHCAM:
        import torchcam.methods as tc

        names = {module: name for name, module in model.named_modules()}

        def extractor() -> tc.core._CAM:
            """Made per call, in a ``with`` block: its hooks must not run during camcli's forwards."""
            if method == "cam":
                fc = names[model.get_classifier()] if hasattr(model, "get_classifier") else None
                return tc.CAM(model, names[layer], fc, input_shape=tuple(x.shape[1:]))
            if method == "legrad":  # torchcam reads torchvision's encoder blocks itself
                return tc.LeGrad(model, list(model.encoder.layers))
            kind = {"smoothgradcam++": tc.SmoothGradCAMpp, "sscam": tc.SSCAM, "iscam": tc.ISCAM}[method]
            extra = {"num_samples": samples} if samples and method in ("sscam", "iscam") else {}
            made = kind(model, names[layer], input_shape=tuple(x.shape[1:]), **extra)
            if hasattr(made, "bs"):
                made.bs = batch
            return made

        def torchcam_maps() -> list[object]:
            maps = []
            with extractor() as made:
                for target in ranks:
                    scores = model(x)
                    maps.append(made(target, scores))
            return maps

        return torchcam_maps
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    if method == "sobel":
        from pytorch_grad_cam.sobel_cam import sobel_cam

        def sobel_maps() -> list[object]:
            pictures = (x.cpu() * 0.229 + 0.45).clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).numpy()
            return [sobel_cam(np.ascontiguousarray(p)) for p in pictures]

        return sobel_maps
    if method == "guided-cam":
        import copy

        from pytorch_grad_cam.guided_backprop import GuidedBackpropReLUModel

        twin = copy.deepcopy(model)  # pytorch-grad-cam swaps the ReLU modules of the model it is given
        twin_layer = dict(twin.named_modules())[{m: n for n, m in model.named_modules()}[layer]]

        def guided_maps() -> list[object]:
            maps = []
            with pgc.GradCAM(model=twin, target_layers=[twin_layer]) as cam:
                for target in ranks:
                    masks = cam(input_tensor=x, targets=[ClassifierOutputTarget(c) for c in target])
                    for b, c in enumerate(target):
                        gb = GuidedBackpropReLUModel(twin, device="cpu")(x[b : b + 1], target_category=c)
                        maps.append(masks[b][..., None] * gb)
            return maps

        return guided_maps
    if method == "dff":
        from pytorch_grad_cam import DeepFeatureFactorization

        classifier = model.get_classifier() if hasattr(model, "get_classifier") else model.fc

        def dff_maps() -> list[object]:
            made = DeepFeatureFactorization(model, layer, computation_on_concepts=classifier)
            return [made(x[b : b + 1], 16) for b in range(len(x))]

        return dff_maps
    if method == "sess":
        from pytorch_grad_cam.sess import SESS

        def sess_maps() -> list[object]:
            with SESS(model, [layer], batch_size=batch) as cam:
                return [cam(input_tensor=x, targets=[ClassifierOutputTarget(c) for c in target]) for target in ranks]

        return sess_maps
    if method == "finercam":
        from pytorch_grad_cam.finer_cam import FinerCAM

        def finer_maps() -> list[object]:
            with FinerCAM(model, [layer]) as cam:
                return [
                    cam(input_tensor=x[b : b + 1], target_idx=c)[0] for target in ranks for b, c in enumerate(target)
                ]

        return finer_maps
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
        "segeigencam": pgc.SegEigenCAM,
        "scorecam": pgc.ScoreCAM,
        "ablationcam": pgc.AblationCAM,
        "fullgrad": pgc.FullGrad,
        "fem": pgc.FEM,
        "randomcam": pgc.RandomCAM,
        "kpcacam": pgc.KPCA_CAM,
        "shapleycam": pgc.ShapleyCAM,
        "refinecam": pgc.RefineCAM,
    }[method]
    target_model = Negated(model) if method == "counterfactual" else model

    if method == "refinecam":  # not a context manager

        def refine_maps() -> list[object]:
            cam = kind(model=model, target_layers=layers)
            return [cam(input_tensor=x, targets=[ClassifierOutputTarget(c) for c in target]) for target in ranks]

        return refine_maps

    def pgc_maps() -> list[object]:
        chosen = [] if method == "fullgrad" else [layer]
        with kind(model=target_model, target_layers=chosen) as cam:
            if method in ("scorecam", "ablationcam"):
                cam.batch_size = batch
            return [cam(input_tensor=x, targets=[ClassifierOutputTarget(c) for c in target]) for target in ranks]

    return pgc_maps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--images", type=int, default=8, help="batch of images for the gradient methods")
    parser.add_argument("--perturb-images", type=int, default=2, help="images for the perturbation methods")
    parser.add_argument("--perturb-size", type=int, default=112, help="input side for the perturbation methods")
    parser.add_argument("--batch-size", type=int, default=32, help="perturbed forwards per batch, both contenders")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="set camcli up on every call (layer check included)")
    parser.add_argument("--methods", default=",".join(registry.names()))
    parser.add_argument("--refine-layers", default="layer3", help="RefineCAM's layers besides the default one")
    parser.add_argument(
        "--samples", type=int, help="noise samples of SS-CAM and IS-CAM, both tools (default theirs: 35 and 10)"
    )
    args = parser.parse_args()
    keep_freed_memory()
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    loaded = load_model(args.model, random_weights=args.model != "tf_efficientnet_lite0")
    model = loaded.model.eval()
    full = sample_batch(loaded, max(args.images, args.perturb_images))
    print(f"{args.model}, top-{K}, CPU threads {torch.get_num_threads()}, torch {torch.__version__}")
    print(f"{'method':<20} {'camcli img/s':>12} {'oracle img/s':>12} {'ratio':>7}  target  oracle")
    vit = hasattr(model, "encoder") and hasattr(model.encoder, "layers")  # torchvision's VisionTransformer
    for method in args.methods.split(","):
        if method in VIT_ONLY and not vit:
            print(f"{method:<20} skipped: vision transformers only (run it with --model tv:vit_b_16)", flush=True)
            continue
        perturb = method in PERTURBATION
        x = full[: args.perturb_images] if perturb else full[: args.images]
        if perturb:
            x = F.interpolate(x, size=(args.perturb_size, args.perturb_size), mode="bilinear", align_corners=False)
        size = (int(x.shape[-2]), int(x.shape[-1]))
        layer = resolve_layer(model, size)
        names = (*args.refine_layers.split(","), layer.name) if method == "refinecam" else (layer.name,)
        window, stride = (32, 16)
        channels_last = not registry.get(method).cls.needs.rules  # input-space rules: exact gates
        options = {"occlusion_window": window, "occlusion_stride": stride} if method == "occlusion" else {}
        if method == "fem":
            options["fem_combine"] = "activations"  # pytorch-grad-cam's definition (README: departures)
        if args.samples and method in ("sscam", "iscam"):
            options[f"{method}_num_samples"] = args.samples
        modules = dict(model.named_modules())
        theirs = oracle(method, model, [modules[n] for n in names], x, window, stride, args.batch_size, args.samples)

        # Set up once, as a run over a folder is (layer check, hooks, memory layout); the oracle's objects are
        # made per call, which costs them nothing. --cold sets camcli up per call too.
        setup = partial(camcli_engine, model, names, x, [method], channels_last, args.batch_size, **options)
        engine: BatchExplainer = setup()

        def ours(
            engine: BatchExplainer = engine, x: torch.Tensor = x, setup: partial[BatchExplainer] = setup
        ) -> object:
            if args.cold:
                with setup() as cold:
                    return cold(x, top_k)
            return engine(x, top_k)

        with engine:
            times, _ = race({"camcli": ours, "oracle": theirs}, args.rounds)
        n = x.shape[0]
        ratio = paired(times["oracle"], times["camcli"])
        target = TARGETS.get(method)
        verdict = "  n/a     " if target is None else f"  {'ok ' if ratio >= target else 'MISS'} {target:4.0f}x"
        print(
            f"{method:<20} {n / min(times['camcli']):12.2f} {n / min(times['oracle']):12.2f} {ratio:6.1f}x"
            f"{verdict}  {source(method)}",
            flush=True,
        )


def top_k(scores: torch.Tensor) -> torch.Tensor:
    return scores.topk(K, dim=1).indices


if __name__ == "__main__":
    main()
