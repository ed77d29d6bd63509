"""`camcli evaluate` and `camcli compare` end to end, on a planted model whose right answers are known."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

PLANTED = textwrap.dedent('''
    import torch
    from torch import nn

    class Planted(nn.Module):
        """64×64 images, an 8×8 grid of cells. Class 1 ("square") is scored by the bright cells (mean
        brightness above 0.9) of the top-right quadrant only; class 0 ("nothing") is constant."""

        def __init__(self, num_classes=2):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 4, 8, 8), nn.ReLU())
            self.head = nn.Linear(4, num_classes)
            with torch.no_grad():
                self.features[0].weight.zero_()
                self.features[0].bias.zero_()
                self.features[0].weight[0] = 10.0 / (3 * 64)  # 10 × mean brightness of the cell
                self.features[0].bias[0] = -9.0               # > 0 only above 0.9
                self.head.weight.zero_()
                self.head.bias.zero_()
            self.register_buffer("region", torch.zeros(1, 1, 8, 8))
            self.region[..., :4, 4:] = 1.0

        def forward(self, x):
            cells = self.features(x)
            pooled = (cells * self.region).sum(dim=(2, 3))  # only the top-right quadrant counts
            return torch.stack([torch.zeros_like(pooled[:, 0]), 4.0 * pooled[:, 0]], dim=1)

    def build(num_classes=2):
        return Planted(num_classes)
''')
SQUARE = (40, 8, 60, 28)  # x0, y0, x1, y1: inside the top-right quadrant
ELSEWHERE = (4, 36, 24, 56)


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("planted")
    (root / "planted.py").write_text(PLANTED)
    images = root / "images"
    images.mkdir()
    for i in range(3):
        pixels = np.zeros((64, 64, 3), np.uint8)
        x0, y0, x1, y1 = SQUARE
        pixels[y0 + i : y1 + i, x0 - i : x1 - i] = 255
        Image.fromarray(pixels).save(images / f"square{i}.png")
    (root / "labels.txt").write_text("nothing\nsquare\n")
    rows = ["path,class,x0,y0,x1,y1"]
    wrong = ["path,class,x0,y0,x1,y1"]
    for i in range(3):
        x0, y0, x1, y1 = SQUARE
        rows.append(f"images/square{i}.png,square,{x0 - i},{y0 + i},{x1 - i},{y1 + i}")
        wrong.append(f"images/square{i}.png,square,{','.join(map(str, ELSEWHERE))}")
    (root / "truth.csv").write_text("\n".join(rows) + "\n")
    (root / "wrong.csv").write_text("\n".join(wrong) + "\n")
    model = [
        "-m",
        f"{root / 'planted.py'}:build",
        "--random-weights",
        "--labels",
        str(root / "labels.txt"),
        "--input-size",
        "64",
        "--crop-pct",
        "1.0",
        "--mean",
        "0,0,0",
        "--std",
        "1,1,1",
        "--interpolation",
        "bilinear",
        "--layer",
        "features",
    ]  # the score reads a quarter of the grid: no default layer, as camcli says
    return {"root": root, "images": images, "model": model, "evaluate": ["evaluate", images, "-q", *model]}


def metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def test_known_answers_for_every_metric(planted, tmp_path, run_cli):
    out = tmp_path / "right"
    result = run_cli(
        *planted["evaluate"],
        "-o",
        out,
        "--annotations",
        planted["root"] / "truth.csv",
        "--faithfulness",
        "--steps",
        "20",
        "--method",
        "gradcam,layercam",
    )
    assert result.exit_code == 0, result.output
    doc = metrics(out)
    assert doc["images"] == 3
    assert doc["classification"] == {"top1": 1.0, "top5": 1.0}
    for method in ("gradcam", "layercam"):
        m = doc["methods"][method]
        assert m["localization"]["top1_loc_error"] == 0.0
        assert m["localization"]["gt_known_loc_accuracy"] == 1.0
        assert m["localization"]["threshold"] == 0.15
        assert m["localization"]["iou"] == 0.5
        assert m["pointing_game"] == {"accuracy": 1.0, "tolerance_px": 15.0}
        assert m["energy_pointing_game"] > 0.9
        # Deleting the square first drops the score at once; inserting it first raises it at once.
        assert m["deletion_auc"] < 0.65 < 0.9 < m["insertion_auc"]
        # The map dims the square's edges below the detector's 0.9 threshold: confidence falls to 0.5.
        assert 0 <= m["average_drop"] <= 100
        assert 0 <= m["increase_in_confidence"] <= 100
    lines = [json.loads(line) for line in (out / "per_image.jsonl").read_text().splitlines()]
    assert len(lines) == 3
    assert all(line["pointing_hit"] for line in lines)
    assert doc["protocol"]["faithfulness"]["deletion_substrate"].startswith("0 in normalized space")

    wrong = tmp_path / "wrong"
    result = run_cli("evaluate", "--from", out, "-o", wrong, "-q", "--annotations", planted["root"] / "wrong.csv")
    assert result.exit_code == 0, result.output
    m = metrics(wrong)["methods"]["gradcam"]
    assert m["localization"]["top1_loc_error"] == 1.0
    assert m["pointing_game"]["accuracy"] == 0.0
    assert m["energy_pointing_game"] < 0.05
    assert "deletion_auc" not in m  # --from recomputes nothing it does not hold; faithfulness was not asked for


def test_gates_exit_4_and_name_what_failed(planted, tmp_path, run_cli):
    truth = ["--annotations", planted["root"] / "truth.csv"]
    passed = run_cli(
        *planted["evaluate"], "-o", tmp_path / "a", *truth, "--min-pointing-game", "0.9", "--max-loc-error", "0.1"
    )
    assert passed.exit_code == 0, passed.output
    failed = run_cli(
        *planted["evaluate"],
        "-o",
        tmp_path / "b",
        "--annotations",
        planted["root"] / "wrong.csv",
        "--min-pointing-game",
        "gradcam:0.5",
    )
    assert failed.exit_code == 4
    assert "min-pointing-game" in failed.output
    assert "FAIL" in failed.output
    not_computed = run_cli(*planted["evaluate"], "-o", tmp_path / "c", *truth, "--min-insertion-auc", "0.5")
    assert not_computed.exit_code == 4
    assert "not computed" in not_computed.output
    doc = metrics(tmp_path / "c")
    assert doc["passed"] is False
    assert doc["gates"][0]["reason"].startswith("not computed")


def test_gates_from_a_config_file(planted, tmp_path, run_cli):
    config = tmp_path / "gate.toml"
    config.write_text(f'[evaluate]\nannotations = "{planted["root"] / "wrong.csv"}"\n[gates]\nmin-energy = 0.5\n')
    result = run_cli(*planted["evaluate"], "-o", tmp_path / "o", "--config", config)
    assert result.exit_code == 4
    assert "min-energy" in result.output


def test_sanity_randomizing_the_weights_changes_the_map(samples, tmp_path, run_cli):
    truth = tmp_path / "truth.csv"
    truth.write_text(
        "path,class,x0,y0,x1,y1\n"
        f"{samples / 'chelsea.png'},tiger cat,80,0,380,300\n{samples / 'coffee.png'},espresso,100,20,500,330\n"
    )
    out = tmp_path / "out"
    result = run_cli(
        "evaluate", samples / "chelsea.png", samples / "coffee.png", "-o", out, "-q", "--annotations", truth, "--sanity"
    )
    assert result.exit_code == 0, result.output
    steps = metrics(out)["methods"]["gradcam"]["sanity"]
    assert steps[0]["step"] == "classifier"
    assert len(steps) > 5
    assert steps[-1]["spearman"] < 0.5  # with every layer re-initialized, the map no longer resembles the original


def test_malformed_annotations_are_usage_errors(planted, tmp_path, run_cli):
    bad = tmp_path / "bad.csv"
    bad.write_text("path,class,x0,y0,x1,y1\nimages/square0.png,square,10,10,5,20\n")
    result = run_cli(*planted["evaluate"], "-o", tmp_path / "o", "--annotations", bad)
    assert result.exit_code == 2
    assert "bad.csv" in result.output
    assert "line 2" in result.output


def test_compare_two_runs(samples, tmp_path, run_cli):
    a, b = tmp_path / "a", tmp_path / "b"
    base = [
        "explain",
        str(samples / "chelsea.png"),
        str(samples / "coffee.png"),
        "-q",
        "--top-k",
        "1",
        "--save",
        "raw_map",
    ]
    assert run_cli(*base, "-o", a).exit_code == 0
    assert run_cli(*base, "-o", b, "--method", "layercam").exit_code == 0
    same = run_cli("compare", a, a, "-o", tmp_path / "same", "--min-similarity", "0.99")
    assert same.exit_code == 0, same.output
    result = json.loads((tmp_path / "same" / "compare.json").read_text())
    assert result["summary"]["spearman_min"] == pytest.approx(1.0)
    other = run_cli("compare", a, b, "-o", tmp_path / "diff", "--method", "gradcam", "--min-similarity", "0.999")
    assert other.exit_code == 2
    assert "no heat maps in both runs" in other.output
    b2 = tmp_path / "b2"
    assert run_cli(*base[:2], "-o", b2, "-q", "--top-k", "1", "--save", "raw_map", "--smooth", "aug").exit_code == 0
    changed = run_cli("compare", a, b2, "-o", tmp_path / "diff", "--min-similarity", "0.9999", "--json")
    assert changed.exit_code == 4
    result = json.loads(changed.stdout)
    assert result["only_in_a"] == [str(samples / "coffee.png")]
    assert len(result["images"]) == 1
    assert result["images"][0]["spearman"] < 0.9999
