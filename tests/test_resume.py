"""Interruptions and --resume, with real camcli processes.

SIGKILL at random points (triggered by progress, not by the clock, so each seed lands mid-run),
then the same command again: every explanation.json and summary line must equal, byte for byte,
those of an uninterrupted run, and no partial file may remain.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import time
from pathlib import Path

import pytest

from background import Background

ARGS = ["--top-k", "2", "--batch-size", "4", "--overlay-format", "jpg", "-q"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory, samples) -> Path:
    """20 images: the samples, five of them twice more under other names, plus one corrupt file."""
    root = tmp_path_factory.mktemp("inputs")
    files = sorted(p for p in samples.iterdir() if p.suffix in (".png", ".jpg"))
    for i in range(19):
        shutil.copy(files[i % len(files)], root / f"{i:02d}_{files[i % len(files)].name}")
    (root / "07_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


def camcli(folder: Path, out: Path) -> Background:
    return Background(out, "explain", str(folder), "-o", str(out), *ARGS)


def snapshot(out: Path) -> dict[str, bytes]:
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    return {k: v for k, v in files.items() if k not in ("run.json", ".camcli-lock")}  # these name the run


@pytest.fixture(scope="module")
def reference(folder, tmp_path_factory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("reference")
    assert camcli(folder, out).wait(timeout=300) == 1  # the broken file fails
    return snapshot(out)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sigkill_then_resume_equals_uninterrupted(seed, folder, reference, tmp_path):
    rng = random.Random(seed)
    out = tmp_path / "out"
    victim = camcli(folder, out)
    kill_after = rng.randint(1, 15)  # explanation.json files seen, then a random extra moment
    deadline = time.time() + 240
    while victim.poll() is None and time.time() < deadline:
        if len(list(out.glob("*/explanation.json"))) >= kill_after:
            time.sleep(rng.uniform(0, 0.3))
            break
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(timeout=30) == -signal.SIGKILL, "the run ended before it could be killed"
    done_before = len(list(out.glob("*/explanation.json")))

    resumed = camcli(folder, out)
    assert resumed.wait(timeout=300) == 1, resumed.stderr()
    after = snapshot(out)
    assert after == reference, sorted(k for k in set(after) | set(reference) if after.get(k) != reference.get(k))
    assert not [p for p in out.rglob(".*tmp*")], "partial files left behind"
    counts = json.loads((out / "run.json").read_text())["counts"]
    assert counts["total"] == 20
    assert counts["failed"] == 1
    assert counts["skipped"] <= done_before


def test_sigterm_stops_after_the_batch_and_resumes(folder, reference, tmp_path):
    out = tmp_path / "out"
    victim = camcli(folder, out)
    while victim.poll() is None and len(list(out.glob("*/explanation.json"))) < 2:
        time.sleep(0.005)
    victim.send_signal(signal.SIGTERM)
    assert victim.wait(timeout=120) == 130
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "interrupted"
    assert 0 < run["counts"]["total"] < 20
    assert run["counts"]["total"] % 4 == 0  # whole batches only
    assert camcli(folder, out).wait(timeout=300) == 1
    assert snapshot(out) == reference


def test_resume_rules(sample_copy, tmp_path, run_cli):
    out = tmp_path / "out"
    args = ["explain", str(sample_copy), "-o", str(out), "--top-k", "1", "-q"]
    first = run_cli(*args)
    assert first.exit_code == 0
    before = (out / "coffee.png" / "explanation.json").read_bytes()

    again = json.loads(run_cli(*args).exit_code == 0 and (out / "run.json").read_text())
    assert again["counts"] == {"ok": 0, "failed": 0, "skipped": 2, "total": 2}
    assert (out / "coffee.png" / "explanation.json").read_bytes() == before

    (out / "coffee.png" / ".gradcam_967_raw.npy.tmp99999").write_bytes(b"half")  # a killed writer's leftover
    (out / "coffee.png" / "gradcam_967_raw.npy").unlink()  # incomplete outputs: redone
    assert run_cli(*args).exit_code == 0
    assert json.loads((out / "run.json").read_text())["counts"]["ok"] == 2  # its whole batch is redone
    assert (out / "coffee.png" / "explanation.json").read_bytes() == before
    assert not list(out.rglob(".*tmp*"))

    assert run_cli(*args, "--colormap", "hot").exit_code == 0  # other settings: redone
    assert json.loads((out / "run.json").read_text())["counts"]["ok"] == 2
    assert run_cli(*args, "--colormap", "hot", "--overwrite").exit_code == 0
    assert json.loads((out / "run.json").read_text())["counts"]["ok"] == 2

    shutil.copy(sample_copy / "chelsea.png", sample_copy / "coffee.png")  # new content, same name
    assert run_cli(*args, "--colormap", "hot").exit_code == 0
    doc = json.loads((out / "coffee.png" / "explanation.json").read_text())
    assert 281 <= doc["predictions"][0]["class_index"] <= 285


def test_malformed_previous_json_is_redone_not_fatal(sample_copy, tmp_path, run_cli):
    out = tmp_path / "out"
    args = ["explain", str(sample_copy), "-o", str(out), "--top-k", "1", "-q"]
    assert run_cli(*args).exit_code == 0
    (out / "coffee.png" / "explanation.json").write_text("[]")
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "coffee.png" / "explanation.json").read_text())["status"] == "ok"
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


def test_random_weights_are_repeatable_and_leave_the_rng_alone():
    import torch

    from camcli.models import load_model

    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    first = load_model("resnet18", random_weights=True).model.state_dict()
    assert torch.equal(torch.rand(3), expected)
    second = load_model("resnet18", random_weights=True).model.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
