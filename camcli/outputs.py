"""The output folder: its file names, its documents, and the one reader of a run folder.

Every module that writes or reads an output folder (the writer, discovery, the runners' accounting,
shards, ``full_map``, evaluate, compare and the report) takes names and readers from here.

An output folder holds ``run.json`` and ``summary.jsonl`` (the run's record, one line per image),
one folder per image (``explanation.json``, written last, and the files it lists), and optionally
``metrics.json`` and ``per_image.jsonl`` (camcli evaluate), ``report/`` and ``compare/``.

Every file here may have been replaced by something hostile: readers open regular files only
(never a FIFO or a device, without blocking), read at most a bounded number of bytes, and treat
what they read as data whose shape is checked before use.
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

from .errors import CamcliError

if TYPE_CHECKING:
    import numpy as np

EXPLANATION = "explanation.json"
RUN = "run.json"
SUMMARY = "summary.jsonl"
METRICS = "metrics.json"
PER_IMAGE = "per_image.jsonl"
EVALUATION = "evaluation.json"  # a shard's evaluation settings and counts, for camcli merge
LOCK = ".camcli-lock"
MARKER = ".camcli-output"  # written into every output folder camcli makes: walks never enter it
REPORT = "report"
SHARDS = "shards"
COMPARE = "compare.json"
RESERVED = frozenset({RUN, SUMMARY})  # an image's output folder may not take these names
CAMCLI_FILES = frozenset({LOCK, MARKER, RUN, SUMMARY, SHARDS})  # a folder holding only these is camcli's
SCHEMA_VERSION = 1
FILE_KINDS = ("overlay", "map", "raw", "image")  # {method}_{class}_{kind}.{ext}
SEGMENTATION_MASK = "segmentation.png"  # a segmentation model's predicted classes (SegmentationDoc)

JSON_LIMIT = 64 << 20  # explanation.json, run.json, metrics.json, a summary.jsonl line (bytes)
LINES_LIMIT = 1 << 30  # summary.jsonl, per_image.jsonl
ARRAY_LIMIT = 256 << 20  # a raw map or full-resolution map (.npy)


class SourceDoc(TypedDict):
    path: str
    sha256: str
    width: int | None
    height: int | None
    mode: str | None


class EntryDoc(TypedDict):
    """One (method, class) explanation of explanation.json."""

    method: str
    class_index: int
    label: str
    rank: int | None
    logit: float
    probability: float
    bbox: list[int] | None
    peak: list[int] | None
    params: dict[str, Any]
    files: dict[str, str]


class ConceptClassDoc(TypedDict):
    class_index: int
    label: str
    score: float  # softmax probability of the classifier's outputs on the concept's vector


class ConceptEntryDoc(TypedDict, total=False):
    """One concept of a class-free method (DFF) in explanation.json: ``class_index``, ``rank``, ``logit``
    and ``probability`` are null; ``concept_classes`` null when unnamed, with ``unnamed`` saying why;
    ``color`` its colour in the picture of all concepts (``files["concepts"]``, when overlays are saved)."""

    method: str
    class_index: None
    concept: int
    concept_classes: list[ConceptClassDoc] | None
    unnamed: str
    color: str
    label: str
    rank: None
    logit: None
    probability: None
    bbox: list[int] | None
    peak: list[int] | None
    params: dict[str, Any]
    files: dict[str, str]


class PredictionDoc(TypedDict):
    class_index: int
    label: str
    logit: float
    probability: float


class AreaDoc(TypedDict):
    class_index: int
    label: str
    pixels: int  # of the original image
    share: float  # of the pixels the model saw


class SegmentationDoc(TypedDict):
    """A segmentation model's prediction: ``file`` the mask (PNG of class indices: a palette PNG while the
    classes fit 0..254, ``unseen`` 255 where the model did not see the pixel; else 16-bit grey, unseen
    65535), ``areas`` every predicted class, largest first."""

    file: str
    unseen: int
    areas: list[AreaDoc]


class ErrorDoc(TypedDict):
    type: str
    message: str


class ExplanationDoc(TypedDict):
    schema_version: int
    fingerprint: str
    status: str  # "ok" | "error"
    error: ErrorDoc | None
    source: SourceDoc | None
    model: dict[str, Any]
    preprocess: dict[str, Any] | None
    predictions: list[PredictionDoc]
    explanations: list[EntryDoc | ConceptEntryDoc]
    segmentation: NotRequired[SegmentationDoc]  # segmentation models only


class SummaryLine(TypedDict):
    """One line of summary.jsonl."""

    path: str
    status: str
    top1: dict[str, Any] | None
    json: str  # the image's explanation.json, relative to the output folder
    error: str | None


def entry_key(method: str, variant: str | None = None) -> str:
    """What names one kind of map across a run: the method, or ``METHOD[VARIANT]`` for one of a method's
    variants (a layer of ``--layers-as separate``, an occlusion window)."""
    return method if variant is None else f"{method}[{variant}]"


def key_of(entry: Mapping[str, Any]) -> str:
    """An explanation entry's ``entry_key``."""
    variant = entry.get("variant")
    return entry_key(str(entry.get("method")), variant if isinstance(variant, str) else None)


