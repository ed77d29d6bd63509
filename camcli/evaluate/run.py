"""``camcli evaluate``: explain (or read) a folder with ground truth, compute the paper's evaluations,
write ``metrics.json`` and ``per_image.jsonl``, and judge the gates.

Every number's protocol is stated in ``metrics.json``'s ``protocol`` and in README:
- classification: top-1 / top-5 accuracy of the model's predictions against the ground-truth classes;
- localization (Grad-CAM paper §4.1, ILSVRC): the map at input resolution binarized at
  ``loc_threshold`` × its max, the largest 8-connected segment boxed, mapped to image pixels; correct at
  IoU ≥ 0.5 with a ground-truth box of the class;
- pointing game (Zhang et al. 2016): the map's peak within ``tolerance`` px of a ground-truth box or mask
  of the class; energy pointing game (Score-CAM): the share of the map's mass (on the image) inside them;
- faithfulness (``--faithfulness``), for each image's ground-truth class (its top-1 class when it has
  none): deletion and insertion AUC (Petsiuk et al. 2018; pixels of the model input in the map's order,
  ``steps`` steps, the class's probability under the model's head, trapezoid rule; deleted pixels set to
  0 in normalized space, i.e. the mean colour; insertion from a Gaussian blur, kernel 11, σ 5), average
  drop and increase in confidence (Chattopadhyay et al. 2018; the image multiplied by the map in pixel
  space);
- sanity (``--sanity``, Adebayo et al. 2018): the model's layers re-initialized cumulatively from the
  top; Spearman's ρ between each image's map and the map after each step.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch

from ..discover import discover, printable
from ..errors import EXIT_GATE_FAILED, EXIT_INTERRUPTED, EXIT_OK, CamcliError
from ..job import ExplainJob
from ..maps import box_on_original, input_map, to_original, upsample
from ..methods import REGISTRY
from ..preprocess import decode, to_input
from ..records import Geometry
from ..session import Session, open_session
from ..writer import JSON_NAME, atomic_write, json_text
from . import annotations as gt
from . import metrics
from .gates import Gate, evaluate_gates
from .schema import Box
from .table import format_table

SCHEMA_VERSION = 1
SANITY_IMAGES = 8


@dataclass(frozen=True)
class EvaluateJob:
    """One `camcli evaluate` run: an explain job (top-5 at least) plus the ground truth and what to compute."""

    explain: ExplainJob
    annotations: Path | None = None
    masks: Path | None = None
    class_map: Path | None = None
    source: Path | None = None  # --from: an existing explain output folder; nothing is re-explained
    loc_threshold: float = 0.15
    tolerance: float = 15.0
    faithfulness: bool = False
    steps: int = 50
    sanity: bool = False
    gates: tuple[Gate, ...] = ()

    def __post_init__(self) -> None:
        if self.annotations is None and self.masks is None:
            raise CamcliError(
                "camcli evaluate needs ground truth: --annotations FILE (CSV, COCO JSON, a Pascal VOC "
                "folder) and/or --masks DIR."
            )
        if not 0 < self.loc_threshold < 1:
            raise CamcliError(f"--loc-threshold {self.loc_threshold} is outside (0, 1); the paper uses 0.15.")
        if self.steps < 2:
            raise CamcliError("--steps must be at least 2.")


@dataclass(frozen=True)
class Image:
    """One explained image as its outputs describe it, with its ground truth."""

    rel: PurePosixPath
    folder: Path
    doc: dict[str, Any]
    objects: tuple[tuple[int, gt.GroundTruthObject], ...]  # (class index, object)

    @property
    def classes(self) -> tuple[int, ...]:
        """The ground-truth classes, in the order the annotations give them."""
        return tuple(dict.fromkeys(cls for cls, _ in self.objects))


def read_truth(job: EvaluateJob) -> list[gt.ImageTruth]:
    class_map = gt.read_class_map(job.class_map) if job.class_map else None
    truths = gt.read_annotations(job.annotations, class_map) if job.annotations else []
    if job.masks is not None:
        truths += gt.read_masks(job.masks, class_map)
    return truths


def run(
    job: EvaluateJob,
    say: Callable[[str], None],
    emit: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Evaluate; returns the exit code (4 when a gate fails)."""
    from ..runners.local import execute, output_lock

    truths = read_truth(job)
    stop = stop or threading.Event()
    explain = job.explain
    out = explain.out
    if job.source is not None:
        session = open_session(explain) if job.faithfulness or job.sanity else None
        images = read_run(job.source, truths, session.loaded.labels if session else None)
        return finish(job, images, session, out, say, emit)
    items = discover(explain.inputs, explain.include, explain.exclude, out=out)
    with output_lock(out):
        session = open_session(explain)
        matching = gt.match_annotations(truths, [(Path(printable(i.path)), i.rel) for i in items])
        classes = gt.resolve_classes(truths, session.loaded.labels)
        per_image = {
            rel.as_posix(): tuple(dict.fromkeys(classes[o.class_spec] for o in objs))
            for rel, objs in matching.objects.items()
        }
        session = with_ground_truth(session, per_image)
        code = execute(explain, session, items, None, stop, say)
        if code == EXIT_INTERRUPTED:
            return code
        images = read_run(out, truths, session.loaded.labels)
        final = finish(job, images, session, out, say, emit)
    return code if final == EXIT_OK else final


