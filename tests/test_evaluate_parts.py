"""camcli.evaluate: ground-truth readers, metrics with known answers, gates, the table, compare_runs."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
import torch

from camcli.errors import CamcliError
from camcli.evaluate import annotations as ann
from camcli.evaluate import metrics as M
from camcli.evaluate.compare import compare_runs, gate
from camcli.evaluate.gates import evaluate_gates, parse_gate, read_gates_table
from camcli.evaluate.table import format_table

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "annotations"


# --- readers -------------------------------------------------------------------------------------


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


# --- metrics -------------------------------------------------------------------------------------


def test_iou_exclusive_boxes() -> None:
    assert M.iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert M.iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert M.iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0  # touching, x1 exclusive: no shared pixel
    np.testing.assert_allclose(M.iou_matrix([(0, 0, 2, 2), (0, 0, 4, 4)], [(0, 0, 2, 2)]), [[1.0], [0.25]])


def _blob(shape: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    heat = np.zeros(shape, np.float32)
    x0, y0, x1, y1 = box
    heat[y0:y1, x0:x1] = 1.0
    heat[(y0 + y1) // 2, (x0 + x1) // 2] = 2.0  # a peak inside
    return heat


def test_localization_box_and_protocol() -> None:
    gt = (40, 30, 60, 50)
    heat = _blob((100, 100), gt)
    heat[90:95, 0:2] = 0.5  # a smaller segment elsewhere is not the largest
    assert M.localization_box(heat) == gt
    assert M.localization_box(np.zeros((4, 4))) is None
    far = (0, 0, 10, 10)
    cases = [
        M.LocalizationCase({3: [gt]}, [3, 5, 1, 2, 4], {3: gt}),  # right class, right box
        M.LocalizationCase({3: [gt]}, [5, 3, 1, 2, 4], {5: gt, 3: gt}),  # top-1 class wrong; top-5 right
        M.LocalizationCase({3: [gt]}, [3, 5, 1, 2, 4], {3: far}),  # right class, box misses
        M.LocalizationCase({3: [gt]}, [5, 3, 1, 2, 4], {5: gt}),  # map of class 3 not explained: top-5 unknown
    ]
    assert [M.top_k_localization(c, 1) for c in cases] == [True, False, False, False]
    assert [M.top_k_localization(c, 5) for c in cases] == [True, True, False, None]
    assert M.localization_metrics(cases[:3]) == pytest.approx(
        {
            "top1_cls_error": 1 / 3,
            "top5_cls_error": 0.0,
            "top1_loc_error": 2 / 3,
            "top5_loc_error": 1 / 3,
            "gt_known_loc_accuracy": 2 / 3,
        }
    )
    # One undecidable image: no biased top-5 / GT-known figure, the others stand.
    assert M.localization_metrics(cases) == pytest.approx(
        {
            "top1_cls_error": 0.5,
            "top5_cls_error": 0.0,
            "top1_loc_error": 0.75,
            "top5_loc_error": None,
            "gt_known_loc_accuracy": None,
        }
    )


def test_pointing_game_tolerance_boxes_and_masks() -> None:
    box = [(40.0, 40.0, 60.0, 60.0)]  # pixels 40..59
    assert M.pointing_hit((59, 50), box)
    assert M.pointing_hit((74, 50), box)  # 15 px from pixel 59
    assert not M.pointing_hit((75, 50), box)  # 16 px
    assert M.pointing_hit((69, 69), box)
    assert not M.pointing_hit((70, 70), box)
    assert not M.pointing_hit(None, box)
    assert M.share([True, True, False]) == pytest.approx(2 / 3)
    assert M.share([True, None]) is None
    assert M.share([]) is None
    rng = np.random.default_rng(0)
    mask = np.zeros((60, 80), bool)
    mask[rng.integers(0, 60, 6), rng.integers(0, 80, 6)] = True
    ys, xs = np.nonzero(mask)
    for x, y in zip(rng.integers(0, 80, 200).tolist(), rng.integers(0, 60, 200).tolist(), strict=False):
        dilated = bool(np.any((xs - x) ** 2 + (ys - y) ** 2 <= 15**2))  # the mask dilated by a disk, at the point
        assert M.pointing_hit((x, y), (), mask) is dilated


def test_energy_pointing_game() -> None:
    region = M.region_mask((100, 100), [(40, 30, 60, 50)])
    assert region.sum() == 400
    assert M.energy_share(_blob((100, 100), (42, 32, 58, 48)), region) == 1.0
    assert M.energy_share(_blob((100, 100), (0, 0, 10, 10)), region) == 0.0
    half = np.zeros((100, 100))
    half[40, 50], half[0, 0] = 1.0, 3.0
    assert M.energy_share(half, region) == 0.25
    assert M.energy_share(np.zeros((5, 5)), np.ones((5, 5), bool)) is None
    mask = np.zeros((100, 100), bool)
    mask[0, 0] = True
    assert M.energy_share(half, M.region_mask((100, 100), [(40, 30, 60, 50)], [mask])) == 1.0


def _region_score(batch: torch.Tensor) -> torch.Tensor:
    """A toy 'probability': the mean of channel 0 over the top-left 4×4 block."""
    return batch[:, 0, :4, :4].mean(dim=(1, 2)).clamp(0, 1)


def test_deletion_insertion_known_curves() -> None:
    x = torch.zeros(3, 8, 8)
    x[:, :4, :4] = 1.0
    good = torch.zeros(8, 8)
    good[:4, :4] = 1.0
    curves = M.deletion_insertion(_region_score, x, good, steps=4, batch_size=3)
    np.testing.assert_allclose(curves.deletion, [1, 0, 0, 0, 0])  # the block goes first
    assert curves.deletion_auc == pytest.approx(0.5 / 4)
    blurred = float(_region_score(M.gaussian_blur(x)[None])[0])
    np.testing.assert_allclose(curves.insertion, [blurred, 1, 1, 1, 1], rtol=1e-6)
    assert curves.insertion_auc == pytest.approx((blurred / 2 + 3.5) / 4)
    bad = M.deletion_insertion(_region_score, x, 1 - good, steps=4)
    np.testing.assert_allclose(bad.deletion, [1, 1, 1, 1, 0])
    assert bad.deletion_auc == pytest.approx(3.5 / 4)
    assert bad.insertion_auc < curves.insertion_auc
    assert bad.deletion_auc > curves.deletion_auc
    flat = M.deletion_insertion(_region_score, x, torch.zeros(8, 8), steps=4)  # ties: flattened index order
    np.testing.assert_allclose(flat.deletion[:3], [1, 0.5, 0])  # rows 0-1 first, then rows 2-3


def test_deletion_insertion_many_equals_one_by_one() -> None:
    torch.manual_seed(0)
    x, maps = torch.randn(3, 3, 12, 10), torch.rand(3, 12, 10)
    weights = torch.randn(4, 3)

    def score(batch: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        logits = batch.mean(dim=(2, 3)) @ weights.T
        return logits.softmax(dim=1).gather(1, classes[:, None])[:, 0]

    classes = torch.tensor([0, 3, 1])
    many = M.deletion_insertion_many(score, x, maps, classes, steps=7, batch_size=5)
    for i in range(3):

        def of_class(batch: torch.Tensor, c: int = int(classes[i])) -> torch.Tensor:
            return score(batch, torch.full((len(batch),), c))

        one = M.deletion_insertion(of_class, x[i], maps[i], steps=7)
        np.testing.assert_allclose(many[i].deletion, one.deletion, rtol=1e-6)
        np.testing.assert_allclose(many[i].insertion, one.insertion, rtol=1e-6)
        assert len(one.deletion) == 8


def test_summarize_keeps_not_computed_apart_from_undefined() -> None:
    curves = [
        M.FaithfulnessCurves(np.array([1.0, 0.0]), np.array([0.0, 1.0])),
        M.FaithfulnessCurves(np.array([1.0, 1.0]), np.array([0.0, 0.0])),
    ]
    found = M.summarize(
        pointing=[True, False, True, True], energy=[0.5, None, 1.0], faithfulness=curves, confidence=([0.5], [0.25])
    )
    assert found == {
        "pointing_game": 0.75,
        "energy_pointing_game": 0.75,
        "deletion_auc": 0.75,
        "insertion_auc": 0.25,
        "average_drop_pct": 50.0,
        "increase_in_confidence_pct": 0.0,
    }
    assert M.summarize(pointing=[]) == {"pointing_game": None}  # computed over nothing
    assert M.summarize() == {}  # nothing computed: a gate on it says so


def test_gaussian_blur_matches_torchvision() -> None:
    from torchvision.transforms.functional import gaussian_blur  # type: ignore[import-untyped]

    img = torch.rand(2, 3, 20, 17)
    torch.testing.assert_close(M.gaussian_blur(img), gaussian_blur(img, [11, 11], [5.0, 5.0]), atol=1e-5, rtol=0)


def test_average_drop_and_increase_in_confidence() -> None:
    assert M.average_drop([0.8, 0.5], [0.4, 0.6]) == pytest.approx(25.0)  # (0.5 + 0) / 2 · 100
    assert M.increase_in_confidence([0.8, 0.5], [0.4, 0.6]) == pytest.approx(50.0)
    assert M.average_drop([], []) is None
    x = torch.zeros(1, 3, 2, 2)  # normalized with mean 0.5, std 0.5: grey pixels (0.5)
    maps = torch.tensor([[[1.0, 0.0], [0.5, 0.0]]])
    masked = M.masked_by_map(x, maps, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    torch.testing.assert_close(masked[0, 1], torch.tensor([[0.0, -1.0], [-0.5, -1.0]]))  # black where map = 0
    scores = M.class_scores(lambda b, c: b.mean(dim=(1, 2, 3)) + c, torch.zeros(5, 3, 2, 2), torch.arange(5), 2)
    np.testing.assert_allclose(scores, [0, 1, 2, 3, 4])


def test_spearman_against_formula_and_ties() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.random(50), rng.random(50)
    d = np.argsort(np.argsort(a)) - np.argsort(np.argsort(b))
    assert M.spearman(a, b) == pytest.approx(1 - 6 * np.sum(d**2) / (50 * (50**2 - 1)))
    # ranks with ties: a → [1, 2.5, 2.5, 4]; ρ = 4.5 / √(4.5 · 5) = 3 / √10
    assert M.spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(3 / math.sqrt(10))
    np.testing.assert_array_equal(M.rankdata([[3, 1], [3, 3]]), [3, 1, 3, 3])
    assert M.spearman(np.ones(4), [1, 2, 3, 4]) is None
    assert M.spearman(a, a**3) == pytest.approx(1.0)  # any increasing transform


def test_mask_iou_and_sanity() -> None:
    a, b = np.zeros((10, 10)), np.zeros((10, 10))
    a[0:4, 0:5], b[0:4, 2:7] = 1.0, 1.0
    a[0, 2] = 10.0  # only this pixel reaches 15% of a's max
    assert M.mask_iou(a, b) == pytest.approx(1 / 20)
    assert M.mask_iou(a, b, threshold=0.05) == pytest.approx(12 / 28)
    assert M.mask_iou(np.zeros(3), np.zeros(3)) is None
    rows = M.sanity_correlations(a, [("logits", a), ("all", -a)])
    assert rows == [
        {"step": "logits", "spearman": pytest.approx(1.0), "spearman_abs": pytest.approx(1.0)},
        {"step": "all", "spearman": pytest.approx(-1.0), "spearman_abs": pytest.approx(1.0)},
    ]


# --- gates and table -----------------------------------------------------------------------------

METRICS: dict[str, dict[str, float | None]] = {
    "gradcam": {"top1_loc_error": 0.4, "pointing_game": 0.8, "energy_pointing_game": None},
    "counterfactual": {"top1_loc_error": 0.9, "pointing_game": 0.2, "energy_pointing_game": 0.1},
}


def test_gates_pass_fail_missing_and_per_method() -> None:
    gates = [
        parse_gate("--max-loc-error", "0.5"),
        parse_gate("min_pointing_game", 0.7),
        parse_gate("min-pointing-game", "counterfactual:0.1"),
        parse_gate("min-energy", "0.05"),
        parse_gate("max-deletion-auc", "gradcam:0.2"),
        parse_gate("min-insertion-auc", "scorecam:0.5"),
    ]
    results = {(r["name"], r["method"]): r for r in evaluate_gates(METRICS, gates)}
    assert set(results) == {
        ("max-loc-error", "gradcam"),
        ("max-loc-error", "counterfactual"),
        ("min-pointing-game", "gradcam"),
        ("min-pointing-game", "counterfactual"),
        ("min-energy", "gradcam"),
        ("min-energy", "counterfactual"),
        ("max-deletion-auc", "gradcam"),
        ("min-insertion-auc", "scorecam"),
    }
    assert results["max-loc-error", "gradcam"]["passed"]
    assert not results["max-loc-error", "counterfactual"]["passed"]
    assert results["min-pointing-game", "counterfactual"] == {  # METHOD:VALUE replaces the plain 0.7 for it
        "name": "min-pointing-game",
        "method": "counterfactual",
        "metric": "pointing_game",
        "threshold": 0.1,
        "value": 0.2,
        "passed": True,
        "reason": None,
    }
    assert not results["min-energy", "gradcam"]["passed"]  # computed over nothing: never a pass
    assert "no image could be scored" in results["min-energy", "gradcam"]["reason"]
    missing = results["max-deletion-auc", "gradcam"]
    assert (missing["passed"], missing["value"]) == (False, None)
    assert missing["reason"] == "not computed: needs --faithfulness"
    assert results["min-insertion-auc", "scorecam"]["reason"] == "method 'scorecam' was not evaluated"
    assert evaluate_gates({}, [gates[0]])[0]["reason"] == "no method was evaluated"


def test_gate_values_and_table_are_checked() -> None:
    for bad, message in [
        ("nan", "not a share"),
        ("inf", "not a share"),
        ("45", "write 0.45 for 45%"),
        ("gradcam:x", "not a number"),
    ]:
        with pytest.raises(CamcliError, match=message):
            parse_gate("min-pointing-game", bad)
    with pytest.raises(CamcliError, match=r"unknown gate 'min-pointing'\. Did you mean min-pointing-game"):
        parse_gate("min-pointing", 0.5)
    table = {"max-loc-error": 0.5, "min_pointing_game": ["0.6", "counterfactual:0.1"]}
    gates = read_gates_table(table, "ci.toml [gates]")
    assert [(g.name, g.method, g.threshold) for g in gates] == [
        ("max-loc-error", None, 0.5),
        ("min-pointing-game", None, 0.6),
        ("min-pointing-game", "counterfactual", 0.1),
    ]
    with pytest.raises(CamcliError, match=r"ci\.toml \[gates\]: unknown gate 'max_loc'"):
        read_gates_table({"max_loc": 0.5}, "ci.toml [gates]")
    with pytest.raises(CamcliError, match="not a share"):
        read_gates_table({"min-energy": float("nan")})
    with pytest.raises(CamcliError, match="is not a number or"):
        read_gates_table({"min-energy": True})


def test_table_lists_methods_metrics_and_gates() -> None:
    gates = evaluate_gates(METRICS, [parse_gate("max-loc-error", 0.5), parse_gate("max-deletion-auc", 0.3)])
    text = format_table(
        {"methods": {**METRICS, "gradcam": {**METRICS["gradcam"], "average_drop_pct": 12.345}}, "gates": gates}
    )
    lines = text.splitlines()
    assert lines[0].split() == ["metric", "gradcam", "counterfactual"]
    assert lines[1].split() == ["top-1", "loc.", "error", "0.400", "0.900"]
    assert "energy pointing game" in text
    assert "n/a" in text
    assert any(line.startswith("average drop %") and line.split()[-2:] == ["12.3", "-"] for line in lines)
    assert "PASS" in text
    assert "FAIL" in text
    assert "not computed: needs --faithfulness" in text


# --- compare -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Run A: the bundled model over three images and a broken file; run B: an untrained resnet18 over
    the same folder without astronaut.png. Real `camcli explain` runs, top-1, raw maps only."""
    from click.testing import CliRunner

    from camcli.cli import cli

    root = tmp_path_factory.mktemp("compare")
    images = root / "images"
    images.mkdir()
    samples = Path(__file__).resolve().parent.parent / "sample_images"
    for name in ("chelsea.png", "coffee.png", "astronaut.png"):
        shutil.copy(samples / name, images / name)
    (images / "broken.png").write_text("not an image")
    common = ["explain", str(images), "-q", "--top-k", "1", "--save", "raw_map"]
    run_a, run_b = root / "a", root / "b"
    first = CliRunner().invoke(cli, [*common, "-o", str(run_a)])
    second = CliRunner().invoke(
        cli, [*common, "-o", str(run_b), "-m", "resnet18", "--random-weights", "--exclude", "astronaut.png"]
    )
    assert (first.exit_code, second.exit_code) == (1, 1), (first.output, second.output)  # broken.png fails
    return run_a, run_b


