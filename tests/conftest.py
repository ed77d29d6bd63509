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