def with_ground_truth(session: Session, per_image: dict[str, tuple[int, ...]]) -> Session:
    """The session, also explaining each image's ground-truth classes (and fingerprinted by them)."""
    targets = dataclasses.replace(session.options.targets, per_image=per_image)
    digest = hashlib.sha256(json.dumps(sorted(per_image.items())).encode()).hexdigest()[:16]
    fingerprint = hashlib.sha256(f"{session.ctx.fingerprint}:{digest}".encode()).hexdigest()[:32]
    return dataclasses.replace(
        session,
        options=dataclasses.replace(session.options, targets=targets),
        ctx=dataclasses.replace(session.ctx, fingerprint=fingerprint),
        run_info={**session.run_info, "fingerprint": fingerprint},
    )


def read_run(folder: Path, truths: Sequence[gt.ImageTruth], labels: Sequence[str] | None) -> list[Image]:
    """The images of an explain output folder (its explanation.json files) with their ground truth."""
    docs = {}
    for path in sorted(folder.rglob(JSON_NAME)):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and "explanations" in doc and "source" in doc:
            docs[PurePosixPath(path.parent.relative_to(folder).as_posix())] = (path.parent, doc)
    if not docs:
        raise CamcliError(f"'{folder}' holds no explanation.json: pass the output folder of camcli explain.")
    refs = [(Path((doc.get("source") or {}).get("path") or rel), rel) for rel, (_, doc) in docs.items()]
    matching = gt.match_annotations(truths, refs)
    names = labels or _labels_of(docs.values())
    classes = gt.resolve_classes(truths, names)
    images = []
    for rel, (where, doc) in docs.items():
        objects = matching.objects.get(rel, ())
        source = doc.get("source") or {}
        if doc.get("status") == "ok" and source.get("width"):
            gt.check_image(matching, rel, (int(source["width"]), int(source["height"])), str(source.get("path")))
        images.append(Image(rel, where, doc, tuple((classes[o.class_spec], o) for o in objects)))
    return images


def _labels_of(docs: Any) -> list[str]:
    """Labels as the run recorded them (index → label from its predictions and explanations)."""
    found: dict[int, str] = {}
    size = 0
    for _, doc in docs:
        size = max(size, int((doc.get("model") or {}).get("num_classes") or 0))
        for entry in [*doc.get("predictions", []), *doc.get("explanations", [])]:
            found[int(entry["class_index"])] = str(entry["label"])
    return [found.get(i, str(i)) for i in range(max(size, max(found, default=-1) + 1))]


