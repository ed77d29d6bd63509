"""Allowed values of the options that take a name, each written here once; the command line, the
config files, the Python API, the checks and the modules that implement them read them from here.
Light (no torch): usage errors are reported before heavy libraries load."""

from __future__ import annotations

HEADS = ("softmax", "sigmoid", "binary")  # how outputs become classes (camcli.heads)
TASKS = ("classify", "segment")  # what a model's output is (camcli.heads); found from the model, or --task
SCORES = ("logit", "probability", "rest")  # --score: the class score a method explains (camcli.heads)
LAYERS_AS = ("average", "separate")  # --layers-as: several target layers averaged, or one map each
PRECISIONS = ("fp32", "bf16", "fp16")  # forward-pass precision (maps are always float32)
SAVE = ("overlay", "map", "raw_map", "json")  # --save; explanation.json ("json") is always written
DEFAULT_SAVE = frozenset({"overlay", "raw_map"})
OVERLAY_FORMATS = ("png", "jpg", "webp")  # camcli.encoding
COLORMAPS = ("jet", "hot", "gray")  # camcli.render
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")  # --interpolation (camcli.models.data)
CROP_MODES = ("center", "squash", "border")  # --crop-mode (camcli.models.data)
DEVICES = "auto, cpu, cuda, cuda:N or mps"
SOURCES = ("timm", "tv")  # camcli models --source
