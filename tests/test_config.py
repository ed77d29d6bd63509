"""--config: a TOML file supplies defaults, the command line wins, unknown keys are errors; --json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from camcli.cli import cli

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_config_supplies_defaults_and_command_line_wins(sample_copy, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(
        f'inputs = ["{sample_copy / "coffee.png"}"]\ntop-k = 2\nout = "{tmp_path / "o"}"\n'
        'save = ["raw_map"]\nquiet = true\n'
    )
    result = invoke("explain", "--config", str(config))
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "o" / "coffee.png" / "explanation.json").read_text())
    assert [e["rank"] for e in doc["explanations"]] == [1, 2]
    assert set(doc["explanations"][0]["files"]) == {"raw_map"}
    assert json.loads((tmp_path / "o" / "run.json").read_text())["options"]["config"] == str(config)

    result = invoke("explain", "--config", str(config), "--top-k", "1", str(sample_copy / "chelsea.png"))
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "o" / "chelsea.png" / "explanation.json").read_text())
    assert [e["rank"] for e in doc["explanations"]] == [1]  # --top-k and the input from the command line


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("topk = 2\n", "unknown key 'topk'"),
        ("top-k = [\n", "not valid TOML"),
    ],
)
def test_bad_config_is_a_usage_error(text, message, tmp_path, sample_copy):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    result = invoke("explain", str(sample_copy), "--config", str(config))
    assert result.exit_code == 2
    assert message in result.output
    if "topk" in text:
        assert "top_k" in result.output  # the suggestion


@pytest.mark.parametrize("name", ["default.toml", "nightly-audit.toml"])
def test_shipped_configs_are_valid(name, sample_copy, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(CONFIGS / name, tmp_path / name)
    result = invoke("explain", "--config", name, str(sample_copy / "coffee.png"))
    assert result.exit_code == 0, result.output


def test_json_lines_on_stdout_only(sample_copy, tmp_path):
    result = CliRunner().invoke(cli, ["explain", str(sample_copy), "-o", str(tmp_path / "o"), "--json", "--top-k", "1"])
    assert result.exit_code == 0
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(line["source"]["path"]).name for line in lines] == ["chelsea.png", "coffee.png"]
    assert all(Path(line["json"]).is_file() and line["status"] == "ok" for line in lines)
    assert "images:" in result.stderr  # the summary goes to stderr


def test_ci_gate_config_is_a_real_gate(tmp_path, monkeypatch):
    monkeypatch.chdir(CONFIGS.parent)  # its paths are relative to where camcli runs
    result = invoke("evaluate", "--config", "configs/ci-gate.toml", "sample_images", "-o", str(tmp_path / "gate"))
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "gate" / "metrics.json").read_text())
    assert doc["passed"]
    assert len(doc["gates"]) == 3
    assert doc["images"] == 7
    strict = tmp_path / "strict.toml"
    strict.write_text((CONFIGS / "ci-gate.toml").read_text().replace("min-energy = 0.5", "min-energy = 0.99"))
    result = invoke("evaluate", "--config", str(strict), "sample_images", "-o", str(tmp_path / "gate"))
    assert result.exit_code == 4
    assert "min-energy" in result.output