def finish(
    job: EvaluateJob,
    images: list[Image],
    session: Session | None,
    out: Path,
    say: Callable[[str], None],
    emit: Callable[[str], None] | None,
) -> int:
    """Compute, write metrics.json and per_image.jsonl, print the table, judge the gates."""
    methods = _methods(images, job)
    per_image: dict[str, dict[str, Any]] = {}
    flat = {m: evaluate_method(job, images, m, per_image) for m in methods}
    if job.faithfulness:
        assert session is not None
        for m in methods:
            flat[m].update(faithfulness(job, images, m, session, per_image))
    sanity = {m: sanity_check(images, m, session) for m in methods} if job.sanity and session else {}
    gates = evaluate_gates(flat, job.gates)
    doc = document(job, images, flat, sanity, gates)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "metrics.json", (json_text(doc, indent=2) + "\n").encode("utf-8"))
    lines = "".join(json_text({"path": p, **v}) + "\n" for p, v in sorted(per_image.items()))
    atomic_write(out / "per_image.jsonl", lines.encode("utf-8"))
    say(format_table({"methods": flat, "gates": sorted(gates, key=lambda g: g["passed"])}))
    if emit is not None:
        emit(json_text(doc))
    failed = [g for g in gates if not g["passed"]]
    for g in failed:
        why = g["reason"] or f"value {g['value']:.4g}"
        say(f"gate failed: --{g['name']} {g['threshold']:g} on {g['method']}: {why}")
    return EXIT_GATE_FAILED if failed else EXIT_OK


def _methods(images: Sequence[Image], job: EvaluateJob) -> list[str]:
    """The heat-map methods the outputs hold (in the order explained)."""
    found: dict[str, None] = {}
    for image in images:
        for exp in image.doc.get("explanations", []):
            if REGISTRY.get(exp["method"]) is not None and REGISTRY[exp["method"]].kind == "cam":
                found[exp["method"]] = None
    if not found:
        raise CamcliError(
            "The outputs hold no heat-map explanation to evaluate (pixel-space methods such as "
            "guided-backprop have no map to box). Explain with --method gradcam (or another CAM)."
        )
    return list(found)


def _input_heat(image: Image, exp: dict[str, Any]) -> torch.Tensor | None:
    """The map at model-input resolution, upsampled from the raw map but not rescaled (the locator)."""
    name = (exp.get("files") or {}).get("raw_map")
    if name is None:
        return None
    raw = torch.from_numpy(np.load(image.folder / name))
    return upsample(raw[None], tuple(image.doc["model"]["input_size"]))[0]


def _explanation(image: Image, method: str, cls: int) -> dict[str, Any] | None:
    return next(
        (e for e in image.doc.get("explanations", []) if e["method"] == method and e["class_index"] == cls), None
    )


