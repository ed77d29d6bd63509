"""What methods need from the model, as context managers that leave it untouched: ``Capture`` (one
forward per batch, layer and input gradients for all k classes), ``Rules`` (backward rules at every
activation) and ``Probe`` (batched perturbed forwards, from the input or from the target layer up)."""

from .capture import Capture, LayerCapture, Needs, Pass, Tap
from .probe import Probe
from .rules import Rules, is_activation

__all__ = ["Capture", "LayerCapture", "Needs", "Pass", "Probe", "Rules", "Tap", "is_activation"]
