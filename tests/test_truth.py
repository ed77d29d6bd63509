"""camcli.evaluate.truth: a run's images with their ground truth, and the labels a run recorded (for runs
read with --from, without their model)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from camcli.evaluate.annotations import GroundTruthObject, ImageTruth
from camcli.evaluate.truth import ground_truth_classes, recorded_labels


def test_recorded_labels_fill_the_classes_a_run_never_named():
    docs = [
        {
            "model": {"num_classes": 5},
            "predictions": [{"class_index": 3, "label": "cat"}, {"class_index": 1, "label": "dog"}],
            "explanations": [{"method": "gradcam", "class_index": 0, "label": "car", "files": {}}],
        },
        {"model": {"num_classes": True}, "predictions": [{"class_index": 6, "label": "bus"}, "junk"]},
        {"model": "not a table", "explanations": "nope"},
    ]
    assert recorded_labels(docs) == ["car", "dog", "2", "cat", "4", "5", "bus"]
    assert recorded_labels([]) == []


def test_ground_truth_classes_are_keyed_by_output_folder():
    labels = ["car", "dog", "cat"]
    truths = [
        ImageTruth("a.png", "suffix", (GroundTruthObject("cat"), GroundTruthObject("2"), GroundTruthObject("0")), "t"),
        ImageTruth("gone.png", "suffix", (GroundTruthObject("dog"),), "t line 3"),
    ]
    images = [(Path("/data/a.png"), PurePosixPath("a.png")), (Path("/data/b.png"), PurePosixPath("b.png"))]
    per_image, unmatched = ground_truth_classes(truths, images, labels)
    assert per_image == {"a.png": (2, 0)}  # in the annotation's order, each once
    assert unmatched == ["t line 3: gone.png"]
