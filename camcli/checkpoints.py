"""Read weights files without running what they contain.

A ``.pth`` file is a pickle, and a pickle can name any function to call while it loads. Trainers
store more than tensors beside the weights (timm's ``train.py`` an ``argparse.Namespace``, Lightning
its hyper-parameters), which torch's own ``weights_only`` loader refuses outright. camcli's
unpickler accepts exactly the globals torch's ``weights_only`` loader allows (tensors, storages,
dtypes, plain containers); every other global becomes an inert placeholder, so loading such a file
never imports or calls anything it names, and the weights beside it are still read.
"""

from __future__ import annotations

import pickle
import types
from pathlib import Path
from typing import Any

from .errors import ModelError


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


class _SafeUnpickler(pickle.Unpickler):
    allowed: dict[str, Any] = {}

    def find_class(self, module: str, name: str) -> Any:
        qualname = f"{module}.{name}"
        if qualname in self.allowed:
            return self.allowed[qualname]
        return type("Skipped", (Skipped,), {"qualname": qualname})


def _pickle_module() -> types.ModuleType:
    """A module that looks like ``pickle`` to ``torch.load`` but unpickles safely."""
    _SafeUnpickler.allowed = _allowed_globals()
    module = types.ModuleType("camcli_safe_pickle")
    module.Unpickler = _SafeUnpickler  # type: ignore[attr-defined]
    module.load = lambda fh, **kw: _SafeUnpickler(fh, **kw).load()  # type: ignore[attr-defined]
    return module


def read_checkpoint(path: Path) -> Any:
    """The file's content with only tensors and plain containers loaded (.pth/.pt/.ckpt/.bin or .safetensors).

    Any failure becomes one ModelError sentence saying what was expected.
    """
    if not path.is_file():
        raise ModelError(f"Weights file '{path}' does not exist.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        import torch

        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_pickle_module())
    except Exception as exc:  # any reader failure means the same thing to the user
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"Cannot read weights file '{path}' ({reason}). Expected a PyTorch checkpoint (.pth, .pt, .ckpt, .bin) "
            "or a .safetensors file."
        ) from None
