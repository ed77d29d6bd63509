"""--help, --version and usage errors answer without loading torch, timm or torchvision."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import sys
sys.argv = ["camcli", *{args!r}]
from camcli.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
heavy = [m for m in ("torch", "timm", "torchvision") if m in sys.modules]
print("\\n@@" + __import__("json").dumps({{"code": code, "heavy": heavy}}))
"""


def probe(*args: str) -> tuple[int, list[str], str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(args=list(args))], capture_output=True, text=True, timeout=120
    )
    result = json.loads(done.stdout.rsplit("@@", 1)[1])
    return result["code"], result["heavy"], done.stdout + done.stderr


def cases(tmp: Path) -> list[tuple[list[str], int, str]]:
    (tmp / "empty").mkdir()
    (tmp / "images").mkdir()
    (tmp / "images" / "a.png").write_bytes(b"not decoded before the usage checks")
    (tmp / "bad-key.toml").write_text("topk = 2\n")
    (tmp / "nan.toml").write_text("alpha = nan\n")
    images = str(tmp / "images")
    return [
        (["--help"], 0, "explain"),
        (["--version"], 0, "version"),
        (["explain", "--help"], 0, "--method"),
        (["explain", images, "--no-such-option"], 2, "No such option"),
        (["explain", str(tmp / "missing")], 2, "does not exist"),
        (["explain", str(tmp / "empty")], 2, "No images found"),
        (["explain", images, "--method", "no-such-method"], 2, "Unknown method"),
        (["explain", images, "--save", "heatmap"], 2, "Unknown --save"),
        (["explain", images, "--config", str(tmp / "bad-key.toml")], 2, "unknown key 'topk'"),
        (["explain", images, "--config", str(tmp / "nan.toml")], 2, "not a finite number"),
        (["explain", images, "--alpha", "nan"], 2, "not a finite number"),
        (["explain", images, "--device", "gpu"], 2, "Unknown device"),
    ]


def test_answers_without_heavy_imports(tmp_path):
    for args, code, words in cases(tmp_path):
        got, heavy, output = probe(*args)
        assert (got or 0) == code, (args, output)
        assert words in output, (args, output)
        assert heavy == [], (args, heavy)


@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
def test_non_finite_floats_are_refused(value, tmp_path, sample_copy, run_cli):
    result = run_cli("explain", sample_copy, "-o", tmp_path / "o", "--alpha", value)
    assert result.exit_code == 2
    assert "finite" in result.output
    assert not (tmp_path / "o").exists()