def file_name(
    method: str, class_index: int | None, kind: str, ext: str, variant: str | None = None, concept: int | None = None
) -> str:
    """An explanation's file: ``{method}_{class}_{kind}.{ext}``, or ``{method}_{class}_{variant}_{kind}.{ext}``
    for a variant (its name with anything but letters, digits, '.' and '-' spelled '-'); a class-free
    method's concept: ``{method}_concept{n}_{kind}.{ext}``."""
    if concept is not None:
        return f"{method}_concept{concept}_{kind}.{ext}"
    if variant is None:
        return f"{method}_{class_index}_{kind}.{ext}"
    return f"{method}_{class_index}_{re.sub(r'[^A-Za-z0-9.-]', '-', variant)}_{kind}.{ext}"


def listed_files(doc: Mapping[str, Any]) -> list[Any]:
    """Every file an explanation.json names (its entries' files, the segmentation mask), unchecked: what a
    folder must hold, and nothing else of camcli's."""
    names = [name for entry in doc.get("explanations") or [] for name in (entry.get("files") or {}).values()]
    segmentation = doc.get("segmentation")
    return names + ([segmentation.get("file")] if isinstance(segmentation, dict) else [])


def concepts_file(method: str, ext: str) -> str:
    """A class-free method's picture of all its concepts in one image: ``{method}_concepts.{ext}``."""
    return f"{method}_concepts.{ext}"


def output_file_pattern(methods: tuple[str, ...]) -> re.Pattern[str]:
    """The names camcli gives an image's files for these methods: only these are ever removed as stale."""
    from .encoding import FORMATS

    return re.compile(
        rf"^(?:(?:{'|'.join(map(re.escape, methods))})_(?:(?:\d+|concept\d+)_(?:[A-Za-z0-9.-]+_)?"
        rf"(?:{'|'.join(FILE_KINDS)})|concepts)\.(?:npy|{'|'.join(FORMATS)})|{re.escape(SEGMENTATION_MASK)})$"
    )


# --- bounded reads of regular files -----------------------------------------------------------------


def read_bytes(path: Path, limit: int) -> bytes:
    """A regular file's bytes, at most ``limit`` of them. Raises OSError for anything else: a missing
    file, a FIFO or device (opened without blocking, then refused), a file over the limit."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"not a regular file: {path}")
        if info.st_size > limit:
            raise OSError(f"{path} has {info.st_size:,} bytes, over the limit of {limit:,}")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise OSError(f"{path} grew over the limit of {limit:,} bytes while being read")
    return data


def is_regular(path: Path) -> bool:
    """A regular file (after symbolic links), checked without opening it."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def parse_json(data: bytes | str) -> Any:
    """JSON (as Python reads it: NaN and Infinity are taken, to be shown or refused by whoever uses them);
    nesting too deep for Python is a ValueError like any other malformed document."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def read_json(path: Path, limit: int = JSON_LIMIT) -> Any:
    """A JSON file's content. Raises OSError (unreadable, not a regular file, too large) or ValueError."""
    return parse_json(read_bytes(path, limit))


def try_json(path: Path, limit: int = JSON_LIMIT) -> Any:
    """A JSON file's content, or None when it is missing, unreadable or not JSON (a run may be mid-write)."""
    try:
        return read_json(path, limit)
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def read_jsonl(path: Path, limit: int = LINES_LIMIT) -> Iterator[dict[str, Any]]:
    """The objects of a JSON-lines file: a line that is not a JSON object (a torn last line of a running
    run) is skipped; a missing or unreadable file has none."""
    try:
        data = read_bytes(path, limit)
    except OSError:
        return
    for line in data.split(b"\n"):
        try:
            value = parse_json(line)
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(value, dict):
            yield value


