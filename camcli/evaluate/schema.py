"""The metrics ``camcli evaluate`` reports, in the order tables list them, and what each needs.

A metrics document (``metrics.json``) holds ``{"methods": {METHOD: {KEY: value}}, "gates": [...]}``.
A key that is absent was not computed; a key whose value is ``None`` was computed over no usable
case (e.g. no image had a box of its class).
"""

from __future__ import annotations

from dataclasses import dataclass

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels; x1, y1 exclusive


@dataclass(frozen=True)
class MetricInfo:
    key: str
    label: str  # as tables show it
    percent: bool  # True: a percentage (0-100, as Grad-CAM++ defines it); False: a share or AUC in [0, 1]
    needs: str  # how to have it computed, for "not computed" messages


METRICS = (
    MetricInfo("top1_cls_error", "top-1 cls. error", False, "ground-truth classes (--annotations or --masks)"),
    MetricInfo("top5_cls_error", "top-5 cls. error", False, "ground-truth classes (--annotations or --masks)"),
    MetricInfo("top1_loc_error", "top-1 loc. error", False, "ground-truth boxes (--annotations)"),
    MetricInfo("top5_loc_error", "top-5 loc. error", False, "ground-truth boxes (--annotations) and --top-k 5"),
    MetricInfo("gt_known_loc_accuracy", "GT-known loc. acc.", False, "ground-truth boxes (--annotations)"),
    MetricInfo("pointing_game", "pointing game", False, "ground-truth boxes or masks (--annotations, --masks)"),
    MetricInfo(
        "energy_pointing_game", "energy pointing game", False, "ground-truth boxes or masks (--annotations, --masks)"
    ),
    MetricInfo("deletion_auc", "deletion AUC", False, "--faithfulness"),
    MetricInfo("insertion_auc", "insertion AUC", False, "--faithfulness"),
    MetricInfo("average_drop_pct", "average drop %", True, "--faithfulness"),
    MetricInfo("increase_in_confidence_pct", "increase in conf. %", True, "--faithfulness"),
)
BY_KEY = {m.key: m for m in METRICS}