def test_compare_run_with_itself(two_runs: tuple[Path, Path]) -> None:
    run_a, _ = two_runs
    result = compare_runs(run_a, run_a)
    assert result["method"] == "gradcam"
    assert [Path(i["path"]).name for i in result["images"]] == ["astronaut.png", "chelsea.png", "coffee.png"]
    for image in result["images"]:
        assert (image["spearman"], image["mask_iou"], image["box_iou"]) == (pytest.approx(1.0), 1.0, 1.0)
        assert image["top1_changed"] is False
        assert image["resolution"] == "input"
        assert image["a"] == image["b"] == str(run_a / Path(image["path"]).name)
    assert result["summary"]["top1_changed"] == 0.0
    assert result["summary"]["spearman_min"] == pytest.approx(1.0)
    assert [Path(p).name for p in result["failed"]] == ["broken.png"]
    assert result["failures"][0]["run"] == "both"
    assert gate(result, 0.99)[0]


def test_compare_two_models(two_runs: tuple[Path, Path]) -> None:
    run_a, run_b = two_runs
    result = compare_runs(run_a, run_b, most_changed=1)
    assert set(result) >= {"schema_version", "run_a", "run_b", "images", "only_in_a", "only_in_b", "failed", "summary"}
    assert [Path(p).name for p in result["only_in_a"]] == ["astronaut.png"]
    assert result["only_in_b"] == []
    assert [Path(i["path"]).name for i in result["images"]] == ["chelsea.png", "coffee.png"]
    for image in result["images"]:
        assert image["top1_changed"]
        assert image["top1_a"]["label"] != image["top1_b"]["label"]
        assert image["resolution"] == "original"  # the two models crop differently: compared on the image
        assert -1 <= image["spearman"] < 0.99
        assert 0 <= image["mask_iou"] <= 1
        assert 0 <= image["box_iou"] <= 1
        assert (image["class_a"], image["class_b"]) == (image["top1_a"]["class_index"], image["top1_b"]["class_index"])
        assert "top-1 classes differ" in image["note"]
    summary = result["summary"]
    assert summary["images"] == 2
    assert summary["top1_changed"] == 1.0
    assert summary["spearman_min"] <= summary["spearman_median"] <= max(i["spearman"] for i in result["images"])
    assert result["most_changed"][0]["spearman"] == summary["spearman_min"]
    assert len(result["most_changed"]) == 1
    passed, message = gate(result, 0.999)
    assert not passed
    assert "2 of 2 images below" in message
    assert "worst:" in message
    json.dumps(result)  # the HTML report reads it as JSON
    swapped = compare_runs(run_b, run_a)
    assert [Path(p).name for p in swapped["only_in_b"]] == ["astronaut.png"]