def evaluate_method(
    job: EvaluateJob, images: Sequence[Image], method: str, per_image: dict[str, dict[str, Any]]
) -> dict[str, float | None]:
    """Classification, localization and pointing games of one method over the images with ground truth."""
    cases, hits, energies = [], [], []
    for image in images:
        if image.doc.get("status") != "ok" or not image.classes:
            continue
        geometry = Geometry.from_doc(image.doc)
        boxes: dict[int, list[Box]] = {c: [] for c in image.classes}
        masks: dict[int, list[np.ndarray]] = {c: [] for c in image.classes}
        for cls, obj in image.objects:
            if obj.box is not None:
                boxes[cls].append(obj.box)
            if obj.mask is not None:
                masks[cls].append(gt.load_mask(obj.mask, (geometry.width, geometry.height), str(image.rel)))
        map_boxes: dict[int, tuple[int, int, int, int] | None] = {}
        record: dict[str, Any] = {}
        for exp in image.doc["explanations"]:
            if exp["method"] != method:
                continue
            heat = _input_heat(image, exp)
            if heat is None:
                continue
            found = metrics.localization_box(heat.numpy(), job.loc_threshold)
            map_boxes[exp["class_index"]] = box_on_original(found, geometry) if found else None
        predicted = [p["class_index"] for p in image.doc.get("predictions", [])][:5]
        cases.append(metrics.LocalizationCase({c: boxes[c] for c in image.classes}, predicted, map_boxes))
        for cls in image.classes:
            exp = _explanation(image, method, cls)
            if exp is None or not (boxes[cls] or masks[cls]):
                continue
            mask = np.logical_or.reduce(masks[cls]) if masks[cls] else None
            hit = metrics.pointing_hit(tuple(exp["peak"]) if exp.get("peak") else None, boxes[cls], mask, job.tolerance)
            heat = _input_heat(image, exp)
            full = (
                to_original(input_map(heat[None], (heat.shape[0], heat.shape[1])), geometry)[0].numpy()
                if heat is not None
                else None
            )
            region = metrics.region_mask((geometry.height, geometry.width), boxes[cls], masks[cls])
            energy = metrics.energy_share(full, region) if full is not None else None
            hits.append(hit)
            energies.append(energy)
            record.setdefault(method, {})[str(cls)] = {
                "pointing_hit": hit,
                "energy": energy,
                "iou": _best_iou(map_boxes.get(cls), boxes[cls]),
            }
        if record:
            _record(per_image, str(image.doc["source"]["path"]), method, record[method])
    return metrics.summarize(cases, hits, energies)


def _record(per_image: dict[str, dict[str, Any]], path: str, method: str, by_class: dict[str, dict[str, Any]]) -> None:
    """One line of per_image.jsonl: per method, the values of the image's first ground-truth class at the
    top (what the report sorts and filters by) and every class's under "by_class"."""
    entry = per_image.setdefault(path, {"methods": {}})
    found = entry["methods"].setdefault(method, {"by_class": {}})
    for cls, values in by_class.items():
        found["by_class"].setdefault(cls, {}).update(values)
    first = next(iter(found["by_class"]))
    found.update({"class": int(first), **found["by_class"][first]})
    hits = [v["pointing_hit"] for m in entry["methods"].values() for v in m["by_class"].values() if "pointing_hit" in v]
    if hits:
        entry["pointing_hit"] = all(hits)


def _best_iou(found: tuple[int, int, int, int] | None, boxes: Sequence[Box]) -> float | None:
    if found is None or not boxes:
        return None
    return float(metrics.iou_matrix(found, boxes).max())


def _explained_class(image: Image) -> int:
    """The class faithfulness is measured for: the image's ground-truth class, else its top-1."""
    return image.classes[0] if image.classes else int(image.doc["predictions"][0]["class_index"])


def _inputs(images: Sequence[Image], session: Session) -> Iterator[tuple[Image, torch.Tensor]]:
    for image in images:
        if image.doc.get("status") != "ok":
            continue
        rgb, _ = decode(Path(image.doc["source"]["path"]))
        yield image, to_input(rgb, session.loaded.data)[0]


