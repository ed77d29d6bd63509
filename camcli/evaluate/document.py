"""metrics.json: the numbers of an evaluation, nested as ``schema.METRICS`` says, with every choice they
depend on (the protocol) and the gates' verdicts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import metrics, road
from .gates import Gate, evaluate_gates
from .job import CORRELATION_STRIDE, CORRELATION_WINDOW, ROAD_PERCENTILES
from .schema import BY_KEY
from .scoring import Line, summarize

SCHEMA_VERSION = 2


@dataclass(frozen=True)
class Settings:
    """What an evaluation's numbers depend on; a shard records them so ``camcli merge`` computes the
    metrics as one run would (``evaluation.json``)."""

    loc_threshold: float = 0.15
    tolerance: float = 15.0
    faithfulness: bool = False
    steps: int = 50
    gates: tuple[Gate, ...] = ()
    methods: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)  # sanity results, by method
    road: bool = False
    road_percentiles: tuple[float, ...] = ROAD_PERCENTILES
    occlusion_correlation: bool = False
    correlation_window: int = CORRELATION_WINDOW
    correlation_stride: int = CORRELATION_STRIDE
    cam_mult_image: bool = False
    arcc: bool = False

    def describe(self) -> dict[str, Any]:
        return {
            "loc_threshold": self.loc_threshold,
            "tolerance": self.tolerance,
            "faithfulness": self.faithfulness,
            "steps": self.steps,
            "gates": [[g.name, g.method, g.threshold] for g in self.gates],
            "methods": list(self.methods),
            "road": self.road,
            "road_percentiles": list(self.road_percentiles),
            "occlusion_correlation": self.occlusion_correlation,
            "correlation_window": self.correlation_window,
            "correlation_stride": self.correlation_stride,
            "cam_mult_image": self.cam_mult_image,
            "arcc": self.arcc,
        }

    @classmethod
    def of(cls, doc: Mapping[str, Any]) -> Settings:
        return cls(
            float(doc["loc_threshold"]),
            float(doc["tolerance"]),
            bool(doc["faithfulness"]),
            int(doc["steps"]),
            tuple(Gate(str(n), None if m is None else str(m), float(t)) for n, m, t in doc["gates"]),
            tuple(str(m) for m in doc["methods"]),
            road=bool(doc["road"]),
            road_percentiles=tuple(float(p) for p in doc["road_percentiles"]),
            occlusion_correlation=bool(doc["occlusion_correlation"]),
            correlation_window=int(doc["correlation_window"]),
            correlation_stride=int(doc["correlation_stride"]),
            cam_mult_image=bool(doc["cam_mult_image"]),
            arcc=bool(doc["arcc"]),
        )

    def summary(self, lines: Sequence[Line], method: str) -> dict[str, float | None]:
        """``scoring.summarize`` of one method with what these settings asked for."""
        return summarize(
            lines, method, self.faithfulness, self.road, self.occlusion_correlation, self.cam_mult_image, self.arcc
        )


@dataclass(frozen=True)
class Counts:
    """How many images the evaluation saw, and the annotations that matched none of them."""

    images: int = 0
    annotated: int = 0
    failed: int = 0
    unreadable: int = 0
    source_changed: tuple[str, ...] = ()
    unmatched: tuple[str, ...] = ()


def nest(values: Mapping[str, float | None]) -> dict[str, Any]:
    """A method's flat metrics nested as metrics.json holds them (``schema.METRICS`` paths)."""
    entry: dict[str, Any] = {}
    for key, value in values.items():
        *parents, leaf = BY_KEY[key].path
        place = entry
        for name in parents:
            place = place.setdefault(name, {})
        place[leaf] = value
    return entry