def load_array(path: Path, limit: int = ARRAY_LIMIT) -> np.ndarray:
    """A .npy file of floating-point numbers, as float32, read without running anything (no pickled
    objects). Raises ValueError for anything else (integers, complex numbers, objects)."""
    import numpy as np

    try:
        array = np.load(io.BytesIO(read_bytes(path, limit)), allow_pickle=False)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    except ValueError as exc:
        raise ValueError(f"{path} is not a NumPy array file: {exc}") from exc
    if not isinstance(array, np.ndarray) or array.dtype.kind != "f":
        kind = getattr(array, "dtype", type(array).__name__)
        raise ValueError(f"{path} holds {kind} values, not the floating-point map camcli writes")
    return array.astype(np.float32, copy=False)


def load_map(path: Path, ndim: int | tuple[int, ...] = 2) -> np.ndarray:
    """A saved map: a raw heat map is h×w, a pixel-space one 3×H×W (``ndim`` says which are allowed)."""
    import numpy as np

    array = load_array(path)
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if array.ndim not in allowed or min(array.shape, default=0) < 1:
        raise ValueError(f"{path} holds a {'×'.join(map(str, array.shape))} array, not a map")
    if not np.isfinite(array).all():
        raise ValueError(f"{path} holds NaN or infinite values")
    return array


# --- documents --------------------------------------------------------------------------------------