def faithfulness(
    job: EvaluateJob, images: Sequence[Image], method: str, session: Session, per_image: dict[str, dict[str, Any]]
) -> dict[str, float | None]:
    """Deletion/insertion AUC, average drop and increase in confidence of one method's maps."""
    loaded = session.loaded
    model = loaded.model.eval()
    device = session.device

    def score(batch: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            probs = loaded.head.probabilities(loaded.head.scores(model(batch.to(device)).float()))
            return probs.gather(1, classes.to(device)[:, None])[:, 0].cpu()

    tensors, heats, classes, names = [], [], [], []
    for image, x in _inputs(images, session):
        cls = _explained_class(image)
        exp = _explanation(image, method, cls)
        heat = _input_heat(image, exp) if exp else None
        if heat is None:
            continue
        tensors.append(x)
        heats.append(input_map(heat[None], (heat.shape[0], heat.shape[1]))[0])
        classes.append(cls)
        names.append(str(image.doc["source"]["path"]))
    if not tensors:
        return {
            "deletion_auc": None,
            "insertion_auc": None,
            "average_drop_pct": None,
            "increase_in_confidence_pct": None,
        }
    curves: list[metrics.FaithfulnessCurves] = []
    for start in range(0, len(tensors), 16):  # about 4 images each in memory, per triple
        chunk = slice(start, start + 16)
        curves += metrics.deletion_insertion_many(
            score,
            torch.stack(tensors[chunk]),
            torch.stack(heats[chunk]),
            torch.tensor(classes[chunk]),
            job.steps,
            batch_size=session.options.batch_size,
        )
    x_all, maps_all, cls_all = torch.stack(tensors), torch.stack(heats), torch.tensor(classes)
    y = metrics.class_scores(score, x_all, cls_all, session.options.batch_size)
    o = metrics.class_scores(
        score,
        metrics.masked_by_map(x_all, maps_all, loaded.data.mean, loaded.data.std),
        cls_all,
        session.options.batch_size,
    )
    for name, cls, curve, yi, oi in zip(names, classes, curves, y, o, strict=True):
        _record(
            per_image,
            name,
            method,
            {
                str(cls): {
                    "deletion_auc": curve.deletion_auc,
                    "insertion_auc": curve.insertion_auc,
                    "confidence": float(yi),
                    "confidence_masked": float(oi),
                }
            },
        )
    return metrics.summarize(faithfulness=curves, confidence=(y, o))


def randomization_steps(model: torch.nn.Module) -> list[str]:
    """Adebayo et al.'s cascade: the model's blocks from the top (the classifier) down, each a module
    with parameters; sequential containers at the top level are opened one level."""
    steps: list[str] = []
    for name, child in model.named_children():
        if isinstance(child, (torch.nn.Sequential, torch.nn.ModuleList)) and len(child) > 1:
            steps += [
                f"{name}.{sub}"
                for sub, grandchild in child.named_children()
                if any(True for _ in grandchild.parameters())
            ]
        elif any(True for _ in child.parameters()):
            steps.append(name)
    return steps[::-1]


def sanity_check(images: Sequence[Image], method: str, session: Session) -> list[dict[str, Any]]:
    """For the first images: Spearman's ρ between each map and the map after each cascading step of
    re-initializing the model's weights (normal, with each tensor's own standard deviation)."""
    chosen = [(image, x) for image, x in _inputs(images, session)][:SANITY_IMAGES]
    if not chosen:
        return []
    layers = [layer.name for layer in session.layers]
    x = torch.stack([t for _, t in chosen])
    classes = [_explained_class(image) for image, _ in chosen]
    randomized = copy.deepcopy(session.loaded.model)
    base = _maps(randomized, session, layers, method, x, classes)
    results = []
    generator = torch.Generator().manual_seed(0)
    modules = dict(randomized.named_modules())
    for step in randomization_steps(randomized):
        with torch.no_grad():
            for param in modules[step].parameters():
                spread = float(param.std()) if param.numel() > 1 else 1.0
                param.copy_(torch.randn(param.shape, generator=generator) * (spread or 0.02))
        after = _maps(randomized, session, layers, method, x, classes)
        rho = [metrics.spearman(a.numpy(), b.numpy()) for a, b in zip(base, after, strict=True)]
        rho_abs = [metrics.spearman(a.abs().numpy(), b.abs().numpy()) for a, b in zip(base, after, strict=True)]
        results.append({"step": step, "spearman": metrics.mean(rho), "spearman_abs": metrics.mean(rho_abs)})
    return results


def _maps(
    model: torch.nn.Module, session: Session, layers: list[str], method: str, x: torch.Tensor, classes: list[int]
) -> list[torch.Tensor]:
    from ..api import Explainer

    explainer = Explainer(
        model,
        layers=layers,
        methods=[method],
        data=session.loaded.data,
        labels=list(session.loaded.labels),
        head=session.loaded.head.name,
    )
    maps = []
    for i, cls in enumerate(classes):
        [result] = explainer.explain(x[i], classes=[cls])
        maps.append(torch.from_numpy(result.explanations[0].map))
    return maps


def document(
    job: EvaluateJob,
    images: Sequence[Image],
    flat: dict[str, dict[str, float | None]],
    sanity: dict[str, list[dict[str, Any]]],
    gates: list[dict[str, Any]],
) -> dict[str, Any]:
    """metrics.json: the numbers, nested as documented, with every choice they depend on."""
    any_method = next(iter(flat.values()), {})

    def accuracy(key: str) -> float | None:
        error = any_method.get(key)
        return None if error is None else 1.0 - error

    methods = {}
    for name, values in flat.items():
        entry: dict[str, Any] = {
            "localization": {
                "top1_loc_error": values.get("top1_loc_error"),
                "top5_loc_error": values.get("top5_loc_error"),
                "gt_known_loc_accuracy": values.get("gt_known_loc_accuracy"),
                "threshold": job.loc_threshold,
                "iou": metrics.LOC_IOU,
            },
            "pointing_game": {"accuracy": values.get("pointing_game"), "tolerance_px": job.tolerance},
            "energy_pointing_game": values.get("energy_pointing_game"),
        }
        if job.faithfulness:
            entry.update(
                deletion_auc=values.get("deletion_auc"),
                insertion_auc=values.get("insertion_auc"),
                average_drop=values.get("average_drop_pct"),
                increase_in_confidence=values.get("increase_in_confidence_pct"),
            )
        if name in sanity:
            entry["sanity"] = sanity[name]
        methods[name] = entry
    annotated = [i for i in images if i.classes]
    return {
        "schema_version": SCHEMA_VERSION,
        "images": len(images),
        "annotated": len(annotated),
        "failed": sum(1 for i in images if i.doc.get("status") != "ok"),
        "classification": {"top1": accuracy("top1_cls_error"), "top5": accuracy("top5_cls_error")},
        "methods": methods,
        "gates": gates,
        "passed": all(g["passed"] for g in gates),
        "protocol": protocol(job),
    }


def protocol(job: EvaluateJob) -> dict[str, Any]:
    return {
        "score": "the class's pre-softmax score for maps; its probability under the model's head for faithfulness",
        "classes": "localization per ILSVRC (top-1, top-5, ground-truth-known); pointing, energy and faithfulness "
        "for each image's ground-truth classes (faithfulness: the first, else the top-1 class)",
        "localization": {"threshold": job.loc_threshold, "segment": "largest 8-connected", "iou": metrics.LOC_IOU},
        "pointing_game": {"tolerance_px": job.tolerance, "point": "the map's peak"},
        "energy_pointing_game": "share of the map (on the image, 0 outside the crop) inside the boxes/masks",
        **(
            {
                "faithfulness": {
                    "steps": job.steps,
                    "order": "pixels of the model input by decreasing map value",
                    "deletion_substrate": "0 in normalized space (the mean colour)",
                    "insertion_substrate": f"Gaussian blur, kernel {metrics.BLUR_KERNEL}, sigma {metrics.BLUR_SIGMA}",
                    "auc": "trapezoid rule over [0, 1]",
                    "average_drop": "image multiplied by the map in pixel space",
                }
            }
            if job.faithfulness
            else {}
        ),
        **(
            {
                "sanity": {
                    "images": SANITY_IMAGES,
                    "cascade": "top-down, cumulative, normal with each tensor's std",
                    "correlation": "Spearman of the input maps",
                }
            }
            if job.sanity
            else {}
        ),
    }
