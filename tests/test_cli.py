"""The CLI end to end on the sample images with the bundled real weights."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import independent
import numpy as np
import pytest
from PIL import Image

from camcli import full_map

# Hand-marked points on chelsea.png (451×300): both eyes and the nose.
CAT_POINTS = [(165, 110), (320, 125), (255, 230)]


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory, samples, run_cli):
    out = tmp_path_factory.mktemp("out")
    result = run_cli("explain", samples, "--out", out, "--quiet", catch_exceptions=False)
    return result, out


def load(out: Path, rel: str) -> dict:
    return json.loads((out / rel / "explanation.json").read_text())


def test_sample_run_succeeds(sample_run, samples):
    result, out = sample_run
    assert result.exit_code == 0, result.output
    images = sorted(p.name for p in samples.iterdir() if p.suffix in (".png", ".jpg"))
    assert sorted(p.parent.name for p in out.glob("*/explanation.json")) == images
    lines = [json.loads(line) for line in (out / "summary.jsonl").read_text().splitlines()]
    assert [Path(line["path"]).name for line in lines] == images
    assert all(line["status"] == "ok" and (out / line["json"]).is_file() for line in lines)
    run_doc = json.loads((out / "run.json").read_text())
    assert run_doc["counts"] == {"ok": len(images), "failed": 0, "skipped": 0, "total": len(images)}
    assert run_doc["model"]["weights"].startswith("bundled:")
    assert run_doc["status"] == "complete"


def test_cat_is_found_and_boxed(sample_run):
    _, out = sample_run
    doc = load(out, "chelsea.png")
    assert 281 <= doc["predictions"][0]["class_index"] <= 285
    top = next(e for e in doc["explanations"] if e["rank"] == 1)
    x0, y0, x1, y1 = top["bbox"]
    for x, y in CAT_POINTS:
        assert x0 <= x < x1
        assert y0 <= y < y1
    assert x0 <= top["peak"][0] < x1
    assert y0 <= top["peak"][1] < y1


def test_box_is_the_papers_rule_on_the_saved_raw_map(sample_run):
    """15% of the upsampled map's own max (not of a rescaled map), the largest 8-connected segment (found
    here by OpenCV), its corners mapped to the original image through the recorded crop box."""
    import cv2
    import torch

    _, out = sample_run
    for name in ("coffee.png", "chelsea.png", "rocket.jpg"):
        doc = load(out, name)
        for exp in doc["explanations"]:
            raw = torch.from_numpy(np.load(out / name / exp["files"]["raw_map"]))
            up = torch.nn.functional.interpolate(
                raw[None, None], size=tuple(doc["model"]["input_size"]), mode="bilinear", align_corners=False
            )[0, 0].numpy()
            assert up.max() > 0
            mask = (up >= 0.15 * up.max()).astype(np.uint8)
            _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
            segments = stats[1:]  # label 0 is the background
            largest = segments[:, cv2.CC_STAT_AREA].max()
            expected = [  # segments of equal size: either may be boxed
                independent.box_on_original((int(x), int(y), int(x + w), int(y + h)), doc)
                for x, y, w, h, area in segments
                if area == largest
            ]
            assert tuple(exp["bbox"]) in expected, (name, exp["class_index"])


def test_espresso(sample_run):
    _, out = sample_run
    assert load(out, "coffee.png")["predictions"][0]["class_index"] == 967


def test_json_and_files_are_as_documented(sample_run):
    _, out = sample_run
    doc = load(out, "chelsea.png")
    assert doc["schema_version"] == 1
    assert doc["status"] == "ok"
    assert doc["error"] is None
    assert doc["source"]["width"] == 451
    assert doc["source"]["height"] == 300
    assert len(doc["source"]["sha256"]) == 64
    assert doc["model"] == {
        "name": "tf_efficientnet_lite0",
        "weights": doc["model"]["weights"],
        "target_layer": "bn2",
        "input_size": [224, 224],
        "num_classes": 1000,
        "head": "softmax",
        "task": "classify",
        "layers": [{"name": "bn2", "layout": "nchw", "grid": [7, 7]}],
    }
    assert len(doc["preprocess"]["crop_box"]) == 4
    assert len(doc["predictions"]) == 5
    probs = [p["probability"] for p in doc["predictions"]]
    assert probs == sorted(probs, reverse=True)
    assert [e["rank"] for e in doc["explanations"]] == [1, 2, 3]
    for exp in doc["explanations"]:
        assert exp["method"] == "gradcam"
        assert set(exp["files"]) == {"overlay", "raw_map"}
        raw = np.load(out / "chelsea.png" / exp["files"]["raw_map"])
        full = full_map(out / "chelsea.png" / "explanation.json", exp)
        assert raw.dtype == np.float32
        assert raw.shape == (7, 7)
        assert raw.min() >= 0
        assert full.dtype == np.float32
        assert full.shape == (300, 451)
        assert full.min() >= 0
        assert full.max() <= 1
        assert full.max() > 0.95
        with Image.open(out / "chelsea.png" / exp["files"]["overlay"]) as overlay:
            assert overlay.size == (451, 300)
    # the model never saw the left and right margins of the 3:2 photo: map 0, overlay dimmed
    full = full_map(out / "chelsea.png" / "explanation.json", 0)
    assert full[:, :90].max() == 0
    assert full[:, 360:].max() == 0
    original = np.asarray(Image.open(Path(doc["source"]["path"])).convert("RGB"), np.float32)
    overlay = np.asarray(Image.open(out / "chelsea.png" / doc["explanations"][0]["files"]["overlay"]), np.float32)
    assert overlay[:, :80].mean() < 0.5 * original[:, :80].mean()


def test_bad_file_fails_alone(sample_copy, tmp_path, run_cli):
    (sample_copy / "broken.jpg").write_text("this is not a jpeg")
    out = tmp_path / "out"
    result = run_cli("explain", sample_copy, "--out", out, "--top-k", "1", catch_exceptions=False)
    assert result.exit_code == 1
    bad = load(out, "broken.jpg")
    assert bad["status"] == "error"
    assert bad["error"]["type"] == "ImageError"
    assert "not a readable image" in bad["error"]["message"].lower()
    assert load(out, "coffee.png")["status"] == "ok"
    run_doc = json.loads((out / "run.json").read_text())
    assert run_doc["counts"]["failed"] == 1
    assert run_doc["failures"][0]["path"].endswith("broken.jpg")


def test_classes_by_name_and_index(sample_copy, tmp_path, run_cli):
    out = tmp_path / "out"
    result = run_cli(
        "explain",
        sample_copy / "coffee.png",
        "--out",
        out,
        "-q",
        "--class",
        "ESPRESSO",
        "--class",
        "504",
        "--top-k",
        "2",
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    exps = load(out, "coffee.png")["explanations"]
    assert [(e["class_index"], e["rank"]) for e in exps] == [(967, None), (504, None), (968, 2)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "resnet_18"], "Did you mean"),
        (["--model", "resnet18"], "--weights"),
        (["--class", "espreso"], "'espresso'"),
        (["--layer", "bn_2"], "bn2"),
        (["--top-k", "0"], "Nothing to explain"),
        (["--device", "cuda:7"], "--device cpu"),
    ],
)
def test_usage_errors_exit_2_with_advice(args, message, sample_copy, tmp_path, empty_caches, run_cli):
    if "cuda:7" in args:
        import torch

        if torch.cuda.device_count() > 7:
            pytest.skip("machine has 8+ GPUs")
    result = run_cli("explain", sample_copy, "--out", tmp_path / "o", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_missing_input_exits_2(tmp_path, run_cli):
    result = run_cli("explain", tmp_path / "nope", "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_layers_and_models_commands(run_cli):
    result = run_cli("layers", catch_exceptions=False)
    assert result.exit_code == 0
    assert any(line.startswith("* bn2") and "1×1280×7×7" in line for line in result.output.splitlines())
    result = run_cli("layers", "tv:resnet18", catch_exceptions=False)
    assert "* layer4 " in result.output
    result = run_cli("models", "resnet1*", catch_exceptions=False)
    assert "resnet18" in result.output.split()
    assert run_cli("models", "--source", "tv", "vgg1?", catch_exceptions=False).output.split()[0].startswith("tv:vgg1")


def test_console_script(tmp_path, samples):
    exe = Path(sys.executable).with_name("camcli")
    command = [str(exe)] if exe.exists() else [shutil.which("camcli") or "camcli"]
    done = subprocess.run(
        [*command, "explain", str(samples / "coffee.png"), "--out", str(tmp_path / "o"), "--top-k", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""  # progress and summary go to stderr
    assert "1 image: 1 ok" in done.stderr


def test_all_methods(sample_copy, tmp_path, run_cli):
    out = tmp_path / "out"
    result = run_cli(
        "explain",
        sample_copy / "chelsea.png",
        "--out",
        out,
        "-q",
        "--top-k",
        "1",
        "--method",
        "gradcam,counterfactual",
        "--method",
        "guided-backprop,guided-gradcam",
        "--save",
        "overlay,map,raw_map",
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    folder = out / "chelsea.png"
    exps = load(out, "chelsea.png")["explanations"]
    assert [e["method"] for e in exps] == ["gradcam", "counterfactual", "guided-backprop", "guided-gradcam"]
    assert len({e["class_index"] for e in exps}) == 1
    for exp in exps[:2]:
        assert set(exp["files"]) == {"overlay", "map", "raw_map"}
        assert np.load(folder / exp["files"]["raw_map"]).shape == (7, 7)
        assert np.load(folder / exp["files"]["map"]).shape == (300, 451)
    for exp in exps[2:]:
        assert set(exp["files"]) == {"image", "raw_map"}
        assert exp["bbox"] is None
        assert np.load(folder / exp["files"]["raw_map"]).shape == (3, 224, 224)
        with Image.open(folder / exp["files"]["image"]) as image:
            assert image.size == (451, 300)
            assert image.mode == "RGB"
            assert image.getpixel((5, 5)) == (128, 128, 128)  # outside the crop: neutral grey
    raw_gb = np.load(folder / exps[2]["files"]["raw_map"])
    raw_ggc = np.load(folder / exps[3]["files"]["raw_map"])
    cam = np.load(folder / exps[0]["files"]["raw_map"])
    import torch

    up = torch.nn.functional.interpolate(
        torch.from_numpy(cam)[None, None], size=(224, 224), mode="bilinear", align_corners=False
    )[0, 0].numpy()
    assert np.allclose(raw_ggc, raw_gb * up[None], atol=1e-6 * np.abs(raw_ggc).max())


def test_unknown_method_exits_2(sample_copy, tmp_path, run_cli):
    from camcli.methods import names as method_names

    assert "no-such-method" not in method_names()
    result = run_cli("explain", sample_copy, "-o", tmp_path / "o", "--method", "gradcam,no-such-method")
    assert result.exit_code == 2
    assert "Unknown method 'no-such-method'" in result.output
    assert all(name in result.output for name in method_names())


def test_guided_with_reduced_precision(sample_copy, tmp_path, run_cli):
    out = tmp_path / "out"
    result = run_cli(
        "explain",
        sample_copy / "coffee.png",
        "-o",
        out,
        "-q",
        "--top-k",
        "2",
        "--precision",
        "bf16",
        "--method",
        "gradcam,guided-gradcam",
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    for exp in load(out, "coffee.png")["explanations"]:
        assert np.isfinite(np.load(out / "coffee.png" / exp["files"]["raw_map"])).all()
    result = run_cli("explain", sample_copy, "-o", out, "--precision", "fp16", "--device", "cpu")
    assert result.exit_code == 2
    assert "bf16" in result.output


def test_one_unwritable_overlay_fails_that_image_only(sample_copy, tmp_path, run_cli):
    Image.new("RGB", (17000, 200), "white").save(sample_copy / "wide.png")  # WebP's limit is 16383
    out = tmp_path / "out"
    result = run_cli(
        "explain", sample_copy, "-o", out, "-q", "--top-k", "1", "--overlay-format", "webp", catch_exceptions=False
    )
    assert result.exit_code == 1
    wide = load(out, "wide.png")
    assert wide["status"] == "error"
    assert wide["error"]["type"] == "WriteError"
    assert load(out, "coffee.png")["status"] == "ok"
    assert (out / "coffee.png" / load(out, "coffee.png")["explanations"][0]["files"]["overlay"]).suffix == ".webp"
    assert json.loads((out / "run.json").read_text())["counts"] == {"ok": 2, "failed": 1, "skipped": 0, "total": 3}


PEAK_RSS = """
import resource, sys
from camcli.cli import main
try:
    main()  # click reads the arguments from sys.argv
