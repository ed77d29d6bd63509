"""What careless nightly jobs do: outputs inside inputs, re-runs with other settings, overlapping runs,
ambiguous class names, weights files that are not weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from camcli import full_map

from background import Background

FAST = ["--top-k", "1", "-q", "--overlay-format", "jpg"]


def count(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())["counts"]


def test_output_inside_the_input_folder_is_never_explained(sample_copy, run_cli):
    out = sample_copy / "out"
    for _ in range(3):
        result = run_cli("explain", str(sample_copy), "-o", str(out), *FAST, "--overwrite")
        assert result.exit_code == 0, result.output
        assert count(out)["total"] == 2  # chelsea and coffee, never their overlays
    # An older run's output folder under another name is skipped too (it carries camcli's marker) ...
    old = sample_copy / "old-run"
    assert run_cli("explain", str(sample_copy), "-o", str(old), *FAST).exit_code == 0
    assert run_cli("explain", str(sample_copy), "-o", str(out), *FAST, "--overwrite").exit_code == 0
    assert count(out)["total"] == 2
    # ... but a file named explicitly is always taken.
    overlay = next(old.glob("coffee.png/*_overlay.jpg"))
    assert run_cli("explain", str(overlay), "-o", str(sample_copy.parent / "x"), *FAST).exit_code == 0


def test_redone_image_keeps_only_the_files_its_json_lists(sample_copy, tmp_path, run_cli):
    out = tmp_path / "out"
    base = ["explain", str(sample_copy / "coffee.png"), "-o", str(out), "-q"]
    assert run_cli(*base, "--top-k", "3", "--save", "overlay,map,raw_map").exit_code == 0
    (out / "coffee.png" / "my-notes.txt").write_text("not camcli's: left alone")
    assert run_cli(*base, "--top-k", "1", "--method", "counterfactual").exit_code == 0
    doc = json.loads((out / "coffee.png" / "explanation.json").read_text())
    listed = {name for exp in doc["explanations"] for name in exp["files"].values()}
    assert len(listed) == 2
    assert {p.name for p in (out / "coffee.png").iterdir()} == listed | {"explanation.json", "my-notes.txt"}
    # An image that fails on the next run loses its old pictures too.
    (sample_copy / "coffee.png").write_bytes(b"now corrupt")
    assert run_cli(*base).exit_code == 1
    assert {p.name for p in (out / "coffee.png").iterdir()} == {"explanation.json", "my-notes.txt"}


def test_full_map_rebuilds_the_saved_map(sample_copy, tmp_path, run_cli):
    out = tmp_path / "out"
    result = run_cli(
        "explain",
        str(sample_copy),
        "-o",
        str(out),
        "-q",
        "--top-k",
        "2",
        "--method",
        "gradcam,counterfactual",
        "--save",
        "overlay,map,raw_map",
    )
    assert result.exit_code == 0, result.output
    for path in out.glob("*/explanation.json"):
        doc = json.loads(path.read_text())
        for i, exp in enumerate(doc["explanations"]):
            saved = np.load(path.parent / exp["files"]["map"])
            for rebuilt in (full_map(path, i), full_map(str(path), exp)):
                assert rebuilt.dtype == np.float32
                assert np.array_equal(rebuilt, saved)


def test_ambiguous_class_name_lists_every_match(sample_copy, tmp_path, run_cli):
    result = run_cli("explain", str(sample_copy), "-o", str(tmp_path / "o"), "--class", "crane")
    assert result.exit_code == 2
    assert "134 (crane)" in result.output
    assert "517 (crane)" in result.output
    assert "ambiguous" in result.output


def _slow_run(folder: Path, out: Path) -> Background:
    return Background(out, "explain", str(folder), "-o", str(out), "-q", "--batch-size", "1", "--top-k", "5")


def test_second_run_on_the_same_output_stops_and_names_the_first(samples, tmp_path, run_cli):
    out = tmp_path / "out"
    first = _slow_run(samples, out)
    try:
        deadline = time.time() + 120
        while not (out / "run.json").exists() and time.time() < deadline:  # holds the lock from here on
            time.sleep(0.02)
        second = run_cli("explain", str(samples), "-o", str(out), "-q")
        assert first.poll() is None, "the first run ended before the second started"
        assert second.exit_code == 2
        assert f"PID {first.pid}" in second.output
        assert "started" in second.output
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    # A run killed outright leaves its lock file, which must not block the next run.
    assert (out / ".camcli-lock").exists()
    result = run_cli("explain", str(samples / "coffee.png"), "-o", str(out), "-q", "--top-k", "1")
    assert result.exit_code == 0, result.output


def _weights_run(weights: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    image = Path(__file__).resolve().parent.parent / "sample_images" / "coffee.png"
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "camcli",
            "explain",
            str(image),
            "-o",
            str(tmp_path / "o"),
            "-q",
            "-m",
            "resnet18",
            "--num-classes",
            "3",
            "--weights",
            str(weights),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


class _Plant:
    """Unpickled normally, this object would create the file ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