def test_compare_falls_back_to_folders_and_reports_one_sided_failures(
    two_runs: tuple[Path, Path], tmp_path: Path
) -> None:
    run_a, _ = two_runs
    moved = tmp_path / "moved"
    shutil.copytree(run_a, moved)
    summary = moved / "summary.jsonl"
    lines = [json.loads(line) for line in summary.read_text().splitlines()]
    for line in lines:  # as if the data set had been explained from another place
        line["path"] = "/elsewhere/" + Path(line["path"]).name
    summary.write_text("".join(json.dumps(line) + "\n" for line in lines))
    doc_path = moved / "coffee.png" / "explanation.json"
    doc = json.loads(doc_path.read_text())
    doc.update(status="error", error={"type": "ImageError", "message": "gone"}, predictions=[], explanations=[])
    doc_path.write_text(json.dumps(doc))
    result = compare_runs(run_a, moved)
    assert [Path(i["path"]).name for i in result["images"]] == ["astronaut.png", "chelsea.png"]
    assert all(i["spearman"] == pytest.approx(1.0) for i in result["images"])
    failures = {(Path(f["path"]).name, f["run"]) for f in result["failures"]}
    assert failures == {("coffee.png", "b"), ("broken.png", "both")}
    passed, message = gate(result, 0.5)
    assert not passed
    assert "1 could not be compared" in message
    with pytest.raises(CamcliError, match=r"no readable summary\.jsonl"):
        compare_runs(run_a, tmp_path)
    with pytest.raises(CamcliError, match="Method 'scorecam'"):
        compare_runs(run_a, moved, method="scorecam")
