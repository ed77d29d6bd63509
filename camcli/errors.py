"""Error types and exit codes. Every message says what the user can do about it.

Imports nothing heavy: the command line reports usage errors before torch is loaded.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_GATE_FAILED = 4
EXIT_INTERRUPTED = 130


class CamcliError(Exception):
    """A problem with how camcli was asked to run (exit code 2)."""


class ModelError(CamcliError):
    """The model name, weights or labels cannot be used."""


class WeightsUnavailable(ModelError):
    """Pretrained weights would have to be downloaded."""


class LayerError(CamcliError):
    """The requested target layer does not exist or is unusable."""


class TargetError(CamcliError):
    """A requested class is unknown or ambiguous."""


class RunLocked(CamcliError):
    """Another run is writing to the same output folder."""


class StopRequested(Exception):
    """The run was asked to stop (SIGINT/SIGTERM) in the middle of long work on a batch: the batch is
    dropped unwritten, and the run ends as interrupted."""


class ImageError(Exception):
    """One input image cannot be used; recorded for that image, the run goes on."""
