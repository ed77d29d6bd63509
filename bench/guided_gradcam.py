"""Guided Grad-CAM, top-5 classes per image: camcli's engine vs captum's GuidedGradCam.

Same model, same preprocessed images, same batch, one process. Both start from image tensors and
end with the B×5×3×H×W Guided Grad-CAM maps in memory (captum's per-example targets are batched
too, one call per class rank). The top-5 classes come from one plain forward pass that counts
against captum; camcli picks them from its own single forward.

    python bench/guided_gradcam.py [--models tv:resnet18 tf_efficientnet_lite0] [--images 8] [--channels-last]
"""

from __future__ import annotations

import argparse
import warnings

import torch
from common import camcli_explain, paired, race, sample_batch

from camcli.allocator import keep_freed_memory
from camcli.layers import resolve_layer
from camcli.models import load_model

K = 5


def run(name: str, images: int, repeats: int, device: torch.device, channels_last: bool) -> None:
    from captum.attr import GuidedGradCam

    loaded = load_model(name, random_weights=name != "tf_efficientnet_lite0")
    model = loaded.model.to(device).eval()
    size = loaded.data.input_size
    layer = resolve_layer(model, size).name
    x = sample_batch(loaded, images).to(device)

    def camcli_maps() -> torch.Tensor:
        out = camcli_explain(model, (layer,), x, ["guided-gradcam"], K, channels_last=channels_last)
        return out.maps["guided-gradcam"].raw

    oracle = GuidedGradCam(model, dict(model.named_modules())[layer])

    def captum_maps() -> torch.Tensor:
        with torch.no_grad():
            classes = model(x).topk(K, dim=1).indices
        return torch.stack(
            [oracle.attribute(x, target=classes[:, j].tolist(), interpolate_mode="bilinear") for j in range(K)], dim=1
        )

    times, maps = race({"camcli": camcli_maps, "captum": captum_maps}, repeats)
    ours, theirs = min(times["camcli"]), min(times["captum"])
    a, b = maps["camcli"], maps["captum"]
    agree = float((a - b).abs().max() / b.abs().max())
    relu_only = all(not isinstance(m, (torch.nn.ReLU6, torch.nn.SiLU, torch.nn.GELU)) for m in model.modules())
    note = "" if relu_only else "  (captum leaves non-ReLU activations unguided: maps differ by design)"
    layout = "channels-last" if channels_last else "contiguous"
    print(f"{name:<24} batch {images}, top-{K}, layer {layer}, device {device}, camcli layout {layout}")
    print(f"  camcli  {images / ours:8.2f} img/s   (best of {repeats}: {ours:.2f} s)")
    print(f"  captum  {images / theirs:8.2f} img/s   (best of {repeats}: {theirs:.2f} s)")
    print(
        f"  ratio   {paired(times['captum'], times['camcli']):8.2f}x   (median of per-round ratios; "
        f"best-of ratio {theirs / ours:.2f}x)"
    )
    print(f"  max relative difference of the maps {agree:.1e}{note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["tv:resnet18", "tf_efficientnet_lite0"])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--channels-last",
        action="store_true",
        help="run camcli's engine in channels-last layout (faster convs; guided maps then "
        "differ from captum by ~1e-3 where ReLU gates flip on rounding)",
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    keep_freed_memory()  # as `camcli explain` does; both contenders run with it
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in args.models:
        run(name, args.images, args.repeats, torch.device(args.device), args.channels_last)


if __name__ == "__main__":
    main()