def metrics_doc(
    settings: Settings, lines: Sequence[Line], counts: Counts
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """metrics.json from the images' lines (in input order), and the gates' verdicts."""
    flat = {m: settings.summary(lines, m) for m in settings.methods}
    gates = evaluate_gates(flat, settings.gates)
    if counts.annotated == 0:  # a gate never passes on nothing
        for gate in gates:
            gate.update(passed=False, reason="no image matched the annotations")
    any_method = next(iter(flat.values()), {})

    def accuracy(key: str) -> float | None:
        error = any_method.get(key)
        return None if error is None else 1.0 - error

    methods: dict[str, Any] = {}
    for name, values in flat.items():
        entry = nest(values)
        entry.setdefault("localization", {}).update(threshold=settings.loc_threshold, iou=metrics.LOC_IOU)
        entry.setdefault("pointing_game", {})["tolerance_px"] = settings.tolerance
        if name in settings.extra:
            entry["sanity"] = settings.extra[name]
        methods[name] = entry
    doc = {
        "schema_version": SCHEMA_VERSION,
        "images": counts.images,
        "annotated": counts.annotated,
        "failed": counts.failed,
        "unreadable": counts.unreadable,
        "unmatched_annotations": list(counts.unmatched),
        "source_changed": list(counts.source_changed),
        "classification": {"top1": accuracy("top1_cls_error"), "top5": accuracy("top5_cls_error")},
        "methods": methods,
        "gates": gates,
        "passed": all(g["passed"] for g in gates),
        "protocol": protocol(settings, sanity=bool(settings.extra)),
    }
    return doc, gates


def protocol(settings: Settings, sanity: bool = False) -> dict[str, Any]:
    from .sanity import IMAGES

    return {
        "score": "the class's pre-softmax score for maps (unless --score said otherwise); its probability under "
        "the model's head for faithfulness, ROAD and CamMult",
        "classes": "localization per ILSVRC (top-1, top-5, ground-truth-known); pointing, energy and faithfulness "
        "for each image's ground-truth classes (faithfulness: the first, else the top-1 class); complexity, "
        "sparseness, ROAD, occlusion correlation, CamMult and ARCC for each image's ground-truth classes, else "
        "its top-1 class",
        "localization": {
            "threshold": settings.loc_threshold,
            "segment": "largest 8-connected",
            "iou": metrics.LOC_IOU,
        },
        "pointing_game": {"tolerance_px": settings.tolerance, "point": "the map's peak"},
        "energy_pointing_game": "share of the map (on the image, 0 outside the crop) inside the boxes/masks",
        "complexity": "Quantus Complexity: entropy (nats) of |map| / sum |map|, -sum p ln(p + 1e-12), the raw map "
        "bilinearly upsampled to the model input; an all-zero map is left out",
        "sparseness": "Quantus Sparseness: Gini index of |map| / max |map| + 1e-7, the raw map bilinearly upsampled "
        "to the model input; an all-zero map is left out",
        **(
            {
                "faithfulness": {
                    "steps": settings.steps,
                    "order": "pixels of the model input by decreasing map value",
                    "deletion_substrate": "0 in normalized space (the mean colour)",
                    "insertion_substrate": f"Gaussian blur, kernel {metrics.BLUR_KERNEL}, sigma {metrics.BLUR_SIGMA}",
                    "auc": "trapezoid rule over [0, 1]",
                    "average_drop": "image multiplied by the map in pixel space",
                }
            }
            if settings.faithfulness
            else {}
        ),
        **(
            {
                "road": {
                    "percentiles": list(settings.road_percentiles),
                    "map": "the raw map upsampled to the model input, scaled to [0, 1]",
                    "morf": "removes the pixels whose map value is not below the map's p-th percentile (numpy, linear)",
                    "lerf": "removes the pixels whose 1 - map value is not below the p-th percentile of 1 - map",
                    "imputation": "noisy linear (Rong et al. 2022): each removed pixel the weighted mean of its "
                    "in-bounds neighbours (1/6 sides, 1/12 diagonals), solved jointly by conjugate gradients to a "
                    f"relative residual of {road.TOLERANCE:g}, plus N(0, {road.NOISE:g}^2) noise in normalized "
                    f"input space from a generator seeded {road.SEED} for each (image, class), LeRF then MoRF "
                    "by percentile (pytorch-grad-cam's order)",
                    "value": "the class's probability under the model's head on the imputed image minus on the "
                    "image, averaged over the percentiles",
                    "combined": "(LeRF - MoRF) / 2",
                }
            }
            if settings.road or settings.arcc
            else {}
        ),
        **(
            {
                "occlusion_correlation": {
                    "window": settings.correlation_window,
                    "stride": settings.correlation_stride,
                    "occlusion": "camcli's occlusion method: windows inside the input set to 0 in normalized space "
                    "(the mean colour), the drop of the score the maps explain (--score) averaged over the "
                    "windows covering each pixel",
                    "correlation": "Spearman of the raw map upsampled to the model input and the occlusion map, "
                    "per (image, class), averaged (Grad-CAM paper, section 5.3)",
                }
            }
            if settings.occlusion_correlation
            else {}
        ),
        **(
            {
                "cam_mult_image": {
                    "map": "the raw map upsampled to the model input, scaled to [0, 1]",
                    "perturbation": "the normalized model input multiplied by the map (a map of 0 gives the mean "
                    "colour), pytorch-grad-cam's CamMultImageConfidenceChange",
                    "confidence_change": "the class's probability under the model's head on the product minus on "
                    "the image, per (image, class), averaged",
                    "drop_in_confidence": "mean of max(0, -change) (absolute, not relative to the probability)",
                    "increase_in_confidence": "share of (image, class) pairs whose change is > 0",
                }
            }
            if settings.cam_mult_image
            else {}
        ),
        **(
            {
                "arcc": {
                    "map": "the raw map upsampled to the model input, scaled to [0, 1]",
                    "complexity": "mean |map| over the pixels (L1 norm / pixel count; not Quantus's complexity)",
                    "coherency": "(Pearson + 1) / 2 of the map and the same method's map (same layers, parameters "
                    "and score) of the normalized input multiplied by the map, both scaled to [0, 1]; Pearson = "
                    f"cov / (std * std + {metrics.COHERENCY_EPS:g}), sample statistics",
                    "road": "ROAD combined, as the road protocol computes it, times 2, clipped to [0, 1]",
                    "value": f"3 / (1 / (coherency + {metrics.ARCC_EPS:g}) + 1 / (1 - complexity + "
                    f"{metrics.ARCC_EPS:g}) + 1 / (road + {metrics.ARCC_EPS:g})) per (image, class), averaged; "
                    "pytorch-grad-cam's ARCC",
                }
            }
            if settings.arcc
            else {}
        ),
        **(
            {
                "sanity": {
                    "images": IMAGES,
                    "cascade": "top-down, cumulative, normal with each tensor's std",
                    "correlation": "Spearman of the input maps",
                }
            }
            if sanity
            else {}
        ),
    }
