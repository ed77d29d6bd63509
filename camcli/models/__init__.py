"""Models: where they come from (``sources``), their weights (``checkpoints``), the preprocessing they
expect (``data``), their head and labels. ``load_model`` returns one record carrying all of it.

Nothing is ever downloaded: weights come from ``--weights``, a model folder, the local caches, the
bundled EfficientNet-Lite0 checkpoint, or explicit random weights.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelError
from ..heads import HEADS, Head, logits_of
from ..job import ModelSpec, Preprocessing
from .data import DataConfig, resolve, smp_config, torchvision_config
from .sources import BUNDLED, ModelRef, build, model_names, parse_model_name

DEFAULT_MODEL = BUNDLED
__all__ = [
    "DEFAULT_MODEL",
    "DataConfig",
    "LoadedModel",
    "ModelRef",
    "list_model_names",
    "load_model",
    "load_spec",
    "module_data_config",
    "parse_model_name",
]


@dataclass(frozen=True)
class LoadedModel:
    """A ready model in eval mode with everything needed to feed, explain and describe it."""

    ref: ModelRef
    model: nn.Module
    weights: str  # where the weights came from, for the record
    labels: tuple[str, ...]
    data: DataConfig
    head: Head = field(default_factory=Head)
    identity: str = ""  # what --resume compares for the weights (a content hash for local files)
    checkpoint: dict[str, Any] | None = None  # the checkpoint entry and prefix that were used

    @property
    def num_classes(self) -> int:
        return len(self.labels)


def list_model_names(source: str, pattern: str = "*") -> list[str]:
    """Names matching a glob pattern, for ``camcli models``."""
    return [n for n in model_names(source) if fnmatch.fnmatchcase(n, pattern)]


def load_model(
    name: str,
    weights: Path | None = None,
    num_classes: int | None = None,
    labels_file: Path | None = None,
    random_weights: bool = False,
    *,
    ema: bool = False,
    head: str = "softmax",
    preprocess: Preprocessing | None = None,
    task: str | None = None,
) -> LoadedModel:
    """Build the model and load its weights without touching the network (see ``sources``)."""
    if head not in HEADS:
        raise ModelError(f"Unknown head '{head}'. Use one of {', '.join(HEADS)}.")
    ref = parse_model_name(name)
    built = build(ref, weights, num_classes, random_weights, ema)
    model = built.model.eval()
    overrides = preprocess or Preprocessing()
    channels = input_channels(model)
    if ref.source == "tv":
        data = torchvision_config(ref.name, overrides)
    elif ref.source == "smp":
        data = smp_config(overrides)
    else:
        data = resolve(model, overrides, built.has_config, channels)
    outputs, found = count_outputs(model, data, ref, task)
    the_head = Head(head, found)
    if head == "binary" and outputs != 1:
        raise ModelError(
            f"--head binary needs a model with one output; '{ref}' has {outputs}. Use --head softmax or sigmoid."
        )
    n = the_head.classes(outputs)
    if labels_file is not None:
        labels = read_labels(labels_file, n)
    elif built.labels is not None and len(built.labels) == n:
        labels = built.labels
    else:
        labels = _default_labels(ref, model, n, head)
    return LoadedModel(ref, model, built.weights, labels, data, the_head, built.identity, built.checkpoint)


def load_spec(spec: ModelSpec) -> LoadedModel:
    """``load_model`` for the model a job names (``-m``, ``--weights`` and the options that go with them)."""
    return load_model(
        spec.name,
        weights=spec.weights,
        num_classes=spec.num_classes,
        labels_file=spec.labels_file,
        random_weights=spec.random_weights,
        ema=spec.ema,
        head=spec.head,
        preprocess=spec.preprocess,
        task=spec.task,
    )


def module_data_config(model: nn.Module) -> DataConfig:
    """timm's eval preprocessing for any module: its pretrained config where it has one, else timm's defaults."""
    return resolve(model, Preprocessing(), bool(getattr(model, "pretrained_cfg", None)), input_channels(model))


def input_channels(model: nn.Module) -> int:
    """The image channels the model takes: from its pretrained config (timm's ``input_size``, ``in_chans``
    of a model folder), else 1 when its first convolution takes one channel (a grayscale model of your
    own), else 3."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    size = cfg.get("input_size")
    if size:
        return int(size[0])
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return 1 if first is not None and first.in_channels == 1 else 3


def count_outputs(model: nn.Module, data: DataConfig, ref: ModelRef, task: str | None = None) -> tuple[int, str]:
    """How many outputs the model gives and its task: B×N logits (``classify``, N read from timm's
    ``num_classes`` when it has one) or B×C×H×W per-pixel class logits (``segment``), by one forward
    pass. ``task`` (``--task``) must agree with what the model returns."""
    n = getattr(model, "num_classes", None)
    if isinstance(n, int) and n > 0 and task in (None, "classify"):
        return n, "classify"
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            out = logits_of(model(torch.zeros(1, data.channels, *data.input_size, device=device)))
    except Exception as exc:
        raise ModelError(
            f"'{ref}' fails on a 1×{data.channels}×{data.input_size[0]}×{data.input_size[1]} input: "
            f"{type(exc).__name__}: {exc}. Check --input-size."
        ) from None
    finally:
        for module, mode in modes.items():
            module.training = mode
    found = {2: "classify", 4: "segment"}.get(out.dim()) if isinstance(out, torch.Tensor) else None
    if found is None or out.shape[1] == 0:
        shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(
            f"'{ref}' returns {shape}; camcli explains classifiers whose forward returns B×classes logits and "
            "segmentation models whose forward returns B×classes×H×W logits, with at least one class."
        )
    if task is not None and task != found:
        shape = "×".join(str(d) for d in out.shape)
        raise ModelError(
            f"--task {task}: '{ref}' returns {shape} outputs, which are those of a {found} model. "
            f"Leave --task out (or pass --task {found})."
        )
    return int(out.shape[1]), found


def read_labels(path: Path, n: int) -> tuple[str, ...]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ModelError(f"Cannot read labels file '{path}': {exc.strerror}.") from exc
    except UnicodeDecodeError as exc:
        raise ModelError(
            f"Labels file '{path}' is not UTF-8 text ({exc.reason} at byte {exc.start}). Save it as UTF-8."
        ) from exc
    while lines and not lines[-1].strip():
        lines.pop()
    labels = tuple(line.strip() for line in lines)
    if len(labels) != n:
        raise ModelError(
            f"Labels file '{path}' has {len(labels)} names but the model has {n} classes. Give one name per line."
        )
    return labels


def _default_labels(ref: ModelRef, model: nn.Module, n: int, head: str) -> tuple[str, ...]:
    if head == "binary":
        return ("negative", "positive")
    if ref.source == "tv":
        from .sources import tv_default_weights

        default = tv_default_weights(ref.name)
        categories = default.meta.get("categories") if default is not None else None
        if categories and len(categories) == n:
            return tuple(categories)
    elif ref.source == "timm":
        from timm.data.imagenet_info import ImageNetInfo, infer_imagenet_subset

        subset = infer_imagenet_subset(model)
        if subset:
            info = ImageNetInfo(subset)
            if info.num_classes() == n:
                return tuple(info.index_to_description(i) for i in range(n))
    return tuple(f"class_{i}" for i in range(n))
