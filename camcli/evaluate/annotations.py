"""Ground truth for ``camcli evaluate``: CSV, Pascal VOC XML, COCO JSON and binary masks.

Every reader gives boxes in camcli's own convention: pixels of the image as a viewer shows it (EXIF
orientation applied), ``(x0, y0, x1, y1)`` with x1 and y1 exclusive, floats kept as written (no
rounding). Classes stay text (an index or a label) until :func:`resolve_classes` matches them to the
model's labels. A malformed file raises :class:`AnnotationError` naming the file, the line (or XML
element, or JSON path), the problem and the fix.
"""

from __future__ import annotations

import csv
import io
import json
import math
import xml.etree.ElementTree as ET
import xml.parsers.expat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePath, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

from ..errors import CamcliError, TargetError
from .schema import Box

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

CSV_COLUMNS = ("path", "class", "x0", "y0", "x1", "y1")
CLASS_MAP_COLUMNS = ("source", "target")
CLASSES_COLUMNS = ("path", "class")
MatchBy = Literal["path", "suffix", "mask"]
ImageRef = tuple[Path, PurePosixPath]  # an explained image: its source path, its folder under the output


class AnnotationError(CamcliError):
    """A ground-truth file cannot be used (exit code 2)."""


@dataclass(frozen=True)
class GroundTruthObject:
    """One annotated object: a class, and a box and/or a mask file (neither: the class alone)."""

    class_spec: str  # a class index or label as written; resolved against the model's labels later
    box: Box | None = None
    mask: Path | None = None
    origin: str = field(default="", compare=False)  # where it was read, for messages


@dataclass(frozen=True)
class ImageTruth:
    """The objects one annotation gives for one image, and how to find that image.

    ``match_by``: "path" (``ref`` is a resolved absolute path), "suffix" (a file name, or a relative
    path, that must end the image's path component by component) or "mask" (the image's output
    folder path with its suffix replaced by ``.png``).
    """

    ref: str
    match_by: MatchBy
    objects: tuple[GroundTruthObject, ...]
    origin: str
    size: tuple[int, int] | None = None  # (width, height) as the annotation declares it


@dataclass(frozen=True)
class Matching:
    """Ground truth assigned to explained images (keyed by their output folder path)."""

    objects: dict[PurePosixPath, tuple[GroundTruthObject, ...]]
    sizes: dict[PurePosixPath, tuple[tuple[int, int], str]]  # (width, height) an annotation declares, and where
    not_explained: list[str]  # annotated images that were not explained: "origin: reference"
    not_annotated: list[PurePosixPath]  # explained images that no annotation names


# --- shared checks -------------------------------------------------------------------------------


