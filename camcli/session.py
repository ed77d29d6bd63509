"""What a job derives once before any image is explained: the loaded model on its device, the
target layer, the classes to explain, the settings fingerprint and the run record.

Every runner (local, Ray) builds one from the same ``ExplainJob``, so their outputs agree.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Any

import torch

from . import __version__
from .discover import printable
from .errors import CamcliError
from .job import ExplainJob
from .layers import LayerInfo, resolve_layers
from .models import LoadedModel, load_spec
from .pipeline import EngineOptions, default_workers, resolve_device
from .targets import Targets, resolve_class
from .writer import RunContext, fingerprint


@dataclass(frozen=True)
class Session:
    """A job made concrete: everything the pipeline and the writer need."""

    job: ExplainJob
    loaded: LoadedModel
    device: torch.device
    layers: tuple[LayerInfo, ...]
    options: EngineOptions
    ctx: RunContext
    run_info: dict[str, Any]


def open_session(job: ExplainJob) -> Session:
    """Load the model and resolve everything the job leaves to the model (labels, layer, classes)."""
    device = resolve_device(job.device)
    if job.precision == "fp16" and device.type == "cpu":
        raise CamcliError("--precision fp16 needs a GPU; on the CPU use --precision bf16 or fp32.")
    loaded = load_spec(job.model)
    classes = tuple(dict.fromkeys(resolve_class(c, loaded.labels) for c in job.classes))
    targets = Targets(classes, min(job.k, loaded.num_classes), job.threshold, loaded.head)
    layers = resolve_layers(loaded.model, loaded.data.input_size, job.layers, loaded.data.channels)
    check_gradients_reach(layers, job.methods)
    loaded.model.to(device)
    names = [info.name for info in layers]

    model_info = describe_model(loaded, layers)
    preprocess_info = loaded.data.describe()
    settings = {  # everything that shapes an image's outputs: --resume compares their fingerprint
        "camcli": __version__,
        "model": str(loaded.ref),
        "weights": loaded.identity,
        "labels": list(loaded.labels),
        "head": loaded.head.name,
        "threshold": job.threshold,
        "checkpoint": loaded.checkpoint,
        "layers": names,
        "methods": list(job.methods),
        "smooth": job.smooth,
        "occlusion": [job.occlusion_window, job.occlusion_stride],
        "classes": list(classes),
        "top_k": targets.top_k,
        "batch_size": job.batch_size,
        "device": device.type,
        "precision": job.precision,
        "save": sorted(job.save),
        "overlay_format": job.overlay_format,
        "colormap": job.colormap,
        "alpha": job.alpha,
        "preprocess": preprocess_info,
        "max_pixels": job.max_pixels,
    }
    ctx = RunContext(
        model=model_info,
        preprocess=preprocess_info,
        colormap=job.colormap,
        alpha=job.alpha,
        save=job.save,
        overlay_format=job.overlay_format,
        fingerprint=fingerprint(settings),
    )
    workers = job.workers or default_workers()
    shared = (
        "methods",
        "smooth",
        "occlusion",
        "classes",
        "top_k",
        "threshold",
        "batch_size",
        "precision",
        "overlay_format",
        "colormap",
        "alpha",
        "max_pixels",
    )
    import timm
    import torchvision

    run_info = {
        "camcli": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "model": model_info,
        "device": str(device),
        "fingerprint": ctx.fingerprint,
        "options": {
            "inputs": [printable(p) for p in job.inputs],
            "include": list(job.include),
            "exclude": list(job.exclude),
            **{key: settings[key] for key in shared},
            "workers": workers,
            "save": sorted(job.save | {"json"}),
            "out": str(job.out),
            "resume": job.resume,
            "config": job.config,
        },
    }
    options = EngineOptions(
        layers=tuple(info.site for info in layers),
        targets=targets,
        device=device,
        batch_size=job.batch_size,
        methods=job.methods,
        precision=job.precision,
        workers=workers,
        max_pixels=job.max_pixels,
        smooth=job.smooth,
        occlusion_window=job.occlusion_window,
        occlusion_stride=job.occlusion_stride,
        head=loaded.head,
    )
    return Session(job, loaded, device, layers, options, ctx, run_info)


def check_gradients_reach(layers: tuple[LayerInfo, ...], methods: tuple[str, ...]) -> None:
    """A gradient method at a layer the class scores do not reach would give empty maps: refuse it."""
    from .methods import load

    if not any(load(m).needs.layer_gradients for m in methods):
        return
    for info in layers:
        if info.live == 0:
            raise CamcliError(
                f"Layer '{info.name}' receives no gradient from the class scores (as a ViT's last block, which "
                "reaches the head through the class token alone), so gradient maps there would be empty. Pick "
                "another with --layer ('camcli layers MODEL' shows the share each layer receives), or a method "
                "that needs no gradient (eigencam, scorecam, ablationcam)."
            )


def describe_model(loaded: LoadedModel, layers: tuple[LayerInfo, ...]) -> dict[str, Any]:
    """The "model" record of explanation.json and run.json."""
    return {
        "name": str(loaded.ref),
        "weights": loaded.weights,
        "target_layer": ", ".join(i.name for i in layers),
        "layers": [info.describe() for info in layers],
        "input_size": list(loaded.data.input_size),
        "num_classes": loaded.num_classes,
        "head": loaded.head.name,
        **({"checkpoint": loaded.checkpoint} if loaded.checkpoint else {}),
        **({"in_chans": loaded.data.channels} if loaded.data.channels != 3 else {}),
    }
