"""Shared fixtures. Tests never download: bundled weights, saved weights or explicit random weights."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
import torch

SAMPLES = Path(__file__).resolve().parent.parent / "sample_images"


@pytest.fixture(scope="session")
def samples() -> Path:
    return SAMPLES


@pytest.fixture(scope="session")
def lite0():
    from camcli.models import load_model

    return load_model("tf_efficientnet_lite0")


@pytest.fixture()
def sample_copy(tmp_path: Path) -> Path:
    """A private copy of a few sample images, safe to add bad files to."""
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("chelsea.png", "coffee.png"):
        shutil.copy(SAMPLES / name, folder / name)
    return folder


@pytest.fixture(autouse=True)
def _quiet_oracles():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


def hook_counts(model: torch.nn.Module) -> list[int]:
    return [
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        + len(getattr(m, "_backward_pre_hooks", {}))
        for m in model.modules()
    ]


def explain_tensors(model: torch.nn.Module, layers, x: torch.Tensor, methods, classes=None, k: int = 2,
                    channels_last: bool = False, batch_size: int = 8, **settings):
    """camcli's engine on tensors: ``layers`` names (None: the default layer), ``classes`` B×K, a chooser
    (class scores → B×K) or None for the top ``k``. Returns the ``Explained`` batch."""
    from camcli.explainer import BatchExplainer
    from camcli.layers import resolve_layers
    from camcli.methods.base import Settings

    size = tuple(x.shape[-2:])
    names = () if layers is None else ((layers,) if isinstance(layers, str) else tuple(layers))
    infos = resolve_layers(model, size, names, int(x.shape[1]))
    if callable(classes):
        choose = classes
    elif classes is not None:
        choose = lambda scores: classes  # noqa: E731
    else:
        choose = lambda scores: scores.topk(k, dim=1).indices  # noqa: E731
    with BatchExplainer(model, [(i.name, i.layout) for i in infos], list(methods), Settings(size, **settings),
                   batch_size=batch_size, channels_last=channels_last) as explainer:
        return explainer(x, choose)