def _number(text: str, name: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise AnnotationError(
            f"{where}: {name} is '{text}', not a number. Write pixel coordinates as "
            "integers or decimals, e.g. 12 or 12.5."
        ) from None
    if not math.isfinite(value):
        raise AnnotationError(f"{where}: {name} is {text.strip()}. Coordinates must be finite pixel values.")
    return value


def _check_box(box: Box, where: str) -> Box:
    """A box must be non-empty, with a non-negative top-left corner."""
    x0, y0, x1, y1 = box
    for name, value in (("x0", x0), ("y0", y0)):
        if value < 0:
            raise AnnotationError(
                f"{where}: {name} is {value:g}, below 0. Boxes are in pixels of the image, "
                "measured from its top-left corner."
            )
    for lo, hi, a, b in (("x0", "x1", x0, x1), ("y0", "y1", y0, y1)):
        if b <= a:
            raise AnnotationError(
                f"{where}: {hi} ({b:g}) must be greater than {lo} ({a:g}). Boxes are "
                "[x0, y0, x1, y1) with x1 and y1 exclusive: a box one pixel wide has x1 = x0 + 1."
            )
    return box


ANNOTATION_LIMIT = 1 << 30  # bytes of one annotation file


def _read_bytes(path: Path) -> bytes:
    """A regular file's bytes, bounded (an annotation path may name a FIFO or a device)."""
    from ..outputs import read_bytes

    try:
        return read_bytes(path, ANNOTATION_LIMIT)
    except OSError as exc:
        raise AnnotationError(f"Cannot read annotation file '{path}': {exc.strerror or exc}.") from exc


def _decode(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AnnotationError(f"{path}: byte {exc.start} is not UTF-8. Save the file as UTF-8.") from None


def _csv_rows(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of each non-blank row after a header that starts with ``columns``."""
    reader = csv.reader(io.StringIO(_decode(_read_bytes(path), path), newline=""))
    try:
        header = next(reader, None)
        wanted = ",".join(columns)
        if header is None:
            raise AnnotationError(f"{path} is empty. Its first line must be the header {wanted}.")
        if tuple(cell.strip() for cell in header[: len(columns)]) != columns:
            raise AnnotationError(
                f"{path} line 1: the header is '{','.join(header)}'. It must start with "
                f"{wanted} (further columns are allowed and ignored)."
            )
        for row in reader:
            if any(cell.strip() for cell in row):
                yield reader.line_num, row
    except csv.Error as exc:
        raise AnnotationError(
            f"{path} line {reader.line_num}: not valid CSV ({exc}). Quote fields that hold commas or quotes."
        ) from None


def _remap(truths: list[ImageTruth], class_map: Mapping[str, str] | None) -> list[ImageTruth]:
    """Rename classes through ``class_map`` (exact text); an empty target drops the object."""
    if not class_map:
        return truths
    renamed = [
        (t, [replace(o, class_spec=class_map.get(o.class_spec, o.class_spec)) for o in t.objects]) for t in truths
    ]
    return [replace(t, objects=tuple(o for o in objects if o.class_spec)) for t, objects in renamed]


# --- CSV -----------------------------------------------------------------------------------------


def read_classes(path: Path) -> list[ImageTruth]:
    """``--classes-from``: a CSV with the header ``path,class`` (further columns ignored), one row per
    (image, class) to explain; ``path`` relative to the CSV's folder or absolute, ``class`` an index or a
    label. An image may have several rows."""
    found: dict[str, tuple[str, list[GroundTruthObject]]] = {}
    for line, row in _csv_rows(path, CLASSES_COLUMNS):
        where = f"{path} line {line}"
        name, spec = (row[0].strip(), row[1].strip()) if len(row) >= 2 else ("", "")
        if not name or not spec:
            raise AnnotationError(f"{where}: expected 'path,class' with both filled in, e.g. 'cat.jpg,tabby'.")
        image = Path(name) if Path(name).is_absolute() else path.parent / name
        key = str(image.resolve())
        found.setdefault(key, (where, []))[1].append(GroundTruthObject(spec, None, None, where))
    if not found:
        raise AnnotationError(f"{path} names no image. Its rows are path,class (e.g. 'cat.jpg,tabby').")
    return [ImageTruth(key, "path", tuple(objects), where) for key, (where, objects) in found.items()]


def read_csv(path: Path, class_map: Mapping[str, str] | None = None) -> list[ImageTruth]:
    """A CSV with the header ``path,class,x0,y0,x1,y1``, one row per box (further columns ignored).

    ``path`` is relative to the CSV's folder, or absolute; ``class`` an index or a label; the four
    coordinates are pixels, x1 and y1 exclusive, or all four empty for "this class, no box". Rows of
    one image (same resolved path) are gathered, in file order.
    """
    found: dict[str, tuple[str, list[GroundTruthObject]]] = {}
    for line, row in _csv_rows(path, CSV_COLUMNS):
        where = f"{path} line {line}"
        if len(row) < len(CSV_COLUMNS):
            raise AnnotationError(
                f"{where}: {len(row)} columns, expected 6 ({','.join(CSV_COLUMNS)}). For a class "
                "without a box leave the coordinates empty, e.g. 'img.jpg,tabby,,,,'."
            )
        name, spec = row[0].strip(), row[1].strip()
        if not name or not spec:
            raise AnnotationError(
                f"{where}: the {'path' if not name else 'class'} is empty. Every row names an image and a class."
            )
        cells = [cell.strip() for cell in row[2:6]]
        box: Box | None = None
        if any(cells):
            if not all(cells):
                raise AnnotationError(
                    f"{where}: give all four of x0,y0,x1,y1, or leave all four empty for an "
                    "image whose class is known but not where it is."
                )
            x0, y0, x1, y1 = (_number(c, n, where) for c, n in zip(cells, CSV_COLUMNS[2:], strict=False))
            box = _check_box((x0, y0, x1, y1), where)
        image = Path(name) if Path(name).is_absolute() else path.parent / name
        key = str(image.resolve())
        found.setdefault(key, (where, []))[1].append(GroundTruthObject(spec, box, None, where))
    truths = [ImageTruth(key, "path", tuple(objects), where) for key, (where, objects) in found.items()]
    return _remap(truths, class_map)


# --- Pascal VOC ----------------------------------------------------------------------------------


def _refuse_dtd(data: bytes, path: Path) -> None:
    """Reject DOCTYPE and ENTITY declarations before ElementTree sees the file.

    Entities can read local files or expand to gigabytes ("billion laughs"); VOC files need none.
    expat reports the declaration in whatever encoding the file uses, which a byte search would miss.
    """
    parser = xml.parsers.expat.ParserCreate()

    def refuse(*_: object) -> None:
        raise AnnotationError(
            f"{path} line {parser.CurrentLineNumber}: declares a DOCTYPE or ENTITY. camcli reads "
            "plain VOC XML only (entities can read other files or exhaust memory): remove the "
            "<!DOCTYPE ...> declaration."
        )

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    try:
        parser.Parse(data, True)
    except xml.parsers.expat.ExpatError as exc:
        raise AnnotationError(
            f"{path} line {exc.lineno}, column {exc.offset + 1}: not well-formed XML "
            f"({xml.parsers.expat.errors.messages.get(exc.code, exc)}). Fix or regenerate the "
            "file."
        ) from None


def _child_text(element: ET.Element, tag: str) -> str | None:
    child = element.find(tag)
    return None if child is None or child.text is None or not child.text.strip() else child.text.strip()


def _voc_size(root: ET.Element, path: Path) -> tuple[int, int] | None:
    size = root.find("size")
    if size is None:
        return None
    values = []
    for tag in ("width", "height"):
        text = _child_text(size, tag)
        if text is None or not (text.isascii() and text.isdigit()) or int(text) == 0:
            raise AnnotationError(
                f"{path} annotation/size/{tag}: '{text or ''}' is not a positive whole number of "
                "pixels. Fix it or remove the <size> element."
            )
        values.append(int(text))
    return values[0], values[1]


def _voc_object(obj: ET.Element, index: int, path: Path) -> GroundTruthObject:
    """VOC's 1-based inclusive box → camcli's 0-based exclusive one: (xmin − 1, ymin − 1, xmax, ymax).

    A 0 in xmin/ymin (tools that write 0-based coordinates) is read as the image edge.
    """
    where = f"{path} annotation/object[{index}]"
    name = _child_text(obj, "name")
    if name is None:
        raise AnnotationError(f"{where}/name: missing or empty. Each <object> needs a <name> (a class index or label).")
    bndbox = obj.find("bndbox")
    if bndbox is None:
        return GroundTruthObject(name, None, None, where)
    values = []
    for tag in ("xmin", "ymin", "xmax", "ymax"):
        text = _child_text(bndbox, tag)
        if text is None:
            raise AnnotationError(f"{where}/bndbox/{tag}: missing. A <bndbox> needs xmin, ymin, xmax and ymax.")
        values.append(_number(text, tag, f"{where}/bndbox/{tag}"))
    xmin, ymin, xmax, ymax = values
    for axis, lo, hi in (("x", xmin, xmax), ("y", ymin, ymax)):
        if lo < 0:
            raise AnnotationError(f"{where}/bndbox/{axis}min: {lo:g} is below 0. VOC boxes are 1-based pixels.")
        if hi < lo:
            raise AnnotationError(
                f"{where}/bndbox: {axis}max ({hi:g}) is less than {axis}min ({lo:g}). VOC boxes are "
                "1-based and inclusive: min ≤ max."
            )
    box = (max(xmin - 1, 0.0), max(ymin - 1, 0.0), xmax, ymax)
    return GroundTruthObject(name, _check_box(box, f"{where}/bndbox"), None, where)


def read_voc_file(path: Path) -> ImageTruth:
    """One Pascal VOC ``<annotation>``; its image is found by ``<path>`` when that file exists
    (relative: to the XML's folder), else by ``<filename>``."""
    data = _read_bytes(path)
    _refuse_dtd(data, path)
    root = ET.fromstring(data)  # well-formed and entity-free: checked above
    if root.tag != "annotation":
        raise AnnotationError(f"{path}: the root element is <{root.tag}>, not <annotation>. Is this a Pascal VOC file?")
    filename, location = _child_text(root, "filename"), _child_text(root, "path")
    size = _voc_size(root, path)
    objects = tuple(_voc_object(obj, i, path) for i, obj in enumerate(root.findall("object"), 1))
    if location is not None:
        image = Path(location) if Path(location).is_absolute() else path.parent / location
        if image.is_file():
            return ImageTruth(str(image.resolve()), "path", objects, str(path), size)
        filename = filename or PurePath(location.replace("\\", "/")).name
    if filename is None:
        raise AnnotationError(
            f"{path} annotation/filename: missing. Add <filename>IMAGE FILE NAME</filename> "
            "so camcli can find the image."
        )
    return ImageTruth(filename, "suffix", objects, str(path), size)


def read_voc(folder: Path, class_map: Mapping[str, str] | None = None) -> list[ImageTruth]:
    """Every ``*.xml`` file in ``folder`` (not its subfolders, as VOC's ``Annotations/``), sorted."""
    files = sorted(folder.glob("*.xml"))
    if not files:
        raise AnnotationError(
            f"{folder} holds no .xml files. Pass a folder of Pascal VOC annotations, a .csv or a COCO .json file."
        )
    return _remap([read_voc_file(f) for f in files], class_map)


# --- COCO ----------------------------------------------------------------------------------------


def _json_list(doc: Any, key: str, path: Path) -> list[Any]:
    value = doc.get(key)
    if not isinstance(value, list):
        raise AnnotationError(
            f"{path} {key}: {'missing' if value is None else 'not a list'}. A COCO file is an "
            "object with the lists images, annotations and categories."
        )
    return value


def _json_field(entry: Any, key: str, where: str, kinds: tuple[type, ...]) -> Any:
    """entry[key], checked to be one of ``kinds`` (never a bool standing in for a number)."""
    if not isinstance(entry, dict):
        raise AnnotationError(f"{where}: not an object.")
    value = entry.get(key)
    if value is None or isinstance(value, bool) or not isinstance(value, kinds):
        wanted = " or ".join("a number" if k in (int, float) else "text" if k is str else k.__name__ for k in kinds)
        raise AnnotationError(f"{where}.{key}: {'missing' if value is None else repr(value)}; expected {wanted}.")
    return value


def _coco_box(value: Any, where: str) -> Box:
    """COCO's [x, y, width, height] → (x, y, x + width, y + height)."""
    ok = isinstance(value, list) and len(value) == 4
    if not ok or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        raise AnnotationError(f"{where}: {value!r} is not [x, y, width, height] (four finite numbers).")
    x, y, w, h = (float(v) for v in value)
    return _check_box((x, y, x + w, y + h), where)


def read_coco(path: Path, class_map: Mapping[str, str] | None = None) -> list[ImageTruth]:
    """A COCO detection file. Category names become classes; ``class_map`` may rename a category by its
    id (as text, tried first) or its name. Images listed without annotations are annotated as empty."""
    try:
        doc = json.loads(_decode(_read_bytes(path), path))
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"{path} line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg}).") from None
    except RecursionError:
        raise AnnotationError(f"{path}: JSON nested too deeply to be a COCO file.") from None
    if not isinstance(doc, dict):
        raise AnnotationError(
            f"{path}: the top level is not an object. A COCO file is an object with the lists "
            "images, annotations and categories."
        )
    images, annotations, categories = (_json_list(doc, k, path) for k in ("images", "annotations", "categories"))
    names: dict[int | str, str] = {}
    defined: dict[int | str, int] = {}
    for i, cat in enumerate(categories):
        cid = _json_field(cat, "id", f"{path} categories[{i}]", (int, str))
        name = _json_field(cat, "name", f"{path} categories[{i}]", (str,))
        if cid in defined:
            raise AnnotationError(
                f"{path} categories[{i}]: repeats the id {cid!r} of categories[{defined[cid]}]. Each category "
                "id names one class: give one of them another id."
            )
        defined[cid] = i
        names[cid] = (class_map or {}).get(str(cid), (class_map or {}).get(name, name))
    files: dict[int | str, tuple[str, str, tuple[int, int] | None]] = {}
    seen: dict[str, str] = {}
    for i, img in enumerate(images):
        where = f"{path} images[{i}]"
        iid = _json_field(img, "id", where, (int, str))
        name = _json_field(img, "file_name", where, (str,)).replace("\\", "/").strip("/")
        if iid in files or name in seen:
            other = files[iid][1] if iid in files else seen[name]
            raise AnnotationError(
                f"{where}: repeats the {'id' if iid in files else 'file_name'} of {other}. "
                "Each image is listed once; its objects go in annotations."
            )
        w, h = img.get("width"), img.get("height")
        size = (w, h) if isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0 else None
        files[iid], seen[name] = (name, where, size), where
    objects: dict[int | str, list[GroundTruthObject]] = {iid: [] for iid in files}
    for i, ann in enumerate(annotations):
        where = f"{path} annotations[{i}]"
        iid = _json_field(ann, "image_id", where, (int, str))
        cid = _json_field(ann, "category_id", where, (int, str))
        if iid not in files or cid not in names:
            missing = (
                f"image_id {iid!r} is not in images"
                if iid not in files
                else f"category_id {cid!r} is not in categories"
            )
            raise AnnotationError(f"{where}: {missing}. Fix the id or add the entry it refers to.")
        box = None if ann.get("bbox") is None else _coco_box(ann["bbox"], f"{where}.bbox")
        if names[cid]:
            objects[iid].append(GroundTruthObject(names[cid], box, None, where))
    return [ImageTruth(name, "suffix", tuple(objects[iid]), where, size) for iid, (name, where, size) in files.items()]


def read_class_map(path: Path) -> dict[str, str]:
    """``--class-map``: a CSV ``source,target`` mapping dataset classes (a COCO category id or name, or a
    CSV/VOC/mask class) to model classes (an index or a label). An empty target ignores that class."""
    mapping: dict[str, str] = {}
    lines: dict[str, int] = {}
    for line, row in _csv_rows(path, CLASS_MAP_COLUMNS):
        if len(row) < 2 or not row[0].strip():
            raise AnnotationError(f"{path} line {line}: expected 'source,target' with a non-empty source.")
        source = row[0].strip()
        if source in mapping:
            raise AnnotationError(
                f"{path} line {line}: '{source}' is already mapped on line {lines[source]}. "
                "Keep one row per source class."
            )
        mapping[source], lines[source] = row[1].strip(), line
    return mapping


def read_annotations(path: Path, class_map: Mapping[str, str] | None = None) -> list[ImageTruth]:
    """``--annotations``: a ``.csv`` file, a COCO ``.json`` file, a VOC ``.xml`` file or a folder of them."""
    if path.is_dir():
        return read_voc(path, class_map)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return read_csv(path, class_map)
    if suffix == ".json":
        return read_coco(path, class_map)
    if suffix == ".xml":
        return _remap([read_voc_file(path)], class_map)
    raise AnnotationError(
        f"Cannot tell the format of '{path}': pass a .csv file, a COCO .json file, "
        "or a Pascal VOC .xml file or folder of them."
    )


# --- masks ---------------------------------------------------------------------------------------


def read_masks(
    folder: Path, class_map: Mapping[str, str] | None = None, max_pixels: int = 100_000_000
) -> list[ImageTruth]:
    """``--masks DIR``: ``DIR/<class>/<image path under its input folder, suffix replaced by .png>``.

    Only the layout and each mask's header are read here (a mask over ``max_pixels`` is refused before
    anything is explained); :func:`load_mask` reads a mask and checks it against its image.
    """
    from PIL import Image

    if not folder.is_dir():
        raise AnnotationError(f"Mask folder '{folder}' does not exist or is not a folder.")
    found: dict[str, list[GroundTruthObject]] = {}
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = file.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if len(rel.parts) < 2:
            raise AnnotationError(
                f"Mask '{file}' lies directly in {folder}. Masks go in one folder per class: "
                f"{folder}/<class index or label>/<image path>.png."
            )
        if file.suffix.lower() != ".png":
            raise AnnotationError(
                f"Mask '{file}' is not a .png file. Masks are PNGs named like their image with "
                f"the suffix replaced: {rel.with_suffix('.png').name}."
            )
        try:
            with Image.open(file) as opened:
                width, height = opened.size
        except (OSError, ValueError, SyntaxError) as exc:
            raise AnnotationError(f"Cannot read mask '{file}': {exc}. Masks must be readable PNG images.") from None
        if width * height > max_pixels:
            raise AnnotationError(
                f"Mask '{file}' declares {width}×{height} = {width * height:,} pixels, over the limit of "
                f"{max_pixels:,} (--max-pixels). A mask has its image's size."
            )
        key = PurePosixPath(*rel.parts[1:]).with_suffix(".png").as_posix()
        found.setdefault(key, []).append(GroundTruthObject(rel.parts[0], None, file, str(file)))
    if not found:
        raise AnnotationError(f"Mask folder '{folder}' holds no masks. Lay them out as {folder}/<class>/<image>.png.")
    return _remap([ImageTruth(k, "mask", tuple(v), str(v[0].mask)) for k, v in found.items()], class_map)


def load_mask(path: Path, size: tuple[int, int], image: str, max_pixels: int = 100_000_000) -> npt.NDArray[np.bool_]:
    """The mask as height×width booleans: nonzero in any colour channel (alpha ignored; for palette
    images, a nonzero index) is the object. It must have its image's size (width, height) as a viewer
    shows it; the mask's own EXIF orientation, if any, is applied too. Its size is checked from its
    header before it is decoded (``max_pixels``, then its image's size): a small file may declare a
    huge picture. Only a regular file is read."""
    import numpy as np
    from PIL import Image, ImageOps, UnidentifiedImageError

    from ..outputs import read_bytes

    try:
        with Image.open(io.BytesIO(read_bytes(path, 1 << 30))) as opened:
            width, height = opened.size
            if width * height > max_pixels:
                raise AnnotationError(
                    f"Mask '{path}' declares {width}×{height} = {width * height:,} pixels, over the limit of "
                    f"{max_pixels:,} (--max-pixels). A mask has its image's size ({size[0]}×{size[1]})."
                )
            if {width, height} != set(size):
                raise AnnotationError(
                    f"Mask '{path}' is {width}×{height} pixels but its image '{image}' is {size[0]}×{size[1]}. "
                    "A mask must have its image's size, as a viewer shows it."
                )
            picture = ImageOps.exif_transpose(opened)
            bands = picture.getbands()
            pixels = np.asarray(picture)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise AnnotationError(f"Cannot read mask '{path}': {exc}. Masks must be readable PNG images.") from None
    if picture.size != size:
        raise AnnotationError(
            f"Mask '{path}' is {picture.size[0]}×{picture.size[1]} pixels but its image '{image}' "
            f"is {size[0]}×{size[1]}. A mask must have its image's size, as a viewer shows it."
        )
    if pixels.ndim == 3:
        colour = [i for i, band in enumerate(bands) if band != "A"]
        return np.asarray(np.any(pixels[..., colour] != 0, axis=-1))
    return np.asarray(pixels != 0)


# --- classes and matching ------------------------------------------------------------------------


def resolve_classes(truths: Sequence[ImageTruth], labels: Sequence[str]) -> dict[str, int]:
    """Each distinct class text → the model's class index (camcli's ``--class`` rules), or an error
    naming where an unknown or ambiguous class was first written."""
    from ..targets import resolve_class

    resolved: dict[str, int] = {}
    for truth in truths:
        for obj in truth.objects:
            if obj.class_spec in resolved:
                continue
            try:
                resolved[obj.class_spec] = resolve_class(obj.class_spec, labels)
            except TargetError as exc:
                raise AnnotationError(
                    f"{obj.origin}: {exc} Map dataset classes to the model's with --class-map "
                    "FILE (a CSV source,target; an empty target ignores a class)."
                ) from None
    return resolved


class _Index:
    """The explained images by every key an annotation may use."""

    def __init__(self, images: Sequence[ImageRef]) -> None:
        self.by: dict[MatchBy, dict[Any, list[ImageRef]]] = {"path": {}, "suffix": {}, "mask": {}}
        for image in images:
            path, rel = image
            parts = tuple(Path(path).parts)
            self.by["path"].setdefault(str(Path(path).resolve()), []).append(image)
            for k in range(1, len(parts) + 1):
                self.by["suffix"].setdefault(parts[-k:], []).append(image)
            self.by["mask"].setdefault(rel.with_suffix(".png").as_posix(), []).append(image)

    def find(self, truth: ImageTruth) -> PurePosixPath | None:
        key: Any = tuple(PurePosixPath(truth.ref).parts) if truth.match_by == "suffix" else truth.ref
        candidates = self.by[truth.match_by].get(key, [])
        if len(candidates) > 1:
            a, b = candidates[0][0], candidates[1][0]
            raise AnnotationError(
                f"{truth.origin}: '{truth.ref}' fits both {a} and {b}"
                f"{f' (and {len(candidates) - 2} more)' if len(candidates) > 2 else ''}. "
                "Name the image by a longer path, or explain the folders in separate runs."
            )
        return candidates[0][1] if candidates else None


def match_annotations(truths: Sequence[ImageTruth], images: Sequence[ImageRef]) -> Matching:
    """Assign ground truth to the explained images, given as (source path, output folder path).

    CSV rows and VOC ``<path>`` match by resolved absolute path; VOC ``<filename>`` by file name; COCO
    ``file_name`` as the trailing components of the image's path; masks by output folder path. A
    reference that fits two images is an error naming both. Annotations of one image from several
    sources (boxes and masks) are merged.
    """
    index = _Index(images)
    found: dict[PurePosixPath, list[GroundTruthObject]] = {}
    sizes: dict[PurePosixPath, tuple[tuple[int, int], str]] = {}
    missing: list[str] = []
    for truth in truths:
        rel = index.find(truth)
        if rel is None:
            missing.append(f"{truth.origin}: {truth.ref}")
            continue
        found.setdefault(rel, []).extend(truth.objects)
        if truth.size is not None:
            sizes[rel] = truth.size, truth.origin
    return Matching(
        {rel: tuple(objs) for rel, objs in found.items()},
        sizes,
        missing,
        [rel for _, rel in images if rel not in found],
    )


def check_image(matching: Matching, rel: PurePosixPath, size: tuple[int, int], image: str) -> None:
    """The ground truth of one explained image must fit it (``size``: width, height as a viewer shows
    it): a declared size or a box beyond the image means the boxes were drawn on another orientation
    (e.g. before EXIF rotation) or scale, and would silently miss every map."""
    width, height = size
    declared, origin = matching.sizes.get(rel, (size, ""))
    if declared != size:
        hint = (
            " The annotation was made on the image before its EXIF rotation: redo it on the rotated image."
            if declared == (height, width)
            else " Were the boxes drawn on a resized copy?"
        )
        raise AnnotationError(
            f"{origin}: declares {declared[0]}×{declared[1]} pixels but '{image}' is "
            f"{width}×{height} as a viewer shows it (EXIF orientation applied).{hint}"
        )
    for obj in matching.objects.get(rel, ()):
        if obj.box is not None and (obj.box[2] > width or obj.box[3] > height):
            x0, y0, x1, y1 = obj.box
            raise AnnotationError(
                f"{obj.origin}: the box [{x0:g}, {y0:g}, {x1:g}, {y1:g}) reaches beyond '{image}', "
                f"which is {width}×{height} pixels as a viewer shows it (EXIF orientation applied). "
                "Boxes must be in those pixels."
            )
