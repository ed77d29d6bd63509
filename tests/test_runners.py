"""camcli.runners (the registry) and runners/base.py: what every runner shares, i.e. the output folder's
lock, the accounting of every image (summary.jsonl, run.json, counts, the exit code) and the folder marker."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import pytest

from camcli import runners
from camcli.errors import EXIT_OK, EXIT_SOME_FAILED, CamcliError, RunLocked
from camcli.lock import RunLock
from camcli.records import ImageItem
from camcli.runners.base import Accounting, locked, mark_output_folder, runner_for


def _doc(status: str = "ok", label: str = "cat") -> dict:
    return {
        "status": status,
        "error": None if status == "ok" else {"type": "ImageError", "message": "not an image"},
        "predictions": [{"class_index": 1, "label": label, "logit": 3.0, "probability": 0.9}] if status == "ok" else [],
    }


def _item(name: str) -> ImageItem:
    return ImageItem(Path("in") / name, PurePosixPath(name))


def _run_json(folder: Path) -> dict:
    return json.loads((folder / "run.json").read_text())


def test_accounting_counts_every_image_and_owns_the_exit_code(tmp_path):
    out = tmp_path / "out"
    record = Accounting(out, {"fingerprint": "f" * 32})
    assert _run_json(out)["status"] == "running"  # a run killed later is not taken for a finished one
    assert record.exit_code == EXIT_OK
    line = record.add("in/a.png", _item("a.png"), _doc())
    assert line == {
        "path": "in/a.png",
        "status": "ok",
        "top1": {"class_index": 1, "label": "cat", "probability": 0.9},
        "json": "a.png/explanation.json",
        "error": None,
    }
    record.add("in/b.png", _item("b.png"), _doc(), skipped=True)  # done by the run being resumed
    record.add("in/c.png", _item("c.png"), _doc("error"))
    record.add("in/d.png", _item("d.png"), _doc("error"), skipped=True)  # failed then: still failed
    assert record.exit_code == EXIT_SOME_FAILED
    closed = record.close()
    assert closed == _run_json(out)
    assert closed["fingerprint"] == "f" * 32
    assert closed["status"] == "complete"
    assert closed["counts"] == {"ok": 1, "failed": 2, "skipped": 1, "total": 4}
    assert closed["failures"] == [
        {"path": "in/c.png", "error": "not an image"},
        {"path": "in/d.png", "error": "not an image"},
    ]
    lines = [json.loads(text) for text in (out / "summary.jsonl").read_text().splitlines()]
    assert [(x["path"], x["status"]) for x in lines] == [
        ("in/a.png", "ok"),
        ("in/b.png", "ok"),
        ("in/c.png", "error"),
        ("in/d.png", "error"),
    ]


def test_a_new_run_starts_a_new_summary_and_removes_a_killed_runs_temporary_file(tmp_path):
    out = tmp_path / "out"
    first = Accounting(out, {})
    first.add("in/a.png", _item("a.png"), _doc())
    first.close(status="interrupted")
    assert _run_json(out)["status"] == "interrupted"
    (out / ".run.json.tmp123").write_text("half")
    second = Accounting(out, {})
    assert not (out / ".run.json.tmp123").exists()
    assert (out / "summary.jsonl").read_text() == ""
    second.close()
    assert _run_json(out)["counts"] == {"ok": 0, "failed": 0, "skipped": 0, "total": 0}


def test_a_shard_keeps_its_records_in_its_own_folder(tmp_path):
    out = tmp_path / "out"
    record = Accounting(out, {"shard": [1, 3]}, (1, 3))
    record.add("in/a.png", _item("a.png"), _doc())
    record.close()
    shard = out / "shards" / "1-of-3"
    assert _run_json(shard)["counts"]["ok"] == 1
    assert json.loads((shard / "summary.jsonl").read_text())["json"] == "a.png/explanation.json"
    assert not (out / "run.json").exists()
    assert (out / ".camcli-output").is_file()


def test_mark_output_folder_marks_camclis_folders_only(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    mark_output_folder(empty)
    marker = empty / ".camcli-output"
    assert "camcli" in json.loads(marker.read_text())
    before = marker.stat().st_mtime_ns
    mark_output_folder(empty)  # already marked: left as it is
    assert marker.stat().st_mtime_ns == before

    camclis = tmp_path / "camclis"  # a run from before markers: only camcli's own files
    camclis.mkdir()
    for name in ("run.json", "summary.jsonl", ".camcli-lock", ".camcli-lock-shard-0-of-2", ".run.json.tmp7"):
        (camclis / name).write_text("")
    (camclis / "shards").mkdir()
    mark_output_folder(camclis)
    assert (camclis / ".camcli-output").is_file()

    yours = tmp_path / "photos"  # a folder of yours used as --out: a marker would hide your images
    yours.mkdir()
    (yours / "holiday.jpg").write_bytes(b"")
    mark_output_folder(yours)
    assert not (yours / ".camcli-output").exists()
    assert Accounting(yours, {}).close()["status"] == "complete"
    assert not (yours / ".camcli-output").exists()


def test_locked_holds_the_folder_and_leaves_no_trace_of_a_failed_start(tmp_path):
    out = tmp_path / "out"
    with locked(out), pytest.raises(RunLocked):
        RunLock(out).acquire()
    with pytest.raises(CamcliError, match="bad option"), locked(out):  # the folder existed: kept
        raise CamcliError("bad option")
    assert out.is_dir()
    fresh = tmp_path / "fresh"
    made = []

    def fail_after_start():
        with locked(fresh):
            made.append(fresh.is_dir())
            raise CamcliError("bad option")

    with pytest.raises(CamcliError, match="bad option"):
        fail_after_start()
    assert made == [True]
    assert not fresh.exists()  # made for the run and holding only its lock files: removed
    blocker = tmp_path / "file"
    blocker.write_text("")
    with (
        pytest.raises(CamcliError, match=r"Cannot write to output folder .*Pass a writable --out DIR"),
        locked(blocker / "out"),
    ):
        pass


def test_the_registry_of_runners():
    assert runners.NAMES == ("local", "ray")
    assert runners.DEFAULT == "local"
    assert runners.REGISTRY["ray"].module == "camcli.runners.ray"
    assert runners.REGISTRY["ray"].extra == "ray"
    from camcli.job import ExplainJob

    assert hasattr(runner_for(ExplainJob()), "outcomes")
    options = {"ray_workers": "1,2", "ray_address": None, "top_k": 3}
    assert runners.split_options(options) == {"ray": {"workers": "1,2"}}
    assert options == {"top_k": 3}
    assert runners.check_options("ray", {"ray": {"workers": "2"}}) == {"workers": "2"}
    assert runners.check_options("local", {"ray": {}}) == {}
    with pytest.raises(CamcliError, match=r"--ray-workers applies to --runner ray, not --runner local\. Add --runner"):
        runners.check_options("local", {"ray": {"workers": "2"}})
    with pytest.raises(CamcliError, match=r"--ray-workers takes N or MIN,MAX with MIN <= MAX"):
        runners.resolve_params("ray", {"workers": "1,2,3"})
    with pytest.raises(CamcliError, match="Unknown runner 'slurm'"):
        runners.resolve_params("slurm", {})
