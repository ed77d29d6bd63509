"""The hostile-input folder end to end: each file gets its expected status, the run goes on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from camcli import full_map

from hostile import make


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory, run_cli):
    folder = tmp_path_factory.mktemp("hostile")
    expected = make(folder)
    out = tmp_path_factory.mktemp("out")
    result = run_cli("explain", folder, "-o", out, "-q", "--top-k", "1", "--overlay-format", "jpg")
    return expected, out, result


def test_every_file_gets_its_expected_status(hostile_run):
    expected, out, result = hostile_run
    assert result.exit_code == 1, result.output  # some failed, none stopped the run
    got = {name: json.loads((out / name / "explanation.json").read_text())["status"] for name in expected}
    assert got == expected
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete"
    assert run["counts"]["total"] == len(expected)
    assert sorted(f["path"].rsplit("/", 1)[1] for f in run["failures"]) == sorted(
        n for n, s in expected.items() if s == "error"
    )


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("zero_bytes.jpg", "not a readable image"),
        ("text_named.jpg", "not a readable image"),
        ("truncated.jpg", "truncated"),
        ("truncated.png", "truncated"),
        ("bomb.png", "--max-pixels"),
        ("fifo.jpg", "not a regular file"),
    ],
)
def test_errors_say_why(hostile_run, name, words):
    _, out, _ = hostile_run
    doc = json.loads((out / name / "explanation.json").read_text())
    assert words in doc["error"]["message"].lower()
    assert doc["predictions"] == []
    assert doc["explanations"] == []


def test_odd_images_are_explained_as_a_viewer_shows_them(hostile_run):
    _, out, _ = hostile_run
    rotated = json.loads((out / "exif_rotated.jpg" / "explanation.json").read_text())
    assert (rotated["source"]["width"], rotated["source"]["height"]) == (300, 451)
    with Image.open(out / "exif_rotated.jpg" / rotated["explanations"][0]["files"]["overlay"]) as overlay:
        assert overlay.size == (300, 451)
    gray = json.loads((out / "gray16.png" / "explanation.json").read_text())
    assert gray["source"]["mode"].startswith("I")
    gif = json.loads((out / "animated.gif" / "explanation.json").read_text())
    assert 281 <= gif["predictions"][0]["class_index"] <= 285  # the first frame is the cat
    for name, shape in [("one_pixel.png", (1, 1)), ("thin_1x3000.png", (3000, 1)), ("thin_3000x2.png", (2, 3000))]:
        json.loads((out / name / "explanation.json").read_text())
        assert full_map(out / name / "explanation.json", 0).shape == shape


def test_max_pixels_can_be_raised(tmp_path, run_cli):
    Image.new("1", (12_000, 12_000)).save(tmp_path / "big.png")
    result = run_cli(
        "explain",
        tmp_path / "big.png",
        "-o",
        tmp_path / "o",
        "-q",
        "--top-k",
        "1",
        "--max-pixels",
        "200000000",
        "--save",
        "raw_map",
    )
    assert result.exit_code == 0, result.output


def test_permission_denied_fails_that_image(tmp_path, samples):
    """Root reads any file, so when the tests run as root the child drops to 'nobody' before it
    reads; either way the real open() is refused by the kernel."""
    import os
    import shutil
    import subprocess
    import sys
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="camcli-perm-"))
    try:
        os.chmod(folder, 0o755)
        shutil.copy(samples / "coffee.png", folder / "locked.png")
        os.chmod(folder / "locked.png", 0)
        code = (
            "import os, sys; from pathlib import Path, PurePosixPath; from camcli.models import DataConfig; "
            "from camcli.preprocess import prepare; from camcli.records import ImageItem; "
            "os.geteuid() == 0 and (os.setgid(65534), os.setuid(65534)); "
            "d = DataConfig((224, 224), 256, 'bilinear', (0.5,) * 3, (0.5,) * 3); "
            "r = prepare(ImageItem(Path(sys.argv[1]), PurePosixPath('locked.png')), d); "
            "print(type(r).__name__, r.message)"
        )
        done = subprocess.run(
            [sys.executable, "-c", code, str(folder / "locked.png")],
            capture_output=True,
            text=True,
            cwd=str(Path(__file__).resolve().parent.parent),
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("Failure")
        assert "Permission denied" in done.stdout
    finally:
        shutil.rmtree(folder, ignore_errors=True)
