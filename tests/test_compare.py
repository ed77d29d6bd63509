"""camcli.evaluate.compare: two runs' maps compared image by image (real `camcli explain` runs)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from camcli.errors import CamcliError
from camcli.evaluate.compare import compare_runs, gate


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory, run_cli, samples: Path) -> tuple[Path, Path]:
    """Run A: the bundled model over three images and a broken file; run B: an untrained resnet18 over
    the same folder without astronaut.png. Real `camcli explain` runs, top-1, raw maps only."""
    root = tmp_path_factory.mktemp("compare")
    images = root / "images"
    images.mkdir()
    for name in ("chelsea.png", "coffee.png", "astronaut.png"):
        shutil.copy(samples / name, images / name)
    (images / "broken.png").write_text("not an image")
    common = ["explain", images, "-q", "--top-k", "1", "--save", "raw_map"]
    run_a, run_b = root / "a", root / "b"
    first = run_cli(*common, "-o", run_a)
    second = run_cli(*common, "-o", run_b, "-m", "resnet18", "--random-weights", "--exclude", "astronaut.png")
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
    with pytest.raises(CamcliError, match=r"no readable run\.json or summary\.jsonl"):
        compare_runs(run_a, tmp_path)
    with pytest.raises(CamcliError, match="Method 'scorecam'"):
        compare_runs(run_a, moved, method="scorecam")
