"""Hostile inputs on the surfaces that read camcli's own outputs, annotations and users' models (issue 25):
nothing hangs, nothing is lost, nothing silently wrong, and every bad file is a clear error (exit 2) or a
failed image, never an internal error (exit 3)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from camcli.lock import RunLock

from background import Background
from hostile import annotation_files, factories, model_folders, plant_in_run

BIN = Path(sys.executable).parent
ARGS = ["-q", "--top-k", "2", "--save", "raw_map"]


def camcli(*args: object, cwd: Path | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """A real camcli process: a hang is a timeout here, not a stuck test run."""
    return subprocess.run(
        [str(BIN / "camcli"), *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=cwd
    )


def strict(text: str) -> object:
    """JSON as a strict parser (JavaScript's JSON.parse) reads it: no NaN, no Infinity."""

    def refuse(name: str) -> object:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def images(tmp_path_factory, samples) -> Path:
    """12 images: copies of the samples under other names, and their boxes (boxes.csv, paths relative)."""
    root = tmp_path_factory.mktemp("images")
    with (samples / "boxes.csv").open(newline="") as fh:
        boxes = {row["path"]: row for row in csv.DictReader(fh)}
    files = sorted(p for p in samples.iterdir() if p.suffix in (".png", ".jpg"))
    with (root / "boxes.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, ["path", "class", "x0", "y0", "x1", "y1"])
        writer.writeheader()
        for i in range(12):
            source = files[i % len(files)]
            shutil.copy(source, root / f"{i:02d}_{source.name}")
            writer.writerow({**boxes[source.name], "path": f"{i:02d}_{source.name}"})
    return root


@pytest.fixture
def few(images, tmp_path) -> Path:
    """Four of the images, with their boxes: for the tests that run camcli several times."""
    root = tmp_path / "few"
    root.mkdir()
    rows = (images / "boxes.csv").read_text().splitlines()
    for row in rows[1:5]:
        shutil.copy(images / row.split(",")[0], root)
    (root / "boxes.csv").write_text("\n".join(rows[:5]) + "\n")
    return root


@pytest.fixture(scope="module")
def explained(images, tmp_path_factory, run_cli) -> Path:
    out = tmp_path_factory.mktemp("run")
    assert run_cli("explain", images, "-o", out, *ARGS).exit_code == 0
    return out


def test_a_hostile_run_folder_never_hangs_or_crashes_its_readers(explained, images, tmp_path):
    planted = tmp_path / "planted"
    shutil.copytree(explained, planted)
    cases = plant_in_run(planted)
    assert len(cases) == 11
    annotations = images / "boxes.csv"

    evaluated = camcli("evaluate", "--from", planted, "--annotations", annotations, "-o", tmp_path / "ev")
    assert evaluated.returncode in (0, 4), evaluated.stderr
    metrics = strict((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["unreadable"] == len(cases)  # each broken image counted, none silently gone
    assert metrics["images"] == 12
    assert "not scored" in evaluated.stderr

    report = camcli("report", planted)
    assert report.returncode == 0, report.stderr
    compared = camcli("compare", explained, planted, "-o", tmp_path / "cmp")
    assert compared.returncode == 0, compared.stderr
    doc = strict((tmp_path / "cmp" / "compare.json").read_text())
    assert len(doc["images"]) + len(doc["failed"]) >= 12 - 2  # the two missing JSONs are images of A only


def test_the_report_reads_only_regular_files_a_record_names(explained, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(explained, out)
    os.mkfifo(tmp_path / "fifo")
    docs = sorted(out.glob("*/explanation.json"))
    for doc_path, source in zip(docs, ["/dev/zero", str(tmp_path / "fifo"), "/etc"], strict=False):
        doc = json.loads(doc_path.read_text())
        doc["source"]["path"] = source
        doc_path.write_text(json.dumps(doc))
    done = camcli("report", out, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (out / "report" / "index.html").is_file()


@pytest.mark.slow
def test_sigterm_during_faithfulness_stops_soon_and_resumes(few, tmp_path):
    out = tmp_path / "out"
    args = ["evaluate", str(few), "--annotations", str(few / "boxes.csv"), "-o", str(out)]
    args += ["--faithfulness", "--steps", "10", "--top-k", "1", "--save", "raw_map"]
    run = Background(out, *args)
    deadline = time.time() + 240
    while "faithfulness of" not in run.stderr():
        assert run.poll() is None, run.stderr()
        assert time.time() < deadline
        time.sleep(0.05)
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=180) == 130, run.stderr()
    assert not (out / "metrics.json").exists()
    again = Background(tmp_path / "again", *args)
    assert again.wait(timeout=300) == 0, again.stderr()
    assert strict((out / "metrics.json").read_text())["methods"]["gradcam"]["deletion_auc"] is not None


def test_sizes_without_a_bound_are_usage_errors(images, tmp_path, run_cli):
    files = annotation_files(tmp_path / "annotations", images)
    huge_mask = run_cli("evaluate", images, "--masks", files["huge_mask"], "-o", tmp_path / "m", *ARGS)
    assert huge_mask.exit_code == 2, huge_mask.output
    assert "--max-pixels" in huge_mask.output
    size = run_cli("explain", images, "--input-size", "100000", "-o", tmp_path / "s")
    assert size.exit_code == 2
    assert "4096" in size.output


def test_one_folder_has_one_writer_whatever_the_command_or_shard(explained, images, tmp_path, run_cli):
    out = tmp_path / "out"
    shutil.copytree(explained, out)
    with RunLock(out):  # as a running `camcli evaluate -o OUT` holds it
        shard = run_cli("explain", images, "-o", out, "--shard", "0/2", *ARGS)
        assert shard.exit_code == 2
        assert "is writing to" in shard.output
    with RunLock(out, (0, 2)):  # a running shard
        source = run_cli("evaluate", "--from", out, "--annotations", images / "boxes.csv")
        assert source.exit_code == 2
        assert "Shards 0/2" in source.output
        other_split = run_cli("explain", images, "-o", out, "--shard", "1/3", *ARGS)
        assert other_split.exit_code == 2
        assert "another split" in other_split.output


def test_annotations_that_match_nothing_are_reported_and_never_pass_a_gate(explained, images, tmp_path, run_cli):
    files = annotation_files(tmp_path / "annotations", images)
    common = ["evaluate", "--from", explained, "-o", tmp_path / "ev"]
    misspelled = run_cli(*common, "--annotations", files["misspelled.csv"], "--min-pointing-game", "0")
    assert "2 annotation(s) match no explained image" in misspelled.output
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert len(metrics["unmatched_annotations"]) == 2
    assert metrics["annotated"] == 1
    for name in ("header_only.csv", "escaping.csv"):
        found = run_cli(*common, "--annotations", files[name], "--min-pointing-game", "0")
        assert found.exit_code == 4, found.output  # zero annotated images: no gate passes
        gates = json.loads((tmp_path / "ev" / "metrics.json").read_text())["gates"]
        assert gates[0]["reason"] == "no image matched the annotations"
    escaping = json.loads((tmp_path / "ev" / "metrics.json").read_text())["unmatched_annotations"]
    assert any("/etc/passwd" in u for u in escaping)
    assert any(u.endswith("x.png") for u in escaping)


@pytest.mark.slow
def test_evaluating_a_run_from_elsewhere_finds_its_images_and_checks_them(few, tmp_path, run_cli):
    work = tmp_path / "work"
    shutil.copytree(few, work / "images")
    run = camcli("explain", "images", "-o", "out", *ARGS, cwd=work)
    assert run.returncode == 0, run.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = camcli(
        "evaluate", "--from", work / "out", "--annotations", work / "images" / "boxes.csv", "-o", "ev", cwd=elsewhere
    )
    assert done.returncode in (0, 4), done.stderr
    metrics = strict((elsewhere / "ev" / "metrics.json").read_text())
    assert metrics["annotated"] == 4  # relative paths resolved where the run was started

    shutil.copy(work / "images" / "01_chelsea.png", work / "images" / "00_astronaut.png")  # another picture
    faithful = camcli(
        "evaluate",
        "--from",
        work / "out",
        "--annotations",
        work / "images" / "boxes.csv",
        "-o",
        "ev2",
        "--faithfulness",
        "--steps",
        "4",
        cwd=elsewhere,
    )
    assert faithful.returncode in (0, 4), faithful.stderr
    changed = strict((elsewhere / "ev2" / "metrics.json").read_text())["source_changed"]
    assert [Path(p).name for p in changed] == ["00_astronaut.png"]

    wrong_model = camcli(
        "evaluate",
        "--from",
        work / "out",
        "--annotations",
        work / "images" / "boxes.csv",
        "--faithfulness",
        "-m",
        "resnet18",
        "--random-weights",
        "-o",
        "ev3",
        cwd=elsewhere,
    )
    assert wrong_model.returncode == 2
    assert "-m tf_efficientnet_lite0" in wrong_model.stderr


def test_labels_come_from_the_run_not_from_its_predictions(explained, images, tmp_path, run_cli):
    daisy = tmp_path / "daisy.csv"
    daisy.write_text(f"path,class,x0,y0,x1,y1\n{images / '04_flower.jpg'},daisy,160,80,450,365\n")
    found = run_cli("evaluate", "--from", explained, "--annotations", daisy, "-o", tmp_path / "ev")
    assert found.exit_code in (0, 4), found.output
    crane = tmp_path / "crane.csv"
    crane.write_text(f"path,class,x0,y0,x1,y1\n{images / '04_flower.jpg'},crane,160,80,450,365\n")
    ambiguous = run_cli("evaluate", "--from", explained, "--annotations", crane, "-o", tmp_path / "ev")
    assert ambiguous.exit_code == 2
    assert "134" in ambiguous.output
    assert "517" in ambiguous.output


def test_bad_annotation_files_are_usage_errors(explained, images, tmp_path, run_cli):
    files = annotation_files(tmp_path / "annotations", images)
    for name, words in [
        ("duplicate_ids.json", "repeats the id 7"),
        ("nested.json", "nested too deeply"),
        ("voc_superscript", "not a positive whole number"),
    ]:
        found = run_cli("evaluate", "--from", explained, "--annotations", files[name], "-o", tmp_path / "ev")
        assert found.exit_code == 2, (name, found.output)
        assert words in found.output, (name, found.output)
    gate = run_cli("evaluate", "--from", explained, "--annotations", images / "boxes.csv", "--min-energy", "bogus:0.5")
    assert gate.exit_code == 2
    assert "bogus" in gate.output


def test_resume_sees_new_weights_in_a_model_folder(images, tmp_path, run_cli):
    folders = model_folders(tmp_path / "models")
    model = tmp_path / "mine"
    shutil.copytree(folders["good"], model)
    args = ["explain", images / "00_astronaut.png", "-m", model, "-o", tmp_path / "out", *ARGS]
    assert run_cli(*args).exit_code == 0
    assert run_cli(*args).exit_code == 0
    assert json.loads((tmp_path / "out" / "run.json").read_text())["counts"]["skipped"] == 1
    import timm

    timm.models.save_for_hf(timm.create_model("test_resnet", num_classes=3), tmp_path / "other")
    [weights] = [p for p in (tmp_path / "other").iterdir() if p.name != "config.json"]
    shutil.copy(weights, model / weights.name)
    assert run_cli(*args).exit_code == 0
    assert json.loads((tmp_path / "out" / "run.json").read_text())["counts"]["ok"] == 1  # redone


def test_hostile_model_folders_are_usage_errors(images, tmp_path, run_cli):
    folders = model_folders(tmp_path / "models")
    expected = {
        "malformed": "JSON",
        "list": "not the object",
        "no_architecture": "not a timm architecture",
        "os_system": "not a timm architecture",
        "path_architecture": "not a timm architecture",
        "zero_classes": "at least one class",
        "negative_classes": "at least one class",
        "wrong_labels": "2 label_names for 3 classes",
        "huge_input": "outside 1 to 4 channels",
    }
    for name, words in expected.items():
        found = run_cli("explain", images / "00_astronaut.png", "-m", folders[name], "-o", tmp_path / name)
        assert found.exit_code == 2, (name, found.output)
        assert words in found.output, (name, found.output)


def test_factories_that_misbehave(images, tmp_path):
    path = factories(tmp_path / "code")
    image = images / "00_astronaut.png"
    chatty = camcli("explain", image, "-m", f"{path}:chatty", "--random-weights", "-o", tmp_path / "a", "--json", "-q")
    assert chatty.returncode == 0, chatty.stderr
    assert [strict(line)["status"] for line in chatty.stdout.splitlines()] == ["ok"]  # nothing else on stdout
    assert "hello from the factory" in chatty.stderr
    for name, words in [("quitter", "SystemExit"), ("no_outputs", "at least one class")]:
        found = camcli("explain", image, "-m", f"{path}:{name}", "--random-weights", "-o", tmp_path / name)
        assert found.returncode == 2, (name, found.stderr)
        assert words in found.stderr, (name, found.stderr)


def test_nan_weights_fail_the_image_and_every_json_stays_strict(images, tmp_path):
    path = factories(tmp_path / "code")
    out = tmp_path / "out"
    done = camcli(
        "explain",
        images / "00_astronaut.png",
        "-m",
        f"{path}:nan_weights",
        "--random-weights",
        "-o",
        out,
        "--json",
        "-q",
    )
    assert done.returncode == 1, done.stderr
    [line] = done.stdout.splitlines()
    doc = strict(line)
    assert doc["status"] == "error"
    assert "non-finite" in doc["error"]["message"]
    for path in [*out.rglob("*.json"), *out.rglob("*.jsonl")]:
        for text in path.read_text().splitlines() if path.suffix == ".jsonl" else [path.read_text()]:
            strict(text)


def test_an_occlusion_window_larger_than_the_input_is_a_usage_error(images, tmp_path, run_cli):
    found = run_cli(
        "explain",
        images / "00_astronaut.png",
        "--method",
        "occlusion",
        "--occlusion-window",
        "100000",
        "--occlusion-stride",
        "16",
        "-o",
        tmp_path / "o",
    )
    assert found.exit_code == 2
    assert "larger than the model input" in found.output


def test_weights_files_that_cannot_be_loaded_say_so_in_one_line(tmp_path, images, run_cli):
    import pickle

    import torch

    meta = tmp_path / "meta.pth"
    torch.save({"fc.weight": torch.empty(3, 4, device="meta")}, meta)
    found = run_cli("explain", images / "00_astronaut.png", "-m", "resnet18", "--weights", meta, "-o", tmp_path / "o")
    assert found.exit_code == 2
    assert "device 'meta'" in found.output
    legacy = tmp_path / "legacy.pth"
    with legacy.open("wb") as fh:
        pickle.dump({"state_dict": {"w": np.zeros(2)}, "args": object()}, fh, protocol=4)
    refused = run_cli(
        "explain", images / "00_astronaut.png", "-m", "resnet18", "--weights", legacy, "-o", tmp_path / "o"
    )
    assert refused.exit_code == 2
    assert "torch.save(torch.load(PATH, weights_only=False)['state_dict'], 'weights.pth')" in refused.output
    assert "UserWarning" not in refused.output
