"""camcli.evaluate.annotations: CSV, Pascal VOC, COCO and mask readers, matching ground truth to the
explained images, classes resolved against the model's labels, and sizes checked."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import numpy as np
import pytest

from camcli.errors import CamcliError
from camcli.evaluate import annotations as ann

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "annotations"


def test_csv_rows_become_objects_per_image() -> None:
    truths = ann.read_csv(FIXTURES / "boxes.csv")
    assert [t.ref for t in truths] == [
        str(FIXTURES / "images/cat.png"),
        str(FIXTURES / "images/sub/coffee.png"),
        "/abs/elsewhere/x.jpg",
    ]
    cat, coffee, other = truths
    assert [(o.class_spec, o.box) for o in cat.objects] == [
        ("tiger cat", (10, 20, 110, 120)),
        ("281", (12.5, 20, 60, 80.25)),
    ]
    assert coffee.objects[0].box is None
    assert coffee.objects[0].class_spec == "967"
    assert other.objects[0].origin.endswith("boxes.csv line 6")  # the blank line 5 is skipped, lines still counted
    assert {t.match_by for t in truths} == {"path"}


@pytest.mark.parametrize(
    ("name", "fragments"),
    [
        ("bad_header.csv", ["line 1", "file,label", "path,class,x0,y0,x1,y1"]),
        ("non_numeric.csv", ["line 3", "y0 is 'ten'", "not a number"]),
        ("inverted.csv", ["line 3", "x1 (30) must be greater than x0 (30)"]),
        ("nan.csv", ["line 4", "x0 is nan", "finite"]),
        ("missing_column.csv", ["line 3", "4 columns, expected 6", "leave the coordinates empty"]),
        ("partial_box.csv", ["line 2", "all four"]),
        ("negative.csv", ["line 2", "x0 is -3"]),
    ],
)
def test_csv_errors_name_file_line_and_fix(name: str, fragments: list[str]) -> None:
    with pytest.raises(ann.AnnotationError) as info:
        ann.read_annotations(FIXTURES / name)
    assert isinstance(info.value, CamcliError)
    assert str(FIXTURES / name) in str(info.value)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_voc_boxes_become_zero_based_exclusive() -> None:
    chelsea, coffee = ann.read_annotations(FIXTURES / "voc")
    assert (chelsea.ref, chelsea.match_by, chelsea.size) == ("chelsea.png", "suffix", (451, 300))
    assert chelsea.objects[0].box == (100, 20, 300, 280)  # 1-based inclusive 101..300 → [100, 300)
    assert chelsea.objects[1].box is None  # an object without <bndbox>: class only
    assert chelsea.objects[1].origin.endswith("annotation/object[2]")
    # <path> names no existing file: matched by <filename>; xmin 0 (a 0-based writer) is the image edge
    assert (coffee.ref, coffee.match_by) == ("coffee.png", "suffix")
    assert coffee.objects[0].box == (0, 0, 99.5, 50)


def test_voc_path_is_used_when_the_file_exists(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(b"")
    xml = tmp_path / "a.xml"
    xml.write_text("<annotation><filename>zzz.png</filename><path>img/a.png</path></annotation>")
    truth = ann.read_voc_file(xml)
    assert (truth.ref, truth.match_by) == (str((tmp_path / "img" / "a.png").resolve()), "path")


def test_voc_refuses_doctype_and_entities(tmp_path: Path) -> None:
    with pytest.raises(ann.AnnotationError, match=r"evil\.xml line 2: declares a DOCTYPE"):
        ann.read_annotations(FIXTURES / "voc_doctype")
    # In UTF-16 a byte search for "<!DOCTYPE" finds nothing; expat still sees the declaration.
    sneaky = tmp_path / "u16.xml"
    sneaky.write_bytes(
        '<?xml version="1.0" encoding="utf-16"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        "<annotation><filename>&x;</filename></annotation>".encode("utf-16")
    )
    with pytest.raises(ann.AnnotationError, match="DOCTYPE"):
        ann.read_voc_file(sneaky)


def test_voc_errors_name_element(tmp_path: Path) -> None:
    with pytest.raises(ann.AnnotationError, match=r"bad\.xml annotation/object\[2\]/bndbox: xmax \(40\) is less"):
        ann.read_annotations(FIXTURES / "voc_bad")
    broken = tmp_path / "broken.xml"
    broken.write_text("<annotation>\n<filename>a.png</filename>\n<object>\n</annotation>\n")
    with pytest.raises(ann.AnnotationError, match=r"broken\.xml line 4, column \d+: not well-formed"):
        ann.read_voc_file(broken)
    nameless = tmp_path / "nameless.xml"
    nameless.write_text("<annotation><filename>a.png</filename><object><bndbox/></object></annotation>")
    with pytest.raises(ann.AnnotationError, match=r"object\[1\]/name: missing"):
        ann.read_voc_file(nameless)
    with pytest.raises(ann.AnnotationError, match=r"no \.xml files"):
        ann.read_voc(tmp_path / "nothing")


def test_coco_boxes_class_map_and_empty_images() -> None:
    class_map = ann.read_class_map(FIXTURES / "class_map.csv")
    assert class_map == {"1": "tiger cat", "person": "", "dog": "207"}
    chelsea, coffee, empty = ann.read_coco(FIXTURES / "coco.json", class_map)
    assert (chelsea.ref, chelsea.match_by, chelsea.size) == ("val/chelsea.png", "suffix", (451, 300))
    assert chelsea.objects[0].class_spec == "tiger cat"  # category 1 "cat", renamed by its id
    assert chelsea.objects[0].box == (100.5, 20, 300.5, 280.25)  # [x, y, w, h] → [x0, y0, x1, y1)
    assert [o.class_spec for o in coffee.objects] == ["espresso"]  # "person" maps to nothing: dropped
    assert empty.objects == ()
    assert [o.class_spec for o in ann.read_coco(FIXTURES / "coco.json")[1].objects] == ["espresso", "person"]
    # the same map renames CSV, VOC and mask classes by their text
    voc = ann.read_annotations(FIXTURES / "voc", {"tiger cat": "", "espresso": "967"})
    assert [[o.class_spec for o in t.objects] for t in voc] == [["282"], ["967"]]


@pytest.mark.parametrize(
    ("name", "fragments"),
    [
        ("coco_missing_keys.json", ["annotations: missing", "images, annotations and categories"]),
        ("coco_bad_bbox.json", ["annotations[1].bbox", "four finite numbers"]),
        ("coco_unknown_image.json", ["annotations[0]", "image_id 7 is not in images"]),
    ],
)
def test_coco_errors_name_json_path(name: str, fragments: list[str]) -> None:
    with pytest.raises(ann.AnnotationError) as info:
        ann.read_annotations(FIXTURES / name)
    assert str(FIXTURES / name) in str(info.value)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_coco_invalid_json_names_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [],\n "annotations": [,]}')
    with pytest.raises(ann.AnnotationError, match=r"bad\.json line 2, column \d+: not valid JSON"):
        ann.read_coco(bad)


def test_masks_layout_load_and_size_check(tmp_path: Path) -> None:
    coffee, chelsea = ann.read_masks(FIXTURES / "masks")
    assert (chelsea.ref, chelsea.match_by, chelsea.objects[0].class_spec) == ("chelsea.png", "mask", "tiger cat")
    assert (coffee.ref, coffee.objects[0].class_spec) == ("sub/coffee.png", "967")
    mask_path = chelsea.objects[0].mask
    assert mask_path is not None
    expected = np.zeros((6, 8), bool)
    expected[1:4, 2:5] = True
    np.testing.assert_array_equal(ann.load_mask(mask_path, (8, 6), "chelsea.png"), expected)
    with pytest.raises(ann.AnnotationError, match=r"is 8×6 pixels but its image 'x/chelsea.png' is 9×6"):
        ann.load_mask(mask_path, (9, 6), "x/chelsea.png")
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "a.jpg").write_bytes(b"")
    with pytest.raises(ann.AnnotationError, match=r"not a \.png file.*a\.png"):
        ann.read_masks(tmp_path)


def _images(root: Path, *rels: str) -> list[tuple[Path, PurePosixPath]]:
    return [(root / rel, PurePosixPath(rel)) for rel in rels]


def test_match_annotations_by_path_name_suffix_and_mask(tmp_path: Path) -> None:
    images = _images(FIXTURES / "images", "cat.png", "sub/coffee.png", "dog.png")
    found = ann.match_annotations(ann.read_csv(FIXTURES / "boxes.csv"), images)
    assert [o.class_spec for o in found.objects[PurePosixPath("cat.png")]] == ["tiger cat", "281"]
    assert found.not_explained == [f"{FIXTURES / 'boxes.csv'} line 6: /abs/elsewhere/x.jpg"]
    assert found.not_annotated == [PurePosixPath("dog.png")]

    data = _images(tmp_path, "val/chelsea.png", "train/coffee.png", "sub/coffee.png")
    with pytest.raises(ann.AnnotationError, match=r"'coffee\.png' fits both .*train/coffee\.png and .*sub/coffee\.png"):
        ann.match_annotations(ann.read_coco(FIXTURES / "coco.json"), data)
    with pytest.raises(ann.AnnotationError, match="fits both"):  # VOC by file name: the same ambiguity
        ann.match_annotations(ann.read_voc(FIXTURES / "voc"), data)
    unique = _images(tmp_path, "val/chelsea.png", "other/chelsea.png", "sub/coffee.png")
    coco = ann.match_annotations(ann.read_coco(FIXTURES / "coco.json"), unique)  # "val/chelsea.png": a suffix
    assert set(coco.objects) == {PurePosixPath("val/chelsea.png"), PurePosixPath("sub/coffee.png")}
    assert coco.not_annotated == [PurePosixPath("other/chelsea.png")]
    assert coco.not_explained == [f"{FIXTURES / 'coco.json'} images[2]: empty.jpg"]
    # masks by output folder path, merged with boxes from another source
    merged = ann.match_annotations(
        ann.read_masks(FIXTURES / "masks") + ann.read_coco(FIXTURES / "coco.json"),
        _images(tmp_path, "val/chelsea.png", "chelsea.png", "sub/coffee.png"),
    )
    assert [(o.class_spec, o.mask is not None) for o in merged.objects[PurePosixPath("sub/coffee.png")]] == [
        ("967", True),
        ("espresso", False),
        ("person", False),
    ]


def test_resolve_classes() -> None:
    labels = ["class_0", "tiger cat", "tabby, tabby cat", "crane", "crane"]
    truths = ann.read_csv(FIXTURES / "boxes.csv")[:1]
    with pytest.raises(ann.AnnotationError, match=r"boxes\.csv line 3: .*out of range.*--class-map"):
        ann.resolve_classes(truths, labels)  # "281" is not an index of this 5-class model
    ok = [ann.ImageTruth("a", "suffix", (ann.GroundTruthObject("tabby"), ann.GroundTruthObject("1")), "x")]
    assert ann.resolve_classes(ok, labels) == {"tabby": 2, "1": 1}
    crane = ann.GroundTruthObject("crane", None, None, "l.csv line 9")
    with pytest.raises(ann.AnnotationError, match="ambiguous"):
        ann.resolve_classes([ann.ImageTruth("a", "suffix", (crane,), "x")], labels)


def test_check_image_sizes_and_boxes() -> None:
    csv_match = ann.match_annotations(ann.read_csv(FIXTURES / "boxes.csv"), _images(FIXTURES / "images", "cat.png"))
    cat = PurePosixPath("cat.png")
    ann.check_image(csv_match, cat, (110, 120), "cat.png")
    with pytest.raises(ann.AnnotationError, match=r"line 2: the box \[10, 20, 110, 120\) reaches beyond 'cat.png'"):
        ann.check_image(csv_match, cat, (120, 100), "cat.png")
    voc = ann.match_annotations(ann.read_voc(FIXTURES / "voc"), _images(Path("/data"), "chelsea.png"))
    chelsea = PurePosixPath("chelsea.png")
    ann.check_image(voc, chelsea, (451, 300), "chelsea.png")
    with pytest.raises(ann.AnnotationError, match=r"chelsea\.xml: declares 451×300 .* 300×451 .*EXIF"):
        ann.check_image(voc, chelsea, (300, 451), "chelsea.png")
