"""--engine ray on a real local Ray cluster started (and stopped) by these tests: the same outputs as the
local engine, a killed worker retried, a killed driver resumed."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from background import Background

psutil = pytest.importorskip("psutil", reason="psutil (in the test extra) finds Ray's processes")
pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]'")
pytestmark = pytest.mark.slow
# A throwaway cluster on loopback: without token authentication, so the test's drivers can join it.
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled"}
ARGS = ["-q", "--top-k", "2", "--save", "raw_map", "--batch-size", "2"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def cluster():
    """`ray start --head` in a temporary folder; at the end, only its own processes are stopped."""
    temp = Path(tempfile.mkdtemp(prefix="camcli-ray-", dir="/tmp"))  # short: Ray's socket paths have a limit
    port = _free_port()
    ray = str(Path(sys.executable).with_name("ray"))
    subprocess.run(
        [
            ray,
            "start",
            "--head",
            "--num-cpus",
            "2",
            "--port",
            str(port),
            "--temp-dir",
            str(temp),
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        check=True,
        capture_output=True,
        timeout=120,
        env=ENV,
    )
    try:
        yield f"127.0.0.1:{port}"
    finally:
        for process in psutil.process_iter(["cmdline"]):
            if any(str(temp) in part for part in process.info["cmdline"] or []):
                with contextlib.suppress(psutil.Error):
                    process.kill()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def folder(tmp_path_factory, samples) -> Path:
    root = tmp_path_factory.mktemp("images")
    files = sorted(p for p in samples.iterdir() if p.suffix in (".png", ".jpg"))
    for i in range(14):
        shutil.copy(files[i % len(files)], root / f"{i:02d}_{files[i % len(files)].name}")
    (root / "99_broken.jpg").write_bytes(b"not an image")
    return root


def _camcli(out: Path, *args: str) -> Background:
    return Background(out, "explain", *args, env=ENV)


def _same_outputs(a: Path, b: Path) -> None:
    """Every image's record and raw maps agree (to 1e-5 relative: batches differ between engines)."""
    docs = sorted(p.relative_to(a) for p in a.glob("*/explanation.json"))
    assert docs == sorted(p.relative_to(b) for p in b.glob("*/explanation.json"))
    assert docs
    for rel in docs:
        da, db = json.loads((a / rel).read_text()), json.loads((b / rel).read_text())
        assert da["status"] == db["status"]
        assert da["source"] == db["source"]
        assert [(e["method"], e["class_index"], e["bbox"]) for e in da["explanations"]] == [
            (e["method"], e["class_index"], e["bbox"]) for e in db["explanations"]
        ]
        for ea, eb in zip(da["explanations"], db["explanations"], strict=True):
            ra, rb = np.load(a / rel.parent / ea["files"]["raw_map"]), np.load(b / rel.parent / eb["files"]["raw_map"])
            np.testing.assert_allclose(ra, rb, rtol=1e-5, atol=1e-5 * float(np.abs(rb).max()))


@pytest.fixture(scope="module")
def reference(folder, tmp_path_factory, run_cli) -> Path:
    out = tmp_path_factory.mktemp("local")
    assert run_cli("explain", folder, "-o", out, *ARGS).exit_code == 1  # the broken file
    return out


def test_ray_equals_local(cluster, folder, reference, tmp_path):
    out = tmp_path / "ray"
    run = _camcli(out, str(folder), "-o", str(out), "--engine", "ray", "--ray-address", cluster, *ARGS)
    assert run.wait(timeout=600) == 1, run.stderr()
    _same_outputs(reference, out)
    lines = [json.loads(line)["path"] for line in (out / "summary.jsonl").read_text().splitlines()]
    assert lines == sorted(lines)  # in input order
    run_doc = json.loads((out / "run.json").read_text())
    assert run_doc["options"]["runner"] == "ray"
    assert run_doc["counts"] == {"ok": 14, "failed": 1, "skipped": 0, "total": 15}


def _wait_for(out: Path, count: int, process: Background, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while len(list(out.glob("*/explanation.json"))) < count:
        assert process.poll() is None, process.stderr()
        assert time.time() < deadline, "the run made no progress"
        time.sleep(0.05)


def test_a_killed_worker_is_retried(cluster, folder, reference, tmp_path):
    out = tmp_path / "ray"
    run = _camcli(out, str(folder), "-o", str(out), "--engine", "ray", "--ray-address", cluster, *ARGS)
    _wait_for(out, 2, run)
    workers = [
        p
        for p in psutil.process_iter(["cmdline"])
        if any("MapBatches(Explain)" in part for part in p.info["cmdline"] or [])
    ]
    assert workers, "no explaining actor found"
    workers[0].kill()
    assert run.wait(timeout=600) == 1, run.stderr()  # as a clean run: only the broken file failed
    _same_outputs(reference, out)


def test_driver_killed_then_resumed(cluster, folder, reference, tmp_path):
    out = tmp_path / "ray"
    args = [str(folder), "-o", str(out), "--engine", "ray", "--ray-address", cluster, *ARGS]
    run = _camcli(out, *args)
    _wait_for(out, 4, run)
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=60)
    done = len(list(out.glob("*/explanation.json")))
    resumed = _camcli(out, *args)
    assert resumed.wait(timeout=600) == 1, resumed.stderr()
    _same_outputs(reference, out)
    assert json.loads((out / "run.json").read_text())["counts"]["skipped"] >= done - 2  # one batch may be redone
    assert not list(out.rglob(".*tmp*"))


def test_evaluate_explains_on_ray_too(cluster, samples, tmp_path):
    out = tmp_path / "evaluate"
    args = ["--annotations", str(samples / "boxes.csv"), "-o", str(out), "--runner", "ray", "--ray-address", cluster]
    run = Background(out, "evaluate", str(samples), *args, *ARGS, env=ENV)
    assert run.wait(timeout=600) == 0, run.stderr()
    assert json.loads((out / "run.json").read_text())["options"]["runner"] == "ray"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["annotated"] == metrics["images"] == 7


def test_without_ray_it_is_a_usage_error(monkeypatch, samples, tmp_path, run_cli):
    monkeypatch.setitem(sys.modules, "ray", None)
    result = run_cli("explain", samples, "-o", tmp_path, "--engine", "ray")
    assert result.exit_code == 2
    assert "pip install -e '.[ray]'" in result.output
