"""The metrics ``camcli evaluate`` reports: their keys, how tables name them, where metrics.json puts them
and what each needs. metrics.json is built from this table (``document.metrics_doc``), and README's
description of it is checked against it by the tests.

A method's entry in metrics.json nests its metrics as ``path`` says (e.g. ``localization.top1_loc_error``,
``pointing_game.accuracy``). A metric that is absent was not computed; one whose value is ``None`` was
computed over no usable case (e.g. no image had a box of its class).
"""

from __future__ import annotations

from dataclasses import dataclass

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels; x1, y1 exclusive


@dataclass(frozen=True)
class MetricInfo:
    key: str  # the flat key gates and tables use
    label: str  # as tables show it
    percent: bool  # True: a percentage (0-100, as Grad-CAM++ defines it); False: a share, AUC, ρ or entropy
    needs: str  # how to have it computed, for "not computed" messages
    path: tuple[str, ...]  # where a method's entry of metrics.json holds it


METRICS = (
    MetricInfo(
        "top1_cls_error",
        "top-1 cls. error",
        False,
        "ground-truth classes (--annotations or --masks)",
        ("classification", "top1_cls_error"),
    ),
    MetricInfo(
        "top5_cls_error",
        "top-5 cls. error",
        False,
        "ground-truth classes (--annotations or --masks)",
        ("classification", "top5_cls_error"),
    ),
    MetricInfo(
        "top1_loc_error",
        "top-1 loc. error",
        False,
        "ground-truth boxes (--annotations)",
        ("localization", "top1_loc_error"),
    ),
    MetricInfo(
        "top5_loc_error",
        "top-5 loc. error",
        False,
        "ground-truth boxes (--annotations) and --top-k 5",
        ("localization", "top5_loc_error"),
    ),
    MetricInfo(
        "gt_known_loc_accuracy",
        "GT-known loc. acc.",
        False,
        "ground-truth boxes (--annotations)",
        ("localization", "gt_known_loc_accuracy"),
    ),
    MetricInfo(
        "pointing_game",
        "pointing game",
        False,
        "ground-truth boxes or masks (--annotations, --masks)",
        ("pointing_game", "accuracy"),
    ),
    MetricInfo(
        "energy_pointing_game",
        "energy pointing game",
        False,
        "ground-truth boxes or masks (--annotations, --masks)",
        ("energy_pointing_game",),
    ),
    MetricInfo("deletion_auc", "deletion AUC", False, "--faithfulness", ("deletion_auc",)),
    MetricInfo("insertion_auc", "insertion AUC", False, "--faithfulness", ("insertion_auc",)),
    MetricInfo("average_drop_pct", "average drop %", True, "--faithfulness", ("average_drop",)),
    MetricInfo(
        "increase_in_confidence_pct", "increase in conf. %", True, "--faithfulness", ("increase_in_confidence",)
    ),
    MetricInfo("road_morf", "ROAD MoRF", False, "--road", ("road", "morf")),
    MetricInfo("road_lerf", "ROAD LeRF", False, "--road", ("road", "lerf")),
    MetricInfo("road_combined", "ROAD combined", False, "--road", ("road", "combined")),
    MetricInfo(
        "occlusion_correlation",
        "occlusion corr. (ρ)",
        False,
        "--occlusion-correlation",
        ("occlusion_correlation",),
    ),
    MetricInfo(
        "cam_mult_confidence_change",
        "CamMult conf. change",
        False,
        "--cam-mult-image",
        ("cam_mult_image", "confidence_change"),
    ),
    MetricInfo(
        "cam_mult_drop_in_confidence",
        "CamMult drop in conf.",
        False,
        "--cam-mult-image",
        ("cam_mult_image", "drop_in_confidence"),
    ),
    MetricInfo(
        "cam_mult_increase_in_confidence",
        "CamMult incr. in conf.",
        False,
        "--cam-mult-image",
        ("cam_mult_image", "increase_in_confidence"),
    ),
    MetricInfo("arcc", "ARCC", False, "--arcc", ("arcc", "value")),
    MetricInfo("arcc_complexity", "ARCC complexity (L1)", False, "--arcc", ("arcc", "complexity")),
    MetricInfo("arcc_coherency", "ARCC coherency", False, "--arcc", ("arcc", "coherency")),
    MetricInfo("arcc_road", "ARCC ROAD term", False, "--arcc", ("arcc", "road")),
    MetricInfo("complexity", "complexity", False, "saved raw maps (--save raw_map)", ("complexity",)),
    MetricInfo("sparseness", "sparseness", False, "saved raw maps (--save raw_map)", ("sparseness",)),
)
BY_KEY = {m.key: m for m in METRICS}


def describe() -> list[str]:
    """metrics.json's per-method layout, one line per metric (README's table is checked against it)."""
    return [f"{'.'.join(m.path)}: {m.label}" for m in METRICS]
