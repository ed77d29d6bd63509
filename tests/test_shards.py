"""Job arrays: --shard I/N parts are disjoint and cover the inputs; camcli merge gives the unsharded summary."""

from __future__ import annotations

import json
import shutil

import pytest

from camcli.errors import CamcliError
from camcli.runners.shards import parse_shard, select

ARGS = ["-q", "--top-k", "1", "--save", "raw_map", "--overlay-format", "jpg"]


def test_parts_are_disjoint_and_cover_the_list():
    items = list(range(17))
    for n in (1, 2, 3, 5, 17, 20):
        parts = [select(items, (i, n)) for i in range(n)]
        assert [i for part in parts for i in part] == items  # in order, each once
    assert parse_shard("2/3") == (2, 3)
    assert parse_shard(None, {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "5"}) == (4, 5)
    assert parse_shard(
        None, {"SLURM_ARRAY_TASK_ID": "11", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "10"}
    ) == (1, 3)
    assert parse_shard(None, {}) is None
    for bad in ("3/3", "1", "a/b", "-1/2"):
        with pytest.raises(CamcliError, match="I/N"):
            parse_shard(bad)


def test_shards_merge_into_the_unsharded_summary(samples, tmp_path, run_cli):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert run_cli("explain", samples, "-o", whole, *ARGS).exit_code == 0
    seen = []
    for i in range(3):
        result = run_cli("explain", samples, "-o", parts, "--shard", f"{i}/3", *ARGS)
        assert result.exit_code == 0, result.output
        lines = (parts / "shards" / f"{i}-of-3" / "summary.jsonl").read_text().splitlines()
        seen += [json.loads(line)["path"] for line in lines]
        assert json.loads((parts / "shards" / f"{i}-of-3" / "run.json").read_text())["shard"] == [i, 3]
    assert len(seen) == len(set(seen)) == 7  # disjoint, covering
    result = run_cli("merge", parts)
    assert result.exit_code == 0, result.output
    merged_lines = [json.loads(line) for line in (parts / "summary.jsonl").read_text().splitlines()]
    whole_lines = [json.loads(line) for line in (whole / "summary.jsonl").read_text().splitlines()]
    assert [(m["path"], m["status"], m["json"], m["top1"]["class_index"]) for m in merged_lines] == [
        (w["path"], w["status"], w["json"], w["top1"]["class_index"]) for w in whole_lines
    ]
    # Other batches: the numbers agree to float precision, not bit for bit.
    assert all(
        m["top1"]["probability"] == pytest.approx(w["top1"]["probability"], rel=1e-5)
        for m, w in zip(merged_lines, whole_lines, strict=True)
    )
    merged = json.loads((parts / "run.json").read_text())
    assert merged["status"] == "complete"
    assert merged["counts"] == {"ok": 7, "failed": 0, "skipped": 0, "total": 7}
    for doc in whole.glob("*/explanation.json"):
        a, b = (json.loads(p.read_text())["predictions"] for p in (doc, parts / doc.relative_to(whole)))
        assert [p["class_index"] for p in a] == [p["class_index"] for p in b]
    # A missing shard is reported, not hidden; the next unsharded run resumes and writes the whole summary.
    shutil.rmtree(parts / "shards" / "1-of-3")
    result = run_cli("merge", parts)
    assert "missing shards [1]" in result.output
    assert json.loads((parts / "run.json").read_text())["status"] == "incomplete"
    assert run_cli("explain", samples, "-o", parts, *ARGS).exit_code == 0
    assert json.loads((parts / "run.json").read_text())["counts"]["skipped"] == 7
