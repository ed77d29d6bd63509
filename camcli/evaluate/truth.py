"""The images of a run with their ground truth: annotations read, matched to the images (by their
source path or their folder under the output folder) and their classes resolved to the model's."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .. import outputs
from . import annotations as gt
from .job import EvaluateJob


@dataclass(frozen=True)
class Image:
    """One explained image as its outputs describe it, with its ground truth."""

    rel: PurePosixPath
    folder: Path
    doc: dict[str, Any]
    objects: tuple[tuple[int, gt.GroundTruthObject], ...]  # (class index, object)
    source: Path  # the source file now: its recorded path, relative ones taken from where the run started

    @property
    def classes(self) -> tuple[int, ...]:
        """The ground-truth classes, in the order the annotations give them."""
        return tuple(dict.fromkeys(cls for cls, _ in self.objects))

    @property
    def ok(self) -> bool:
        return self.doc.get("status") == "ok"

    @property
    def path(self) -> str:
        source = self.doc.get("source")
        return str(source["path"]) if isinstance(source, dict) and "path" in source else self.rel.as_posix()


def read_truth(job: EvaluateJob) -> list[gt.ImageTruth]:
    class_map = gt.read_class_map(job.class_map) if job.class_map else None
    truths = gt.read_annotations(job.annotations, class_map) if job.annotations else []
    if job.masks is not None:
        truths += gt.read_masks(job.masks, class_map, job.explain.max_pixels)
    return truths


def ground_truth_classes(
    truths: Sequence[gt.ImageTruth], images: Sequence[gt.ImageRef], labels: Sequence[str]
) -> tuple[dict[str, tuple[int, ...]], list[str]]:
    """Each image's ground-truth classes (keyed by its output folder path, as ``Targets.per_image``
    takes them), and the annotations that match none of ``images``."""
    matching = gt.match_annotations(truths, images)
    classes = gt.resolve_classes(truths, labels)
    per_image = {
        rel.as_posix(): tuple(dict.fromkeys(classes[o.class_spec] for o in objs))
        for rel, objs in matching.objects.items()
    }
    return per_image, matching.not_explained


def with_truth(
    found: Sequence[outputs.Image],
    truths: Sequence[gt.ImageTruth],
    labels: Sequence[str],
    started: Path | None = None,
) -> tuple[list[Image], list[str], int]:
    """The readable images of a run with their ground truth; the annotations matching none of them; how
    many images could not be read (their explanation.json is missing or broken). ``started``: the folder
    the run was started in, against which its relative source paths are resolved (None: here)."""
    readable = [i for i in found if i.doc is not None]
    unreadable = sum(1 for i in found if i.doc is None)
    sources = [started / i.path if started is not None else Path(i.path) for i in readable]
    refs = [(source, i.rel) for source, i in zip(sources, readable, strict=True)]
    matching = gt.match_annotations(truths, refs)
    classes = gt.resolve_classes(truths, labels)
    images = []
    for image, path in zip(readable, sources, strict=True):
        assert image.doc is not None
        objects = matching.objects.get(image.rel, ())
        source = image.doc.get("source") or {}
        if image.doc.get("status") == "ok" and source.get("width"):
            gt.check_image(matching, image.rel, (int(source["width"]), int(source["height"])), str(source.get("path")))
        found_objects = tuple((classes[o.class_spec], o) for o in objects)
        images.append(Image(image.rel, image.folder, image.doc, found_objects, path))
    return images, matching.not_explained, unreadable


def recorded_labels(docs: Iterable[dict[str, Any]]) -> list[str]:
    """Labels as a run recorded them (index → label from its predictions and explanations), for runs
    read without their model."""
    found: dict[int, str] = {}
    size = 0
    for doc in docs:
        model = doc.get("model") if isinstance(doc.get("model"), dict) else {}
        count = model.get("num_classes") if isinstance(model, dict) else None
        size = max(size, count if isinstance(count, int) and not isinstance(count, bool) else 0)
        for entry in [*(doc.get("predictions") or []), *outputs.entries(doc)]:
            if isinstance(entry, dict) and isinstance(entry.get("class_index"), int):
                found[int(entry["class_index"])] = str(entry.get("label", entry["class_index"]))
    return [found.get(i, str(i)) for i in range(max(size, max(found, default=-1) + 1))]