@pytest.mark.parametrize("kind", ["text", "pickle-only", "pickle-beside-weights"])
def test_weights_that_are_not_weights(kind, tmp_path):
    marker = tmp_path / "code-ran"
    weights = tmp_path / "w.pth"
    if kind == "text":
        weights.write_text("these are not weights")
    elif kind == "pickle-only":
        torch.save({"args": _Plant(marker)}, weights)
    else:
        from camcli.models import load_model

        model = load_model("resnet18", random_weights=True, num_classes=3).model
        torch.save({"state_dict": model.state_dict(), "args": _Plant(marker), "epoch": 3}, weights)
    done = _weights_run(weights, tmp_path)
    assert not marker.exists(), "loading the weights ran code"
    if kind == "pickle-beside-weights":
        assert done.returncode == 0, done.stderr
        return
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "Warning" not in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "w.pth" in lines[0]
    assert "Expected" in lines[0] or "state dict" in lines[0]


def _build_on_counter(path: Path) -> None:
    """A zip checkpoint whose pickle sets ``collections.Counter.most_common`` (BUILD on a class)."""
    import struct
    import zipfile

    torch.save({"w": torch.zeros(2)}, path.with_suffix(".good"))

    def text(s: str) -> bytes:
        raw = s.encode()
        return b"X" + struct.pack("<I", len(raw)) + raw

    payload = (
        b"\x80\x02ccollections\nCounter\nN}("
        + text("most_common")
        + b"ccollections\nOrderedDict\n"
        + b"u\x86b0}("
        + text("w")
        + b"K\x01u."
    )
    with zipfile.ZipFile(path.with_suffix(".good")) as source, zipfile.ZipFile(path, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            target.writestr(item, payload if item.filename.endswith("data.pkl") else data)


def test_a_checkpoint_cannot_patch_the_running_program(tmp_path):
    import collections

    from camcli.models.checkpoints import read_checkpoint

    _build_on_counter(tmp_path / "evil.pth")
    assert read_checkpoint(tmp_path / "evil.pth") == {"w": 1}
    assert collections.Counter("abca").most_common(1) == [("a", 2)]


def test_legacy_format_with_objects_is_refused_with_advice(tmp_path):
    import argparse

    from camcli.errors import ModelError
    from camcli.models.checkpoints import read_checkpoint

    torch.save(
        {"state_dict": {"w": torch.zeros(2)}, "args": argparse.Namespace(lr=0.1)},
        tmp_path / "old.pth",
        _use_new_zipfile_serialization=False,
    )
    with pytest.raises(ModelError, match="legacy format"):
        read_checkpoint(tmp_path / "old.pth")
    torch.save({"w": torch.ones(2)}, tmp_path / "plain.pth", _use_new_zipfile_serialization=False)
    assert torch.equal(read_checkpoint(tmp_path / "plain.pth")["w"], torch.ones(2))


def test_a_folder_of_yours_used_as_output_never_hides_your_images(sample_copy, tmp_path, run_cli):
    """-o pointing into your data writes image folders there; later runs skip those, not your images."""
    sub = sample_copy / "a"
    sub.mkdir()
    (sample_copy / "chelsea.png").rename(sub / "chelsea.png")
    assert run_cli("explain", str(sub), "-o", str(sample_copy), *FAST).exit_code == 0  # writes images/chelsea.png/
    assert not (sample_copy / ".camcli-output").exists()  # your folder is not marked as camcli's
    out = tmp_path / "out2"
    assert run_cli("explain", str(sample_copy), "-o", str(out), *FAST).exit_code == 0
    done = sorted(json.loads(line)["path"] for line in (out / "summary.jsonl").read_text().splitlines())
    assert done == [str(sub / "chelsea.png"), str(sample_copy / "coffee.png")]  # images, never overlay folders
    # An output folder named directly is camcli's own: nothing in it is an image to explain.
    result = run_cli("explain", str(out / "coffee.png"), "-o", str(tmp_path / "out3"), *FAST)
    assert result.exit_code == 2
    assert "No images found" in result.output
