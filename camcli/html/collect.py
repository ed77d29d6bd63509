"""Read an output folder as it is on disk: finished, interrupted or still being written.

The explanation.json files are the source of truth. summary.jsonl only adds images whose JSON is
missing (being redone); run.json, metrics.json and per_image.jsonl are optional extras.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import outputs
from .encode import plain_name

HIT_KEYS = ("pointing_hit", "hit", "pointing_game.hit")  # the per-image audit outcome, first found


@dataclass(frozen=True)
class Shot:
    """One explained (method, class) entry of explanation.json; or one concept of a class-free method
    (``class_index`` None, ``label`` the concept's top classes), or its picture of all concepts."""

    method: str
    class_index: Any
    label: str
    rank: Any
    logit: Any
    probability: Any
    bbox: Any
    peak: Any
    file: str | None  # a bare file name in the image's folder
    kind: str  # "overlay" or "image" (guided methods)


@dataclass
class ImageDoc:
    """What the report needs from one image; ``folder`` is None when only summary.jsonl knows it."""

    path: str
    status: str
    error: str | None
    folder: Path | None = None
    predictions: list[tuple[Any, str, Any, Any]] = field(default_factory=list)  # class, label, prob, logit
    shots: list[Shot] = field(default_factory=list)
    size: list[Any] | None = None
    sha256: str | None = None
    fingerprint: str = ""
    # A segmentation model's prediction: the mask's file name in the folder (None if absent) and each
    # predicted class as (class index, label, share of the pixels), largest first.
    segmentation: tuple[str | None, list[tuple[Any, str, Any]]] | None = None


def explanation_files(out_dir: Path) -> list[Path]:
    """Every image's explanation.json of the run in ``out_dir`` (``outputs.RunFolder``), in path order."""
    return outputs.RunFolder(out_dir).explanation_files()


def image_doc(json_path: Path) -> ImageDoc | None:
    """The report's view of one explanation.json; None if it is not a readable camcli document."""
    doc = outputs.try_json(json_path)
    if not isinstance(doc, dict) or not isinstance(doc.get("source"), dict):
        return None
    source = doc["source"]
    error = doc.get("error")
    sha = source.get("sha256")
    return ImageDoc(
        path=str(source.get("path", json_path.parent.name)),
        status="ok" if doc.get("status") == "ok" else "error",
        error=_message(error),
        folder=json_path.parent,
        predictions=[_prediction(p) for p in _dicts(doc.get("predictions"))],
        shots=_shots(_dicts(doc.get("explanations"))),
        size=[source.get("width"), source.get("height")] if "width" in source else None,
        sha256=sha if isinstance(sha, str) else None,
        fingerprint=str(doc.get("fingerprint", "")),
        segmentation=_segmentation(doc.get("segmentation")),
    )


def _segmentation(found: Any) -> tuple[str | None, list[tuple[Any, str, Any]]] | None:
    if not isinstance(found, dict):
        return None
    areas = [
        (a.get("class_index"), str(a.get("label", a.get("class_index", ""))), a.get("share"))
        for a in _dicts(found.get("areas"))
    ]
    return plain_name(found.get("file")), areas


def summary_only(line: dict[str, Any]) -> ImageDoc:
    """An image known from its summary.jsonl line alone: top-1 and error, no pictures."""
    top = line.get("top1")
    predictions = [_prediction(top)] if isinstance(top, dict) else []
    status = "ok" if line.get("status") == "ok" else "error"
    return ImageDoc(
        path=str(line.get("path")), status=status, error=_message(line.get("error")), predictions=predictions
    )


def missing_from(docs: list[ImageDoc], out_dir: Path) -> list[ImageDoc]:
    """Images summary.jsonl lists whose explanation.json was not found (e.g. being redone)."""
    seen = {doc.path for doc in docs}
    extra: dict[str, ImageDoc] = {}
    for line in outputs.read_jsonl(out_dir / outputs.SUMMARY):
        path = line.get("path")
        if isinstance(path, str) and path not in seen:
            extra[path] = summary_only(line)
    return list(extra.values())


def audits(out_dir: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """per_image.jsonl as {source path: {method: {metric: scalar}}}; image-wide values under "(image)"."""
    result: dict[str, dict[str, dict[str, Any]]] = {}
    for line in outputs.read_jsonl(out_dir / outputs.PER_IMAGE):
        path = line.get("path")
        if not isinstance(path, str):
            continue
        methods = table_of(line, "methods")
        entry = {str(m): flatten(v) for m, v in methods.items() if isinstance(v, dict)}
        image_wide = flatten({k: v for k, v in line.items() if k not in ("path", "methods")})
        if image_wide:
            entry["(image)"] = image_wide
        result[path] = entry
    return result


def hits(audit: dict[str, dict[str, Any]]) -> dict[str, bool]:
    """Each method's audit outcome (pointing-game hit or miss) where the line records one."""
    outcome: dict[str, bool] = {}
    for method, values in audit.items():
        found = next((values[k] for k in HIT_KEYS if isinstance(values.get(k), bool)), None)
        if found is not None:
            outcome[method] = found
    return outcome


def table_of(value: Any, key: str) -> dict[str, Any]:
    """value[key] when both are JSON objects, else {}: files written by others may hold anything."""
    inner = value.get(key) if isinstance(value, dict) else None
    return inner if isinstance(inner, dict) else {}


def flatten(value: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys, keeping scalars only: tables and sorting need flat numbers."""
    flat: dict[str, Any] = {}
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, dict):
            flat.update(flatten(item, name + "."))
        elif item is None or isinstance(item, (bool, int, float, str)):
            flat[name] = item
    return flat


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _message(error: Any) -> str | None:
    if isinstance(error, dict):
        return str(error.get("message") or error.get("type") or "error")
    return None if error is None else str(error)


def _prediction(p: dict[str, Any]) -> tuple[Any, str, Any, Any]:
    return p.get("class_index"), str(p.get("label", p.get("class_index", ""))), p.get("probability"), p.get("logit")


def _shots(found: list[dict[str, Any]]) -> list[Shot]:
    """Every entry's shot; a class-free method's concepts (DFF) are followed by its picture of all
    concepts, once, after the last concept that lists it."""
    shots = [_shot(e) for e in found]
    last: dict[str, tuple[int, str]] = {}  # picture of all concepts → (position of its last concept, method)
    for n, entry in enumerate(found):
        combined = plain_name(table_of(entry, "files").get("concepts"))
        if _is_concept(entry) and combined:
            last[combined] = (n, str(entry.get("method", "")))
    for combined, (n, method) in sorted(last.items(), key=lambda item: -item[1][0]):
        shots.insert(n + 1, Shot(method, None, "all concepts", None, None, None, None, None, combined, "overlay"))
    return shots


def _is_concept(entry: dict[str, Any]) -> bool:
    concept = entry.get("concept")
    return entry.get("class_index", 0) is None and isinstance(concept, int) and not isinstance(concept, bool)


def concept_title(entry: dict[str, Any]) -> str:
    """A concept's caption, from its top classes (as text: the page sets it as text, never as HTML):
    "concept 2: tabby cat 41%, tiger cat 22%", or "concept 2 (unnamed: why)"."""
    named = entry.get("concept_classes")
    title = f"concept {entry.get('concept')}"
    if isinstance(named, list) and named:
        parts = []
        for c in _dicts(named):
            score = c.get("score")
            shown = f" {score * 100:.0f}%" if isinstance(score, (int, float)) and not isinstance(score, bool) else ""
            parts.append(f"{c.get('label', c.get('class_index', '?'))}{shown}")
        return f"{title}: {', '.join(parts)}"
    why = entry.get("unnamed")
    return f"{title} (unnamed: {why})" if isinstance(why, str) else title


def _shot(entry: dict[str, Any]) -> Shot:
    files = table_of(entry, "files")
    kind = "overlay" if plain_name(files.get("overlay")) else "image"
    return Shot(
        method=str(entry.get("method", "")),
        class_index=entry.get("class_index"),
        label=concept_title(entry) if _is_concept(entry) else str(entry.get("label", entry.get("class_index", ""))),
        rank=entry.get("rank"),
        logit=entry.get("logit"),
        probability=entry.get("probability"),
        bbox=entry.get("bbox"),
        peak=entry.get("peak"),
        file=plain_name(files.get(kind)),
        kind=kind,
    )
