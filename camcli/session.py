"""One setup of a run: ``resolve(job)`` makes an ``ExplainJob`` concrete, once, into a frozen
``Session`` (the model on its device, its head and preprocessing, the target layers, the classes, every
method with its parameters). The settings fingerprint (what ``--resume`` compares) and the run record
(run.json) are derived from it, never kept by hand.

``camcli explain``, ``camcli evaluate``, ``camcli layers``, every runner and the Python API all use it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import threading
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from . import __version__
from . import methods as registry
from .discover import printable
from .engine.needs import Needs
from .errors import CamcliError
from .explainer import BatchExplainer
from .job import ExplainJob
from .layers import LayerInfo, activation_bytes, probe_layers, resolve_layers
from .methods.base import Settings
from .models import LoadedModel, load_spec
from .params import Value
from .targets import Targets, resolve_class
from .writer import RunContext

DTYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}  # --precision of forward passes


@dataclass(frozen=True)
class Session:
    """A job made concrete: everything the pipeline, the runners and the writer need."""

    job: ExplainJob
    loaded: LoadedModel
    device: torch.device
    layers: tuple[LayerInfo, ...]
    targets: Targets
    params: Mapping[str, Mapping[str, Value]]  # every method's parameters, defaults filled in
    workers: int
    perturbation_batch: int  # perturbed forwards run together (Score-CAM, Ablation-CAM, occlusion)
    ctx: RunContext

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(self.params)

    @property
    def fingerprint(self) -> str:
        return self.ctx.fingerprint

    @property
    def channels_last(self) -> bool:
        """NHWC speeds up convolutions on CPU and CUDA. Not with input-space gradients: guided and
        deconvnet gates flip on rounding differences, and those maps should match other tools exactly."""
        convolutional = any(isinstance(m, torch.nn.Conv2d) for m in self.loaded.model.modules())
        input_space = any(needs.rules for needs in method_needs(self.params, self.loaded.data.input_size))
        return convolutional and self.device.type in ("cpu", "cuda") and not input_space

    def autocast(self) -> AbstractContextManager[Any]:
        """Mixed precision for forward passes only; every map is computed in float32."""
        dtype = DTYPES[self.job.precision]
        return torch.autocast(self.device.type, dtype=dtype) if dtype else nullcontext()

    def explainer(self, stop: threading.Event | None = None) -> BatchExplainer:
        """The engine for this session's model, layers and methods (use it in a ``with`` block); ``stop``
        ends long per-image work between two perturbed forwards."""
        return BatchExplainer(
            self.loaded.model,
            tuple(info.site for info in self.layers),
            self.params,
            self.loaded.data.input_size,
            self.job.smooth,
            self.loaded.head,
            self.perturbation_batch,
            channels_last=self.channels_last,
            autocast=self.autocast,
            stop=stop,
            score=self.job.score,
            separate_layers=self.job.layers_as == "separate",
        )

    def with_targets(self, targets: Targets) -> Session:
        """The same session explaining other classes (e.g. each image's ground-truth classes too);
        its fingerprint follows."""
        return _finish(dataclasses.replace(self, targets=targets))

    def with_methods(self, methods: tuple[str, ...]) -> Session:
        """The same session running other methods (their parameters as the job gave them, else defaults)."""
        given = {name: values for name, values in self.job.method_params.items() if name in methods}
        job = dataclasses.replace(self.job, methods=methods, method_params=given)
        params = registry.resolve_params(methods, given, self.loaded.data.input_size)
        check_gradients_reach(self.layers, method_needs(params, self.loaded.data.input_size))
        return _finish(dataclasses.replace(self, job=job, params=params))

    def run_record(self) -> dict[str, Any]:
        """run.json's description of the run (the runner adds counts and times)."""
        import timm
        import torchvision

        settings = outputs_settings(self)
        return {
            "camcli": __version__,
            "python": platform.python_version(),
            "cwd": printable(os.getcwd()),  # relative source paths in explanation.json are relative to it
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "timm": timm.__version__,
            "model": self.ctx.model,
            "labels": list(self.loaded.labels),
            "device": str(self.device),
            "fingerprint": self.fingerprint,
            "options": {
                "inputs": [printable(p) for p in self.job.inputs],
                "include": list(self.job.include),
                "exclude": list(self.job.exclude),
                **{k: v for k, v in settings.items() if k not in MODEL_SETTINGS},
                "workers": self.workers,
                "perturbation_batch": self.perturbation_batch,
                "save": sorted(self.job.save | {"json"}),
                "out": str(self.job.out),
                "resume": self.job.resume,
                "config": self.job.config,
                "runner": self.job.runner,
            },
        }


MODEL_SETTINGS = ("camcli", "model", "weights", "labels", "head", "checkpoint", "layers", "preprocess")


def outputs_settings(session: Session) -> dict[str, Any]:
    """Every setting that shapes an image's outputs: ``--resume`` compares their fingerprint."""
    job, loaded, targets = session.job, session.loaded, session.targets
    recorded = {
        name: {p.name: values[p.name] for p in registry.get(name).params if p.record}
        for name, values in session.params.items()
    }
    return {
        "camcli": __version__,
        "model": str(loaded.ref),
        "weights": loaded.identity,
        "labels": list(loaded.labels),
        "head": loaded.head.name,
        "task": loaded.head.task,
        "checkpoint": loaded.checkpoint,
        "layers": [info.name for info in session.layers],
        "layers_as": job.layers_as,
        "preprocess": loaded.data.describe(),
        "methods": list(session.methods),
        "params": {name: values for name, values in recorded.items() if values},
        "smooth": ",".join(sorted(job.smooth)) or None,
        "score": job.score,
        "classes": list(targets.classes),
        "top_k": targets.top_k,
        "threshold": targets.threshold,
        **({"per_image_classes": _digest(sorted(targets.per_image.items()))} if targets.per_image else {}),
        "batch_size": job.batch_size,
        "device": session.device.type,
        "precision": job.precision,
        "save": sorted(job.save),
        "overlay_format": job.overlay_format,
        "colormap": job.colormap,
        "alpha": job.alpha,
        "max_pixels": job.max_pixels,
    }


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode("utf-8")).hexdigest()[:32]


