"""Throughput: explanations at the cost of inference, side by side in one process.

On the same images (a folder built from sample_images/), model and batch size it reports
images/second and ratios for:
  plain       decode + preprocess + forward under no_grad: the floor. It uses camcli's own decode
              pool and memory layout, so the ratios measure the cost of explaining, nothing else.
  explain     camcli end to end: Grad-CAM top-5 with the default outputs (overlay, raw map, JSON;
              --save chooses others).
  engine      tensors in, top-5 Grad-CAM maps out, set up once as a run does (vs a plain forward
              on the same tensors).
  grad-cam    pytorch-grad-cam's GradCAM computing the same top-5 maps from tensors (no writing),
              set up per call as people call it, against camcli's engine also set up per call.
and, with --rss, the peak resident memory of `camcli explain` on 200 and 2,000 images.

    python bench/throughput.py [--models tf_efficientnet_lite0 tv:resnet50] [--images 48] [--rss]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from itertools import count as counter
from pathlib import Path

import torch
from common import SAMPLES, camcli_engine, camcli_explain, paired, race, sample_batch

from camcli.allocator import keep_freed_memory
from camcli.discover import discover
from camcli.job import ExplainJob, parse_save
from camcli.layers import resolve_layer
from camcli.models import load_model
from camcli.pipeline import ahead, batches, run
from camcli.preprocess import prepare
from camcli.records import Prepared
from camcli.session import resolve
from camcli.writer import write

K = 5


def make_folder(root: Path, count: int) -> Path:
    """``count`` images: hard links to the sample images (copies where links are refused)."""
    files = sorted(p for p in SAMPLES.iterdir() if p.suffix in (".png", ".jpg"))
    folder = root / f"images{count}"
    folder.mkdir(parents=True)
    for i in range(count):
        source = files[i % len(files)]
        target = folder / f"{i:06d}{source.suffix}"
        try:
            os.link(source, target)
        except OSError:
            shutil.copy(source, target)
    return folder


def bench_model(
    name: str, folder: Path, batch: int, rounds: int, device: torch.device, fmt: str, save: frozenset[str]
) -> None:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    loaded = load_model(name, random_weights=name != "tf_efficientnet_lite0")
    model = loaded.model.to(device).eval()
    size = loaded.data.input_size
    info = resolve_layer(model, size)
    layer = info.name
    items = discover([folder])
    job = ExplainJob(layers=(layer,), top_k=K, batch_size=batch, overlay_format=fmt, save=save)
    session = resolve(job, loaded)  # the run's setup, as `camcli explain` makes it
    layout = torch.channels_last if session.channels_last else torch.contiguous_format
    out = Path(tempfile.mkdtemp(prefix="camcli-bench-"))

    def plain() -> int:
        model.to(memory_format=layout)
        try:
            with ThreadPoolExecutor(session.workers) as pool, torch.no_grad():
                for chunk in batches(ahead(pool, partial(prepare, data=loaded.data), items, 2 * batch), batch):
                    x = torch.stack([p.tensor for p in chunk if isinstance(p, Prepared)])
                    model(x.to(device).contiguous(memory_format=layout)).argmax(1).tolist()
        finally:
            model.to(memory_format=torch.contiguous_format)
        return len(items)

    rounds_done = counter()

    def explain() -> int:
        # Each round writes a new output folder, as a first run over a folder does (overwriting
        # costs the file system more: it drops the old files' blocks as each new one lands).
        folder = out / f"round{next(rounds_done)}"
        return sum(1 for _ in run(session, items, partial(write, folder, ctx=session.ctx)))

    x = sample_batch(loaded, batch).to(device)
    # The engine set up once (layer resolved, hooks placed, weights in the run's memory layout), as
    # `camcli explain` sets it up once per run; then timed per batch against a forward pass on the same
    # model, in the same layout (the engine's hooks are disarmed outside its calls).
    explainer = camcli_engine(model, (layer,), x, ["gradcam"], channels_last=session.channels_last)

    def forward() -> None:
        with torch.no_grad():
            model(x.contiguous(memory_format=layout)).topk(K, dim=1)

    def engine() -> torch.Tensor:
        return explainer(x, lambda scores: scores.topk(K, dim=1).indices).maps["gradcam"].display

    # Against pytorch-grad-cam as people call it (set up per call), camcli is set up per call too.
    def engine_per_call() -> torch.Tensor:
        return (
            camcli_explain(model, (layer,), x, ["gradcam"], K, channels_last=session.channels_last)
            .maps["gradcam"]
            .display
        )

    def grad_cam() -> list:
        with torch.no_grad():
            classes = model(x).topk(K, dim=1).indices.tolist()
        with GradCAM(model=model, target_layers=[dict(model.named_modules())[layer]]) as pgc:
            return [pgc(input_tensor=x, targets=[ClassifierOutputTarget(c[j]) for c in classes]) for j in range(K)]

    n = len(items)
    pipe, _ = race({"plain": plain, "explain": explain}, rounds)
    with explainer:
        tensors, _ = race({"forward": forward, "engine": engine}, rounds)
    versus, _ = race({"engine per call": engine_per_call, "grad-cam": grad_cam}, rounds)
    shutil.rmtree(out, ignore_errors=True)
    best = {k: min(v) for k, v in {**pipe, **tensors, **versus}.items()}
    print(
        f"\n{name}: {n} images, batch {batch}, top-{K}, layer {layer}, device {device}, "
        f"{session.workers} workers, {'channels-last' if session.channels_last else 'contiguous'}, overlays {fmt}, "
        f"writes {','.join(sorted(save | {'json'}))}"
    )
    print(f"  plain inference (decode+forward)  {n / best['plain']:7.2f} img/s")
    print(
        f"  camcli explain, outputs written   {n / best['explain']:7.2f} img/s   "
        f"{1 / paired(pipe['explain'], pipe['plain']):5.2f}x plain   (target >= 0.6x)"
    )
    print(f"  forward only (tensors)            {batch / best['forward']:7.2f} img/s")
    print(
        f"  camcli engine (tensors -> maps)   {batch / best['engine']:7.2f} img/s   "
        f"{1 / paired(tensors['engine'], tensors['forward']):5.2f}x forward (target >= 0.9x)"
    )
    per_call = batch / best["engine per call"]
    print(
        f"  pytorch-grad-cam (tensors -> maps){batch / best['grad-cam']:7.2f} img/s   camcli engine set up per call "
        f"as well ({per_call:.2f} img/s) is {paired(versus['grad-cam'], versus['engine per call']):5.2f}x faster "
        "(target >= 10x)"
    )


def peak_rss(folder: Path, out: Path) -> float:
    """Peak RSS in MiB of one `camcli explain` process."""
    code = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    command = [
        sys.executable,
        "-m",
        "camcli",
        "explain",
        str(folder),
        "-o",
        str(out),
        "-q",
        "--top-k",
        str(K),
        "--overlay-format",
        "jpg",
    ]
    done = subprocess.run([sys.executable, "-c", code, *command], capture_output=True, text=True, check=True)
    return int(done.stdout.strip()) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["tf_efficientnet_lite0", "tv:resnet50"])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--overlay-format", default="png", choices=["png", "jpg", "webp"])
    parser.add_argument(
        "--save", action="append", default=[], help="outputs to write, as camcli's --save (default: overlay,raw_map)"
    )
    parser.add_argument("--rss", action="store_true", help="also measure peak RSS for 200 and 2,000 images")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    keep_freed_memory()  # as `camcli explain` does; every contender in this process runs with it
    device = torch.device(args.device)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, device {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
    )
    with tempfile.TemporaryDirectory(prefix="camcli-bench-") as tmp:
        folder = make_folder(Path(tmp), args.images)
        for name in args.models:
            bench_model(
                name, folder, args.batch_size, args.rounds, device, args.overlay_format, parse_save(tuple(args.save))
            )
        if args.rss:
            small, large = make_folder(Path(tmp), 200), make_folder(Path(tmp), 2000)
            rss_small = peak_rss(small, Path(tmp) / "out200")
            rss_large = peak_rss(large, Path(tmp) / "out2000")
            print(
                f"\npeak RSS of camcli explain (default model, top-{K}, jpg overlays): "
                f"200 images {rss_small:.0f} MiB, 2,000 images {rss_large:.0f} MiB, "
                f"ratio {rss_large / rss_small:.2f} (target <= 1.2)"
            )
    print(f"(peak RSS of this benchmark process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)")


if __name__ == "__main__":
    main()
