"""``camcli layers``: a model's candidate target layers, with shape, layout, grid and gradient coverage."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import CamcliError
from ..job import ModelSpec

if TYPE_CHECKING:
    from ..layers import LayerInfo


@dataclass(frozen=True)
class LayersRequest:
    model: ModelSpec
    show_all: bool = False  # every module with a tensor output, not only candidates


@dataclass(frozen=True)
class LayersResult:
    model: str
    input_size: tuple[int, int]
    channels: int
    layers: tuple[LayerInfo, ...]  # candidates, or every output with show_all
    default: str | None  # the default layer's name; None when the model has none
    note: str | None = None  # why there is no default


def layers(request: LayersRequest) -> LayersResult:
    """Probe the model (built with random weights unless weights are given: shapes do not depend on
    them) and list its layers."""
    from ..layers import default_layer, probe_layers
    from ..models import load_spec

    spec = request.model
    loaded = load_spec(spec if spec.weights else dataclasses.replace(spec, random_weights=True))
    found = probe_layers(loaded.model, loaded.data.input_size, loaded.data.channels)
    try:
        default: str | None = default_layer(found, loaded.head.task).name
        note = None
    except CamcliError as exc:
        default, note = None, str(exc)
    shown = tuple(found if request.show_all else [i for i in found if i.candidate])
    return LayersResult(str(loaded.ref), loaded.data.input_size, loaded.data.channels, shown, default, note)
