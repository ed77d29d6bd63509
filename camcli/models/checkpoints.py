"""Read weights files without running what they contain, and find the model's weights in them.

A ``.pth`` file is a pickle, and a pickle can name any function to call while it loads. Trainers
store more than tensors beside the weights (timm's ``train.py`` an ``argparse.Namespace``, Lightning
its hyper-parameters), which torch's own ``weights_only`` loader refuses outright. For torch's zip
format (every ``torch.save`` since 1.6) camcli's unpickler accepts exactly the globals torch's
``weights_only`` loader allows (tensors, storages, dtypes, plain containers); every other global
becomes an inert placeholder, so loading such a file never imports or calls anything it names, and
the weights beside it are still read. Setting attributes (pickle's BUILD) is allowed on instances of
plain containers and tensors only, never on a class or a function, so a file cannot patch the
running program. Older formats (before torch 1.6, and tar archives) are read by torch's own
``weights_only`` loader alone.
"""

from __future__ import annotations

import pickle
import types
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..errors import ModelError


class Skipped:
    """Stands in for an object a checkpoint names but camcli does not load (never called, never built)."""

    qualname = "?"

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __setstate__(self, state: object) -> None:
        pass

    def __repr__(self) -> str:
        return f"<skipped {self.qualname}>"


def _allowed_globals() -> dict[str, Any]:
    """What torch's weights_only unpickler allows, by qualified name."""
    from torch._weights_only_unpickler import _get_allowed_globals

    return dict(_get_allowed_globals())


def _safe_build(self: _SafeUnpickler) -> None:
    """BUILD (set an object's state) only on instances of plain containers, tensors and placeholders."""
    import torch

    state = self.stack.pop()
    target = self.stack[-1]
    if isinstance(target, type) or not isinstance(target, (dict, list, set, torch.Tensor, Skipped)):
        return  # a class, a function or anything else: left as it is
    self.stack.append(state)
    pickle._Unpickler.load_build(self)  # type: ignore[attr-defined]  # private; typeshed omits it


class _SafeUnpickler(pickle._Unpickler):
    """The pure-Python unpickler, with globals restricted (``find_class``) and BUILD restricted."""

    stack: list[Any]  # the pure-Python unpickler's value stack, which typeshed does not declare
    allowed: ClassVar[dict[str, Any]] = {}
    dispatch: ClassVar[dict[int, Any]] = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.BUILD[0]] = _safe_build

    def find_class(self, module: str, name: str) -> Any:
        qualname = f"{module}.{name}"
        if qualname in self.allowed:
            return self.allowed[qualname]
        return type("Skipped", (Skipped,), {"qualname": qualname})


def _pickle_module() -> types.ModuleType:
    """A module that looks like ``pickle`` to ``torch.load`` but unpickles safely."""
    _SafeUnpickler.allowed = _allowed_globals()
    module = types.ModuleType("camcli_safe_pickle")
    # A bare ModuleType has no such attributes for mypy; torch.load reads exactly these two.
    module.Unpickler = _SafeUnpickler  # type: ignore[attr-defined]
    module.load = lambda fh, **kw: _SafeUnpickler(fh, **kw).load()  # type: ignore[attr-defined]
    return module


def read_checkpoint(path: Path) -> Any:
    """The file's content with only tensors and plain containers loaded (.pth/.pt/.ckpt/.bin or .safetensors).

    Any failure becomes one ModelError sentence saying what was expected; the readers' own warnings
    (torch's about pickle protocols, say) are not shown: the sentence says what matters.
    """
    if not path.is_file():
        raise ModelError(f"Weights file '{path}' does not exist.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = _read(path)
    except ModelError:
        raise
    except Exception as exc:  # any reader failure means the same thing to the user
        reason = " ".join(str(exc).split())[:200] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"Cannot read weights file '{path}' ({reason}). Expected a PyTorch checkpoint (.pth, .pt, .ckpt, .bin) "
            "or a .safetensors file."
        ) from None
    _refuse_meta(found, path)
    return found


