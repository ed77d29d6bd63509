"""A method of your own: docs/architecture.md's plugin example, built and installed into camcli's
environment as a user would (pip), then used from the command line, a resumed run and the Python API."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ARCHITECTURE = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"
BIN = Path(sys.executable).parent


def example_blocks() -> dict[str, str]:
    """The ```python and ```toml blocks right after the example's marker line."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    after = text.split("<!-- example: method plugin -->\n", 1)[1]
    blocks = re.findall(r"```(python|toml)\n(.*?)```", after, flags=re.S)[:2]
    return {kind: body for kind, body in blocks}


def camcli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "camcli"), *args], capture_output=True, text=True, timeout=300)


def raw_maps(out: Path, method: str) -> dict[int, np.ndarray]:
    doc = json.loads((out / "chelsea.png" / "explanation.json").read_text())
    return {
        e["class_index"]: np.load(out / "chelsea.png" / e["files"]["raw_map"])
        for e in doc["explanations"]
        if e["method"] == method
    }


@pytest.mark.slow
def test_the_documented_plugin_installs_and_works(tmp_path, samples):
    blocks = example_blocks()
    assert set(blocks) == {"python", "toml"}
    package = tmp_path / "camcli-toycam"
    package.mkdir()
    (package / "toycam.py").write_text(blocks["python"])
    (package / "pyproject.toml").write_text(blocks["toml"])
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-build-isolation", "--no-index", str(package)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    try:
        image = samples / "chelsea.png"
        shown = camcli("explain", "--help")
        assert "--toycam-power" in shown.stdout, shown.stdout

        common = [str(image), "--top-k", "2", "--save", "raw_map", "-q"]
        assert camcli("explain", *common, "-o", str(tmp_path / "gradcam")).returncode == 0
        toy = tmp_path / "toy"
        done = camcli("explain", *common, "--method", "toycam", "--toycam-power", "2", "-o", str(toy))
        assert done.returncode == 0, done.stderr
        expected = raw_maps(tmp_path / "gradcam", "gradcam")
        got = raw_maps(toy, "toycam")
        assert got.keys() == expected.keys()
        for cls, raw in expected.items():
            np.testing.assert_allclose(got[cls], raw**2, rtol=1e-5, atol=1e-7)
        doc = json.loads((toy / "chelsea.png" / "explanation.json").read_text())
        assert {e["params"]["power"] for e in doc["explanations"]} == {2.0}

        again = camcli("explain", *common, "--method", "toycam", "--toycam-power", "2", "-o", str(toy))
        assert json.loads((toy / "run.json").read_text())["counts"]["skipped"] == 1, again.stderr
        cubed = camcli("explain", *common, "--method", "toycam", "--toycam-power", "3", "-o", str(toy))
        assert json.loads((toy / "run.json").read_text())["counts"]["ok"] == 1, cubed.stderr
        for cls, raw in expected.items():
            np.testing.assert_allclose(raw_maps(toy, "toycam")[cls], raw**3, rtol=1e-5, atol=1e-7)

        refused = camcli("explain", *common, "--toycam-power", "2", "-o", str(tmp_path / "x"))
        assert refused.returncode == 2
        assert "--method gradcam,toycam" in refused.stderr

        api = (
            "import json, sys; from camcli.api import Explainer; "
            "e = Explainer(methods=['toycam'], toycam_power=2.0); "
            f"[r] = e.explain({str(image)!r}, top_k=2); "
            "print(json.dumps({x.class_index: x.raw.tolist() for x in r.explanations}))"
        )
        found = subprocess.run([sys.executable, "-c", api], capture_output=True, text=True, timeout=300, check=True)
        for cls, raw in json.loads(found.stdout).items():
            np.testing.assert_allclose(np.asarray(raw, dtype=np.float32), expected[int(cls)] ** 2, rtol=1e-5, atol=1e-7)
    finally:
        subprocess.run([*pip, "uninstall", "-y", "camcli-toycam"], capture_output=True, timeout=300)
