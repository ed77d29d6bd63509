"""--config: a TOML file supplies defaults, the command line wins, unknown keys are errors; --json."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import pytest

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def test_config_supplies_defaults_and_command_line_wins(sample_copy, tmp_path, run_cli):
    config = tmp_path / "run.toml"
    config.write_text(
        f'inputs = ["{sample_copy / "coffee.png"}"]\ntop-k = 2\nout = "{tmp_path / "o"}"\n'
        'save = ["raw_map"]\nquiet = true\n'
    )
    result = run_cli("explain", "--config", config)
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "o" / "coffee.png" / "explanation.json").read_text())
    assert [e["rank"] for e in doc["explanations"]] == [1, 2]
    assert set(doc["explanations"][0]["files"]) == {"raw_map"}
    assert json.loads((tmp_path / "o" / "run.json").read_text())["options"]["config"] == str(config)

    result = run_cli("explain", "--config", config, "--top-k", "1", sample_copy / "chelsea.png")
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
def test_bad_config_is_a_usage_error(text, message, tmp_path, sample_copy, run_cli):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    result = run_cli("explain", sample_copy, "--config", config)
    assert result.exit_code == 2
    assert message in result.output
    if "topk" in text:
        assert "top_k" in result.output  # the suggestion


# Where each key of the shipped explain configs shows in run.json's options (or its model record).
RECORDED = {
    "top-k": "top_k",
    "method": "methods",
    "batch-size": "batch_size",
    "precision": "precision",
    "overlay-format": "overlay_format",
    "colormap": "colormap",
    "alpha": "alpha",
    "out": "out",
    "resume": "resume",
}


@pytest.mark.parametrize("name", ["default.toml", "nightly-audit.toml"])
def test_shipped_configs_take_effect(name, sample_copy, tmp_path, monkeypatch, run_cli):
    """Every value of the shipped config is what the run did: run.json's options, the files, stdout."""
    monkeypatch.chdir(tmp_path)
    shutil.copy(CONFIGS / name, tmp_path / name)
    config = tomllib.loads((CONFIGS / name).read_text())
    checked = set(RECORDED) | {"model", "device", "save", "quiet", "json"}
    assert set(config) <= checked, f"{name} has keys this test does not check: {set(config) - checked}"
    result = run_cli("explain", "--config", name, sample_copy / "coffee.png")
    assert result.exit_code == 0, result.output

    out = tmp_path / config.get("out", "camcli-out")
    run = json.loads((out / "run.json").read_text())
    options = run["options"]
    assert options["config"] == name
    for key, option in RECORDED.items():
        if key in config:
            assert options[option] == config[key], key
    if "model" in config:
        assert run["model"]["name"] == config["model"]
    if config.get("device", "auto") != "auto":
        assert options["device"] == config["device"]
    save = set(config.get("save", ["overlay", "raw_map"]))
    assert options["save"] == sorted(save | {"json"})

    doc = json.loads((out / "coffee.png" / "explanation.json").read_text())
    top_k = config.get("top-k", 3)
    methods = config.get("method", ["gradcam"])
    assert [(e["method"], e["rank"]) for e in doc["explanations"]] == [
        (m, rank) for rank in range(1, top_k + 1) for m in methods
    ]
    overlay_format = config.get("overlay-format", "png")
    for entry in doc["explanations"]:
        assert set(entry["files"]) == save
        if "overlay" in save:
            assert entry["files"]["overlay"].endswith(f"_overlay.{overlay_format}")
            assert (out / "coffee.png" / entry["files"]["overlay"]).is_file()

    if config.get("json", False):  # one explanation.json per line on stdout
        [line] = [json.loads(text) for text in result.stdout.splitlines()]
        assert line["json"] == str(Path(config["out"]) / "coffee.png" / "explanation.json")
        assert {k: v for k, v in line.items() if k != "json"} == doc
    else:
        assert result.stdout == ""
    if config.get("quiet", False):
        assert result.stderr == ""  # no progress bar, no summary
    else:
        assert "1 image: 1 ok" in result.stderr


def test_json_lines_on_stdout_only(sample_copy, tmp_path, run_cli):
    result = run_cli("explain", sample_copy, "-o", tmp_path / "o", "--json", "--top-k", "1")
    assert result.exit_code == 0
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(line["source"]["path"]).name for line in lines] == ["chelsea.png", "coffee.png"]
    assert all(Path(line["json"]).is_file() and line["status"] == "ok" for line in lines)
    assert "images:" in result.stderr  # the summary goes to stderr


def test_ci_gate_config_is_a_real_gate(tmp_path, monkeypatch, run_cli):
    monkeypatch.chdir(CONFIGS.parent)  # its paths are relative to where camcli runs
    result = run_cli("evaluate", "--config", "configs/ci-gate.toml", "sample_images", "-o", tmp_path / "gate")
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "gate" / "metrics.json").read_text())
    assert doc["passed"]
    assert len(doc["gates"]) == 3
    assert doc["images"] == 7
    strict = tmp_path / "strict.toml"
    strict.write_text((CONFIGS / "ci-gate.toml").read_text().replace("min-energy = 0.5", "min-energy = 0.99"))
    result = run_cli("evaluate", "--config", strict, "sample_images", "-o", tmp_path / "gate")
    assert result.exit_code == 4
    assert "min-energy" in result.output
