"""Shared fixtures. Tests never download: bundled weights, saved weights or explicit random weights.

Hermetic: before anything reads them, HOME and every cache camcli or its libraries consult (torch hub,
Hugging Face, XDG) point into one private temporary folder, so a machine whose caches already hold
pretrained weights runs the same tests the same way, and no test reads or writes the user's files.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

_HOME = Path(tempfile.mkdtemp(prefix="camcli-tests-home-"))
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
_CACHES = {
    "HOME": _HOME,
    "XDG_CACHE_HOME": _HOME / ".cache",
    "XDG_CONFIG_HOME": _HOME / ".config",
    "TORCH_HOME": _HOME / ".cache" / "torch",
    "HF_HOME": _HOME / ".cache" / "huggingface",
    "HF_HUB_CACHE": _HOME / ".cache" / "huggingface" / "hub",
}
if "huggingface_hub" in sys.modules:  # it reads HF_HUB_CACHE once, at import
    raise RuntimeError("huggingface_hub was imported before tests/conftest.py could isolate its cache")
for _name, _path in _CACHES.items():
    os.environ[_name] = str(_path)
os.environ.pop("HUGGINGFACE_HUB_CACHE", None)  # the older spelling would win over HF_HUB_CACHE

import numpy as np  # noqa: E402  (after the environment above, which imports may read)
import pytest  # noqa: E402
import torch  # noqa: E402

SAMPLES = Path(__file__).resolve().parent.parent / "sample_images"


@pytest.fixture(scope="session")
def samples() -> Path:
    return SAMPLES


@pytest.fixture(scope="session")
def lite0():
    from camcli.models import load_model

    return load_model("tf_efficientnet_lite0")


@pytest.fixture
def empty_caches(monkeypatch, tmp_path):
    """No pretrained weights cached anywhere, and no network: a download attempt fails the test."""
    import socket

    import huggingface_hub.constants

    def no_network(*args, **kwargs):
        raise AssertionError(f"a test tried to reach the network: {args}")

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(socket.socket, "connect", no_network)


class TinyNet(torch.nn.Module):
    """A small random classifier (4 classes, 32×32 inputs) for fast unit tests of sessions and pipelines.
    ``unused`` computes a feature map the class scores never see (no gradient reaches it)."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):  # the same weights every time; the tests' random numbers untouched
            torch.manual_seed(0)
            self.features = torch.nn.Sequential(
                torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3, stride=2, padding=1)
            )
            self.unused = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.head = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.unused(x)
        return self.head(torch.relu(self.features(x)).mean(dim=(2, 3)))


@pytest.fixture(scope="session")
def tiny_model():
    """``TinyNet`` as a loaded model (what ``session.resolve`` takes as ``loaded``): eval mode, on the CPU,
    labels class_0..class_3, 32×32 inputs cut from a 36-pixel resize."""
    from camcli.heads import Head
    from camcli.models import DataConfig, LoadedModel, ModelRef

    data = DataConfig((32, 32), 36, "bilinear", (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    labels = tuple(f"class_{i}" for i in range(4))
    return LoadedModel(ModelRef("module", "TinyNet"), TinyNet().eval(), "random", labels, data, Head(), "random")


@pytest.fixture(scope="session")
def run_cli():
    """The command line in this process: ``run_cli("explain", IMAGES, "-o", OUT)`` returns click's Result
    (``exit_code``, ``output`` with stderr, ``stdout``, ``stderr``)."""
    from click.testing import CliRunner

    from camcli.cli import cli

    def run(*args: object, input: str | bytes | None = None, catch_exceptions: bool = True):
        return CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=catch_exceptions)

    return run


@pytest.fixture
def sample_copy(tmp_path: Path) -> Path:
    """A private copy of a few sample images, safe to add bad files to."""
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("chelsea.png", "coffee.png"):
        shutil.copy(SAMPLES / name, folder / name)
    return folder


def corr(a: object, b: object) -> float:
    """Pearson's r of two maps (tensors or arrays of any shape, flattened), in float64."""

    def flat(v: object) -> torch.Tensor:
        found = v.detach().cpu() if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v))
        return found.flatten().double()

    return float(torch.corrcoef(torch.stack([flat(a), flat(b)]))[0, 1])


def hook_counts(model: torch.nn.Module) -> list[int]:
    return [
        len(m._forward_hooks)
        + len(m._forward_pre_hooks)
        + len(m._backward_hooks)
        + len(getattr(m, "_backward_pre_hooks", {}))
        for m in model.modules()
    ]


def explain_tensors(
    model: torch.nn.Module,
    layers,
    x: torch.Tensor,
    methods,
    classes=None,
    k: int = 2,
    channels_last: bool = False,
    batch_size: int = 8,
    smooth=None,
    score: str = "logit",
    layers_as: str = "average",
    head=None,
    **options,
):
    """camcli's engine on tensors: ``layers`` names (None: the default layer), ``classes`` B×K, a chooser
    (class scores → B×K) or None for the top ``k``; methods' options as the API's keywords
    (``occlusion_window=16``). Returns the ``Explained`` batch."""
    from camcli import methods as registry
    from camcli.explainer import BatchExplainer
    from camcli.layers import resolve_layers

    size = tuple(x.shape[-2:])
    names = () if layers is None else ((layers,) if isinstance(layers, str) else tuple(layers))
    infos = resolve_layers(model, size, names, int(x.shape[1]), task=head.task if head else "classify")
    if callable(classes):
        choose = classes
    elif classes is not None:
        choose = lambda scores: classes  # noqa: E731
    else:
        choose = lambda scores: scores.topk(k, dim=1).indices  # noqa: E731
    given = registry.split_options(options)
    assert not options, f"unknown options {options}"
    chosen = tuple(methods)
    params = registry.resolve_params(chosen, {m: v for m, v in given.items() if m in chosen})
    with BatchExplainer(
        model,
        [(i.name, i.layout) for i in infos],
        params,
        size,
        registry.parse_smoothing(smooth),
        batch_size=batch_size,
        channels_last=channels_last,
        score=score,
        separate_layers=layers_as == "separate",
        **({"head": head} if head else {}),
    ) as explainer:
        return explainer(x, choose)
