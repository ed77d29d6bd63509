"""Error types. Every message says what the user can do about it."""

from __future__ import annotations


class CamcliError(Exception):
    """A problem with how camcli was asked to run (exit code 2)."""


class ModelError(CamcliError):
    """The model name, weights or labels cannot be used."""


class WeightsUnavailable(ModelError):
    """Pretrained weights would have to be downloaded."""


class LayerError(CamcliError):
    """The requested target layer does not exist or is unusable."""


class TargetError(CamcliError):
    """A requested class is unknown."""


class ImageError(Exception):
    """One input image cannot be used; recorded for that image, the run goes on."""