except SystemExit as stop:
    code = stop.code
print("peak_kib", code, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _peak_mib(*args: str) -> float:
    """A fresh interpreter's peak resident memory over one ``camcli`` run: nothing else raised it."""
    done = subprocess.run([sys.executable, "-c", PEAK_RSS, *args], capture_output=True, text=True, check=True)
    _, code, kib = done.stdout.split()[-3:]
    assert code in ("0", "None"), done.stderr
    return int(kib) / 1024


def test_thin_image_stays_small(tmp_path):
    """A 1×5000 strip is cut, then resized: resizing the whole strip first would take ~1.8 GB."""
    for name, size in (("square.png", (64, 64)), ("strip.png", (1, 5000))):
        (tmp_path / name[:-4]).mkdir()
        Image.new("RGB", size, "gray").save(tmp_path / name[:-4] / name)
    common = ("-q", "--top-k", "1", "--batch-size", "1")
    square = _peak_mib("explain", str(tmp_path / "square"), "-o", str(tmp_path / "o1"), *common)
    strip = _peak_mib("explain", str(tmp_path / "strip"), "-o", str(tmp_path / "o2"), *common)
    assert strip - square < 300
    assert full_map(tmp_path / "o2" / "strip.png" / "explanation.json", 0).shape == (5000, 1)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: (d / "notes.heic").write_bytes(b"x"), "No images found"),
        (lambda d: (d / "labels.txt").write_bytes(b"caf\xe9\n"), "UTF-8"),
        (lambda d: (d / "run.json").write_bytes(b"x"), "camcli's own run file"),
    ],
)
def test_more_usage_errors(make, message, tmp_path, run_cli):
    folder = tmp_path / "in"
    folder.mkdir()
    make(folder)
    args = ["explain", str(folder), "-o", str(tmp_path / "o")]
    if (folder / "labels.txt").exists():
        Image.new("RGB", (32, 32)).save(folder / "a.png")
        args += ["--labels", str(folder / "labels.txt"), "--num-classes", "2", "-m", "resnet18", "--random-weights"]
    if (folder / "run.json").exists():
        args[1] = str(folder / "run.json")
    result = run_cli(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_save_selects_outputs(sample_copy, tmp_path, run_cli):
    out = tmp_path / "out"
    result = run_cli(
        "explain",
        sample_copy / "coffee.png",
        "-o",
        out,
        "-q",
        "--top-k",
        "1",
        "--save",
        "raw_map",
        "--overlay-format",
        "jpg",
        catch_exceptions=False,
    )
    assert result.exit_code == 0
    exp = load(out, "coffee.png")["explanations"][0]
    assert set(exp["files"]) == {"raw_map"}
    assert sorted(p.name for p in (out / "coffee.png").iterdir()) == ["explanation.json", exp["files"]["raw_map"]]
    bad = run_cli("explain", sample_copy, "-o", out, "--save", "heatmap")
    assert bad.exit_code == 2
    assert "overlay,map,raw_map" in bad.output


def test_stdin_and_odd_file_names(sample_copy, tmp_path, run_cli):
    import os

    odd = [sample_copy / "café ☕.png", Path(os.fsdecode(bytes(sample_copy) + b"/caf\xe9.png"))]
    shutil.copy(sample_copy / "coffee.png", odd[0])
    shutil.copy(sample_copy / "coffee.png", odd[1])
    out = tmp_path / "out"
    listing = b"".join(os.fsencode(p) + b"\n" for p in odd)  # as `find` prints them: raw bytes
    result = run_cli("explain", "-", "-o", out, "--top-k", "1", "--json", "-q", input=listing)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["source"]["path"].rsplit("/", 1)[1] for line in lines] == ["café ☕.png", "caf\\xe9.png"]
    assert (out / "café ☕.png" / "explanation.json").is_file()
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == [
        ".camcli-lock",
        ".camcli-output",
        "run.json",
        "summary.jsonl",
    ]
    assert len([p for p in out.iterdir() if p.is_dir()]) == 2  # one folder per image


def test_unusable_output_location_exits_2_without_traceback(sample_copy, tmp_path, run_cli):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder should go")
    for out in (blocker, blocker / "sub"):
        result = run_cli("explain", sample_copy, "-o", out, "-q")
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        assert "is a file" in result.output or "Cannot write to output folder" in result.output
