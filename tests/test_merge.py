"""camcli merge for camcli evaluate's shards: metrics.json computed from the shards' per-image lines exactly
as one run computes it from the same maps; refusals when the shards cannot be merged."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from test_evaluate_library_metrics import TINY

ARGS = ["-q", "--save", "raw_map", "--overlay-format", "jpg"]


def metrics_of(folder) -> dict:
    doc = json.loads((folder / "metrics.json").read_text())
    doc.pop("protocol")
    return doc


@pytest.mark.slow
def test_evaluate_shards_merge_into_the_metrics_of_one_run(samples, tmp_path, run_cli):
    annotations = str(samples / "boxes.csv")
    parts = tmp_path / "parts"
    for i in range(3):
        result = run_cli(
            "evaluate", str(samples), "--annotations", annotations, "-o", str(parts), "--shard", f"{i}/3", *ARGS
        )
        assert result.exit_code == 0, result.output
        assert (parts / "shards" / f"{i}-of-3" / "per_image.jsonl").is_file()
    assert not (parts / "metrics.json").exists()  # no shard writes the run's metrics
    merged = run_cli("merge", str(parts))
    assert merged.exit_code == 0, merged.output
    assert "pointing game" in merged.output  # the table

    # The same maps scored as one run: `evaluate --from` reads the merged folder.
    again = run_cli("evaluate", "--from", str(parts), "--annotations", annotations, "-o", str(tmp_path / "again"), "-q")
    assert again.exit_code == 0, again.output
    assert metrics_of(parts) == metrics_of(tmp_path / "again")
    lines = (parts / "per_image.jsonl").read_text().splitlines()
    assert lines == (tmp_path / "again" / "per_image.jsonl").read_text().splitlines()
    assert metrics_of(parts)["images"] == metrics_of(parts)["annotated"] == 7

    # A gate judged at merge time: the shards recorded it.
    gated = tmp_path / "gated"
    for i in range(2):
        args = ["-o", str(gated), "--shard", f"{i}/2", "--min-energy", "0.99", *ARGS]
        assert run_cli("evaluate", str(samples), "--annotations", annotations, *args).exit_code == 0
    failed = run_cli("merge", str(gated))
    assert failed.exit_code == 4
    assert "min-energy" in failed.output
    assert json.loads((gated / "metrics.json").read_text())["passed"] is False


def test_shards_that_cannot_be_merged_are_refused(samples, tmp_path, run_cli):
    out = tmp_path / "out"
    for i in range(2):
        assert (
            run_cli("explain", str(samples), "-o", str(out), "--shard", f"{i}/2", "--top-k", "1", *ARGS).exit_code == 0
        )
    shutil.copytree(out / "shards" / "1-of-2", out / "shards" / "01-of-2")
    refused = run_cli("merge", str(out))
    assert refused.exit_code == 2
    assert "01-of-2" in refused.output
    shutil.rmtree(out / "shards" / "01-of-2")

    torn = out / "shards" / "1-of-2" / "summary.jsonl"
    torn.write_bytes(torn.read_bytes() + b'{"path": "half')  # a shard killed mid-line
    assert run_cli("merge", str(out)).exit_code == 0
    lines = (out / "summary.jsonl").read_text().splitlines()
    assert len(lines) == 7
    assert all(json.loads(line)["status"] == "ok" for line in lines)

    record = out / "shards" / "1-of-2" / "run.json"
    doc = json.loads(record.read_text())
    record.write_text(json.dumps({**doc, "fingerprint": "another model"}))
    different = run_cli("merge", str(out))
    assert different.exit_code == 2
    assert "different settings" in different.output
    record.write_text(json.dumps(doc))

    shutil.rmtree(out / "shards" / "1-of-2")
    missing = run_cli("merge", str(out))
    assert missing.exit_code == 1
    assert "missing shards [1]" in missing.output
    assert json.loads((out / "run.json").read_text())["status"] == "incomplete"


def test_evaluate_refuses_what_a_shard_cannot_do(samples, tmp_path, run_cli):
    annotations = str(samples / "boxes.csv")
    sanity = run_cli("evaluate", str(samples), "--annotations", annotations, "--shard", "0/2", "--sanity")
    assert sanity.exit_code == 2
    assert "--sanity" in sanity.output
    source = run_cli("evaluate", "--from", str(tmp_path), "--annotations", annotations, "--shard", "0/2")
    assert source.exit_code == 2
    assert "--from" in source.output


def test_road_occlusion_correlation_cam_mult_arcc_complexity_and_sparseness_of_shards_merge_exactly(tmp_path, run_cli):
    """The per-(image, class) values: each shard records what one run records, bit for bit, and merge
    summarizes them as one run does (a small model, so that ROAD, occlusion and ARCC stay quick)."""
    (tmp_path / "tiny.py").write_text(TINY)
    (tmp_path / "labels.txt").write_text("a\nb\nc\nd\n")
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(1)
    for i in range(4):
        pixels = (rng.random((8, 8, 3)) * 255).astype(np.uint8).repeat(4, 0).repeat(4, 1)
        Image.fromarray(pixels).save(images / f"image{i}.png")
    truth = tmp_path / "truth.csv"
    truth.write_text("path,class,x0,y0,x1,y1\nimages/image0.png,b,0,0,16,16\nimages/image2.png,a,8,8,24,24\n")
    model = ["-m", f"{tmp_path / 'tiny.py'}:build", "--random-weights", "--labels", tmp_path / "labels.txt"]
    model += ["--input-size", "32", "--crop-pct", "1.0", "--mean", "0,0,0", "--std", "1,1,1", "--layer", "features"]
    measures = ["--road", "--road-percentiles", "25,75", "--occlusion-correlation", "--correlation-window", "8"]
    measures += ["--correlation-stride", "8", "--min-road-combined", "-1", "--min-sparseness", "0.01"]
    measures += ["--cam-mult-image", "--arcc", "--min-arcc", "0"]
    parts = tmp_path / "parts"
    for i in range(2):
        result = run_cli(
            "evaluate", images, "--annotations", truth, "-o", parts, "--shard", f"{i}/2", *ARGS, *model, *measures
        )
        assert result.exit_code == 0, result.output
    merged = run_cli("merge", parts)
    assert merged.exit_code == 0, merged.output

    again = tmp_path / "again"
    result = run_cli("evaluate", "--from", parts, "--annotations", truth, "-o", again, "-q", *model, *measures)
    assert result.exit_code == 0, result.output
    assert metrics_of(parts) == metrics_of(again)
    assert (parts / "per_image.jsonl").read_text() == (again / "per_image.jsonl").read_text()
    entry = metrics_of(parts)["methods"]["gradcam"]
    assert set(entry) >= {"road", "occlusion_correlation", "complexity", "sparseness", "cam_mult_image", "arcc"}
    assert entry["arcc"]["value"] is not None
    assert entry["cam_mult_image"]["confidence_change"] is not None
    values = [
        v
        for line in (parts / "per_image.jsonl").read_text().splitlines()
        for v in json.loads(line)["methods"]["gradcam"]["by_class"].values()
    ]
    assert len(values) == 4  # one ground-truth class on two images, the top-1 class on the others
    keys = {"road_combined", "occlusion_correlation", "complexity", "sparseness", "cam_mult_change", "arcc"}
    assert all(keys <= set(v) for v in values)
