"""camcli: Grad-CAM and its family of explanations for whole folders of images.

``import camcli`` stays light (no torch): the command line answers --help and usage errors
before the heavy libraries load. The Python API lives in :mod:`camcli.api`.
"""

from importlib.metadata import PackageNotFoundError, version

from .rebuild import full_map

try:
    __version__ = version("camcli")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__", "full_map"]