def _read(path: Path) -> Any:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    import zipfile

    import torch

    if not zipfile.is_zipfile(path):  # the legacy formats: torch's own restricted loader only
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise ModelError(
                f"'{path}' is in torch's legacy format (before torch 1.6, or a tar archive) and holds objects "
                "other than tensors, which camcli reads only from the current format. On a machine you trust, "
                "re-save its weights: "
                "torch.save(torch.load(PATH, weights_only=False)['state_dict'], 'weights.pth')."
            ) from None
    return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_pickle_module())


def _refuse_meta(found: Any, path: Path, depth: int = 0) -> None:
    """A tensor without data (on the ``meta`` device, as a model built for shapes only saves it) cannot be
    loaded into a model: say so in one sentence."""
    import torch

    if isinstance(found, torch.Tensor):
        if found.is_meta:
            raise ModelError(
                f"Weights file '{path}' holds tensors without data (device 'meta'): it was saved from a model "
                "that was never materialized. Save the weights of a model that holds them."
            )
    elif isinstance(found, Mapping) and depth < 4:
        for value in found.values():
            _refuse_meta(value, path, depth + 1)


# Where trainers put the weights: timm's train.py and Lightning "state_dict", torchvision's reference
# scripts "model", others "model_state_dict"; their EMA copies under the *_ema keys.
WEIGHT_KEYS = ("state_dict", "model", "model_state_dict", "net", "weights")
EMA_KEYS = ("state_dict_ema", "model_ema", "ema_state_dict", "ema")
WRAPPERS = ("module.", "_orig_mod.")  # DistributedDataParallel, torch.compile


@dataclass(frozen=True)
class Found:
    """The weights found in a checkpoint, and how: for the record in explanation.json."""

    state: dict[str, Any]
    key: str | None  # the checkpoint entry they came from; None for a bare state dict
    prefix: str  # a prefix stripped so the names fit the model ("" for none)

    def describe(self) -> dict[str, Any]:
        return {"entry": self.key, "prefix_stripped": self.prefix or None}


def _tensors_only(obj: Any) -> bool:
    import torch

    return (
        isinstance(obj, Mapping)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def weights_in(obj: Any, path: Path, ema: bool = False) -> tuple[dict[str, Any], str | None]:
    """The state dict inside a checkpoint: the file itself, or the entry trainers use for it."""
    if not ema and _tensors_only(obj):
        return dict(obj), None
    keys = EMA_KEYS if ema else WEIGHT_KEYS
    if isinstance(obj, Mapping):
        for key in keys:
            if _tensors_only(obj.get(key)):
                return dict(obj[key]), key
        found = ", ".join(repr(k) for k in list(obj)[:8])
    else:
        found = type(obj).__name__
    if ema:
        raise ModelError(
            f"'{path}' has no EMA weights (looked for {', '.join(EMA_KEYS)}; it holds {found}). "
            "Drop --ema to use its regular weights."
        )
    raise ModelError(
        f"'{path}' holds no state dict (a mapping of names to tensors) at the top or under "
        f"{', '.join(WEIGHT_KEYS)}; it holds {found}."
    )


def unwrap(state: dict[str, Any]) -> dict[str, Any]:
    """Names without DistributedDataParallel's ``module.`` and torch.compile's ``_orig_mod.``, in any nesting."""

    def clean(name: str) -> str:
        while True:
            for wrapper in WRAPPERS:
                if name.startswith(wrapper):
                    name = name[len(wrapper) :]
                    break
            else:
                return name.replace("._orig_mod.", ".")

    return {clean(k): v for k, v in state.items()}


def fit_names(state: dict[str, Any], own: set[str]) -> tuple[dict[str, Any], str]:
    """Strip the one key prefix that makes the names fit the model (a LightningModule keeps the model
    under an attribute: ``encoder.conv1.weight``); keys outside that prefix (a loss's buffers, a second
    network) are dropped. No prefix fits: the names as they are."""
    if set(state) == own:
        return state, ""
    candidates = {".".join(k.split(".")[:depth]) + "." for k in state for depth in (1, 2, 3) if k.count(".") >= depth}
    fits = []
    for prefix in sorted(candidates, key=len):
        stripped = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if set(stripped) == own:
            fits.append((prefix, stripped))
    if len(fits) == 1:
        return fits[0][1], fits[0][0]
    return state, ""
