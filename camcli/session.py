"""What a job derives once before any image is explained: the loaded model on its device, the
target layer, the classes to explain, the settings fingerprint and the run record.

Every runner (local, Ray) builds one from the same ``ExplainJob``, so their outputs agree.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .discover import printable
from .errors import CamcliError
from .job import ExplainJob
from .layers import LayerInfo, resolve_layer
from .models import LoadedModel, load_model
from .pipeline import EngineOptions, default_workers, resolve_device
from .preprocess import sha256_of
from .targets import Targets, resolve_class
from .writer import RunContext, fingerprint


@dataclass(frozen=True)
class Session:
    """A job made concrete: everything the pipeline and the writer need."""

    job: ExplainJob
    loaded: LoadedModel
    device: torch.device
    layer: LayerInfo
    options: EngineOptions
    ctx: RunContext
    run_info: dict[str, Any]


def open_session(job: ExplainJob) -> Session:
    """Load the model and resolve everything the job leaves to the model (labels, layer, classes)."""
    device = resolve_device(job.device)
    if job.precision == "fp16" and device.type == "cpu":
        raise CamcliError("--precision fp16 needs a GPU; on the CPU use --precision bf16 or fp32.")
    spec = job.model
    loaded = load_model(spec.name, weights=spec.weights, num_classes=spec.num_classes,
                        labels_file=spec.labels_file, random_weights=spec.random_weights)
    classes = tuple(dict.fromkeys(resolve_class(c, loaded.labels) for c in job.classes))
    targets = Targets(classes, min(job.k, loaded.num_classes))
    layer = resolve_layer(loaded.model, loaded.data.input_size, job.layer)
    loaded.model.to(device)

    data = loaded.data
    model_info = {
        "name": str(loaded.ref), "weights": loaded.weights, "target_layer": layer.name,
        "input_size": list(data.input_size), "num_classes": loaded.num_classes,
    }
    preprocess_info = {
        "resize": data.resize if isinstance(data.resize, int) else list(data.resize),
        "resize_rule": "shorter side" if isinstance(data.resize, int) else "exact (height, width)",
        "interpolation": data.interpolation, "center_crop": list(data.input_size),
        "mean": list(data.mean), "std": list(data.std),
    }
    # A local weights file is identified by its content, so --resume notices a retrained model.
    weights_id = loaded.weights if spec.weights is None else f"sha256:{sha256_of(Path(spec.weights))}"
    settings = {  # everything that shapes an image's outputs: --resume compares their fingerprint
        "camcli": __version__, "model": str(loaded.ref), "weights": weights_id, "labels": list(loaded.labels),
        "layer": layer.name, "methods": list(job.methods), "classes": list(classes), "top_k": targets.top_k,
        "batch_size": job.batch_size, "device": device.type, "precision": job.precision, "save": sorted(job.save),
        "overlay_format": job.overlay_format, "colormap": job.colormap, "alpha": job.alpha,
        "preprocess": preprocess_info, "max_pixels": job.max_pixels,
    }
    ctx = RunContext(model=model_info, preprocess=preprocess_info, colormap=job.colormap, alpha=job.alpha,
                     save=job.save, overlay_format=job.overlay_format, fingerprint=fingerprint(settings))
    workers = job.workers or default_workers()
    shared = ("methods", "classes", "top_k", "batch_size", "precision", "overlay_format", "colormap", "alpha",
              "max_pixels")
    import timm
    import torchvision

    run_info = {
        "camcli": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "torchvision": torchvision.__version__, "timm": timm.__version__,
        "model": model_info, "device": str(device), "fingerprint": ctx.fingerprint,
        "options": {
            "inputs": [printable(p) for p in job.inputs], "include": list(job.include), "exclude": list(job.exclude),
            **{key: settings[key] for key in shared},
            "workers": workers, "save": sorted(job.save | {"json"}), "out": str(job.out),
            "resume": job.resume, "config": job.config,
        },
    }
    options = EngineOptions(layer=layer.name, targets=targets, device=device, batch_size=job.batch_size,
                            methods=job.methods, precision=job.precision, workers=workers, max_pixels=job.max_pixels)
    return Session(job, loaded, device, layer, options, ctx, run_info)