def entries(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A document's explanation entries that are well-formed enough to use (a method name, a class
    index, a ``files`` table); anything else is skipped."""
    return _well_formed(doc, lambda e: _count(e.get("class_index")))


def concept_entries(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A document's class-free entries (one per concept of DFF: ``"class_index": null`` and a
    ``"concept"`` number) that are well-formed enough to use. ``entries`` never lists them: what reads
    class maps (evaluate, compare) leaves them out."""
    return _well_formed(doc, lambda e: e.get("class_index", 0) is None and _count(e.get("concept")))


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _well_formed(doc: Mapping[str, Any], kind: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """The entries of ``doc`` with a method name and a ``files`` table that ``kind`` accepts."""
    found = doc.get("explanations")
    if not isinstance(found, list):
        return []
    return [
        e
        for e in found
        if isinstance(e, dict) and isinstance(e.get("method"), str) and isinstance(e.get("files", {}), dict) and kind(e)
    ]


def find(doc: Mapping[str, Any], key: str, class_index: int | None) -> dict[str, Any] | None:
    """The entry of ``key`` (a method, or ``METHOD[VARIANT]``) for ``class_index``, or None."""
    return next((e for e in entries(doc) if key_of(e) == key and e["class_index"] == class_index), None)


def is_heat_map(entry: Mapping[str, Any]) -> bool:
    """Is this entry a heat map (rather than a pixel-space image)? By the method's kind when the method
    is known here; a method that is not (a plugin not installed) by what it wrote: heat maps write an
    overlay or map, pixel methods an image."""
    from . import methods

    method = entry.get("method")
    if isinstance(method, str) and method in methods.registry():
        return methods.is_heat(method)
    files = entry.get("files") or {}
    return "image" not in files and bool({"overlay", "map", "raw_map"} & set(files))


def explanation_doc(value: Any) -> dict[str, Any] | None:
    """``value`` if it has the shape of camcli's explanation.json, else None."""
    if not isinstance(value, dict) or not {"schema_version", "source", "explanations"} <= set(value):
        return None
    if not isinstance(value.get("source"), (dict, type(None))) or not isinstance(value.get("explanations"), list):
        return None
    if len(entries(value)) + len(concept_entries(value)) != len(value["explanations"]):  # no method, class or files
        return None
    return value


def read_explanation(path: Path) -> dict[str, Any]:
    """An explanation.json, checked; raises ValueError (with the reason) for anything else."""
    try:
        doc = explanation_doc(read_json(path))
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text") from exc
    if doc is None:
        raise ValueError(f"{path} is not a camcli explanation.json")
    return doc


# --- the run folder ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    """One image of a run: its folder, its explanation.json (None when only summary.jsonl lists it,
    or when it is unreadable: then ``problem`` says why) and its summary line."""

    rel: PurePosixPath
    folder: Path
    doc: dict[str, Any] | None
    line: dict[str, Any] | None = None
    problem: str | None = None

    @property
    def path(self) -> str:
        """The source path as the run recorded it."""
        source = (self.doc or {}).get("source")
        if isinstance(source, dict) and isinstance(source.get("path"), str):
            return str(source["path"])
        if self.line is not None and isinstance(self.line.get("path"), str):
            return str(self.line["path"])
        return self.rel.as_posix()

    @property
    def status(self) -> str:
        if self.doc is not None:
            return "ok" if self.doc.get("status") == "ok" else "error"
        return "missing" if self.problem is None else "unreadable"


class RunFolder:
    """``RunFolder(OUT)``: the one reader of an output folder.

    The images of a run are the image folders below OUT holding an explanation.json (the writer's
    contract: written last, so its folder is complete), in path order, then the images summary.jsonl
    lists whose explanation.json is missing (being redone, or lost). ``report/``, ``shards/``, hidden
    folders and other runs' output folders below OUT are not part of it.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def exists(self) -> bool:
        return self.root.is_dir()

    def run_record(self) -> dict[str, Any] | None:
        found = try_json(self.root / RUN)
        return found if isinstance(found, dict) else None

    def working_directory(self) -> Path | None:
        """Where the run was started: relative source paths in its explanation.json files are relative to it."""
        found = (self.run_record() or {}).get("cwd")
        return Path(found) if isinstance(found, str) and Path(found).is_absolute() else None

    def labels(self) -> list[str] | None:
        """The model's class names as the run recorded them."""
        found = (self.run_record() or {}).get("labels")
        return [str(v) for v in found] if isinstance(found, list) else None

    def summary(self) -> list[dict[str, Any]]:
        return list(read_jsonl(self.root / SUMMARY))

    def explanation_files(self) -> list[Path]:
        """Every image's explanation.json below the folder, in path order (not opened)."""
        found: list[Path] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            here = Path(dirpath)
            if here != self.root and (MARKER in filenames or RUN in filenames):  # another run's folder
                dirnames[:] = []
                continue
            dirnames[:] = sorted(
                d for d in dirnames if not d.startswith(".") and not (here == self.root and d in (REPORT, SHARDS))
            )
            if EXPLANATION in filenames and here != self.root:
                found.append(here / EXPLANATION)
        return sorted(found)

    def image(self, json_path: Path) -> Image:
        """The image whose explanation.json is at ``json_path``."""
        rel = PurePosixPath(json_path.parent.relative_to(self.root).as_posix())
        try:
            return Image(rel, json_path.parent, read_explanation(json_path))
        except ValueError as exc:
            return Image(rel, json_path.parent, None, problem=str(exc))

    def images(self) -> list[Image]:
        """Every image of the run (see the class docstring)."""
        found = [self.image(path) for path in self.explanation_files()]
        return found + self.listed_only({i.rel for i in found}, {i.path for i in found})

    def listed_only(self, rels: set[PurePosixPath], paths: set[str]) -> list[Image]:
        """Images summary.jsonl lists that are not among ``rels`` (nor, by source path, ``paths``)."""
        extra: dict[PurePosixPath, Image] = {}
        for line in self.summary():
            where = line.get("json")
            if not isinstance(where, str) or not isinstance(line.get("path"), str):
                continue
            rel = PurePosixPath(where).parent
            if rel in rels or line["path"] in paths or rel.is_absolute() or ".." in rel.parts:
                continue
            extra[rel] = Image(rel, self.root / rel, None, line)
        return list(extra.values())


def require_run(root: Path) -> RunFolder:
    """``root`` as a run folder, or a usage error saying what to pass."""
    folder = RunFolder(root)
    if not folder.exists():
        raise CamcliError(f"'{root}' is not a folder: pass the output folder of camcli explain (its -o).")
    return folder


def summary_line(path: str, rel: PurePosixPath, doc: Mapping[str, Any]) -> SummaryLine:
    """An image's line of summary.jsonl, from its explanation.json document."""
    top: dict[str, Any] | None = None
    if doc["predictions"]:
        best = doc["predictions"][0]
        top = {k: best[k] for k in ("class_index", "label", "probability")}
    error = doc["error"]
    return {
        "path": path,
        "status": doc["status"],
        "top1": top,
        "json": f"{rel}/{EXPLANATION}",
        "error": error["message"] if error else None,
    }


def json_text(doc: Any, indent: int | None = None) -> str:
    """Strict JSON as UTF-8-safe text: undecodable bytes of file names (lone surrogates) become
    \\udcNN; NaN or infinity is a ValueError (camcli never writes what JSON parsers reject)."""
    text = json.dumps(doc, indent=indent, ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