def resolve(job: ExplainJob, loaded: LoadedModel | None = None) -> Session:
    """Load the job's model (or take ``loaded``: a caller's module, already where it should run) and
    resolve everything the job leaves to the model: device, labels, layers, classes, parameters."""
    if loaded is None:
        device = resolve_device(job.device)
        if job.precision == "fp16" and device.type == "cpu":
            raise CamcliError("--precision fp16 needs a GPU; on the CPU use --precision bf16 or fp32.")
        loaded = load_spec(job.model)
        loaded.model.to(device)
    else:
        first = next(loaded.model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    classes = tuple(dict.fromkeys(resolve_class(c, loaded.labels) for c in job.classes))
    targets = Targets(classes, min(job.k, loaded.num_classes), job.threshold, loaded.head)
    probed = probe_layers(loaded.model, loaded.data.input_size, loaded.data.channels)
    layers = resolve_layers(
        loaded.model, loaded.data.input_size, job.layers, loaded.data.channels, probed, loaded.head.task
    )
    params = registry.resolve_params(job.methods, job.method_params, loaded.data.input_size)
    if loaded.head.task == "segment":
        check_segmentation(job, params)
    check_gradients_reach(layers, method_needs(params, loaded.data.input_size))
    for name, values in params.items():  # a method that cannot apply to this model says so before any image
        settings = Settings(loaded.data.input_size, job.smooth & registry.get(name).smoothing, values)
        registry.load(name).prepare(loaded.model, tuple(info.name for info in layers), settings)
    perturbation = job.perturbation_batch or perturbation_batch(activation_bytes(probed), device)
    blank = RunContext(model={}, preprocess={})
    workers = job.workers or default_workers()
    return _finish(Session(job, loaded, device, layers, targets, params, workers, perturbation, blank))


PERTURBATION_MEMORY = 1 << 30  # bytes of module outputs a batch of perturbed forwards may hold (CPU)
PERTURBATION_MAX = 256


def perturbation_batch(per_image: int, device: torch.device) -> int:
    """How many perturbed forwards to run together: as many as fit a memory budget (1 GiB of module
    outputs on the CPU, a quarter of the free memory on a GPU), at most 256. One image's outputs are
    ``per_image`` bytes; the result does not change any number, only how the work is grouped."""
    budget = PERTURBATION_MEMORY
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget = free // 4
    return max(1, min(PERTURBATION_MAX, budget // max(per_image, 1)))


def _finish(session: Session) -> Session:
    """The session with its run context (the records every explanation.json repeats, the fingerprint)."""
    job = session.job
    ctx = RunContext(
        model=describe_model(session.loaded, session.layers),
        preprocess=session.loaded.data.describe(),
        colormap=job.colormap,
        alpha=job.alpha,
        save=job.save,
        overlay_format=job.overlay_format,
        fingerprint=_digest(outputs_settings(session)),
    )
    return dataclasses.replace(session, ctx=ctx)


def resolve_device(spec: str) -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU."""
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise CamcliError(f"Unknown device '{spec}'. Use auto, cpu, cuda, cuda:N or mps.") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CamcliError(f"Device '{spec}' was requested but CUDA is not available here. Use --device cpu.")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise CamcliError(
            f"Device '{spec}' does not exist: {torch.cuda.device_count()} CUDA device(s). "
            f"Use cuda:0 to cuda:{torch.cuda.device_count() - 1}."
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise CamcliError("Device 'mps' was requested but Apple MPS is not available here. Use --device cpu.")
    if device.type not in ("cpu", "cuda", "mps"):
        raise CamcliError(f"Unsupported device '{spec}'. Use auto, cpu, cuda, cuda:N or mps.")
    return device


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def method_needs(params: Mapping[str, Mapping[str, Value]], input_size: tuple[int, int]) -> list[Needs]:
    """What each method needs from the pass, with its parameters."""
    return [registry.load(name).requires(Settings(input_size, params=values)) for name, values in params.items()]


def check_segmentation(job: ExplainJob, params: Mapping[str, Mapping[str, Value]]) -> None:
    """What a segmentation model cannot be explained with (yet), refused before any image."""
    perturbing = [name for name in params if registry.get(name).cls.perturbs]
    if perturbing:
        raise CamcliError(
            f"--method {','.join(perturbing)} scores perturbed forwards, which for a segmentation model would "
            "need the clean prediction's pixels kept; camcli does not do that yet. Use a method computed "
            "from one pass: gradcam, gradcam++, xgradcam, hirescam, layercam, eigencam, fullgrad, ..."
        )
    if job.score != "logit":
        raise CamcliError(
            f"--score {job.score}: a segmentation model's class score is the sum of the class's logits over "
            "its predicted pixels. Leave --score out."
        )


def check_gradients_reach(layers: tuple[LayerInfo, ...], needs: list[Needs]) -> None:
    """A gradient method at a layer the class scores do not reach would give empty maps: refuse it."""
    if not any(n.layer_gradients for n in needs):
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
        "task": loaded.head.task,
        **({"checkpoint": loaded.checkpoint} if loaded.checkpoint else {}),
        **({"in_chans": loaded.data.channels} if loaded.data.channels != 3 else {}),
    }
