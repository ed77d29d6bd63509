"""camcli: Grad-CAM explanations for folders of images."""

__version__ = "0.1.0"
