"""camcli.outputs: the output folder's names, bounded reads of regular files only, saved maps read without
running anything, and RunFolder, the one reader of a run."""

from __future__ import annotations

import json
import os
import pickle
import threading
from pathlib import Path, PurePosixPath

import numpy as np
import pytest

from camcli import outputs
from camcli.outputs import RunFolder


def _fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


def _in_thread(fn, *args):
    """Call ``fn`` in a daemon thread: a call that blocks fails the test instead of hanging it."""
    found: dict[str, object] = {}

    def call():
        try:
            found["value"] = fn(*args)
        except BaseException as exc:
            found["error"] = exc

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(timeout=20)
    assert not thread.is_alive(), f"{fn.__name__} blocked"
    return found


# --- bounded reads ------------------------------------------------------------------------------


def test_read_bytes_reads_regular_files_up_to_the_limit(tmp_path):
    path = tmp_path / "f.json"
    path.write_bytes(b"0123456789")
    assert outputs.read_bytes(path, 10) == b"0123456789"
    with pytest.raises(OSError, match="has 10 bytes, over the limit of 9"):
        outputs.read_bytes(path, 9)
    with pytest.raises(FileNotFoundError):
        outputs.read_bytes(tmp_path / "missing", 10)
    with pytest.raises(OSError, match="not a regular file"):
        outputs.read_bytes(tmp_path, 10)


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = _fifo(tmp_path)  # nobody writes to it: opening it for reading would normally wait forever
    found = _in_thread(outputs.read_bytes, fifo, 100)
    assert isinstance(found["error"], OSError)
    assert "not a regular file" in str(found["error"])
    assert _in_thread(outputs.try_json, fifo) == {"value": None}
    assert _in_thread(lambda p: list(outputs.read_jsonl(p)), fifo) == {"value": []}
    assert not outputs.is_regular(fifo)
    assert outputs.is_regular(Path(__file__))


def test_json_readers(tmp_path):
    path = tmp_path / "doc.json"
    path.write_text('{"a": NaN}')
    assert np.isnan(outputs.read_json(path)["a"])  # taken; whoever uses it shows or refuses it
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="nested too deeply"):
        outputs.read_json(path)
    assert outputs.try_json(path) is None
    assert outputs.try_json(tmp_path / "missing.json") is None
    path.write_bytes(b'{"a": "\xff"}')
    assert outputs.try_json(path) is None


def test_read_jsonl_skips_torn_and_foreign_lines(tmp_path):
    path = tmp_path / "summary.jsonl"
    path.write_bytes(b'{"n": 1}\n\n[1, 2]\n"text"\n{"n": 2}\nnot json\n{"n": 3}\n{"n": 4, "tor')
    assert list(outputs.read_jsonl(path)) == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert list(outputs.read_jsonl(tmp_path / "missing.jsonl")) == []
    assert list(outputs.read_jsonl(path, limit=10)) == []  # over the limit: unreadable, nothing


# --- saved maps ---------------------------------------------------------------------------------


class _Plant:
    """Unpickled, this object would create the file ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_arrays_are_read_without_running_anything(tmp_path):
    planted = tmp_path / "planted"
    as_pickle = tmp_path / "pickle.npy"
    as_pickle.write_bytes(pickle.dumps(_Plant(planted)))
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([_Plant(planted), 1], dtype=object), allow_pickle=True)
    for path in (as_pickle, objects):
        with pytest.raises(ValueError, match="is not a NumPy array file"):
            outputs.load_map(path)
    assert not planted.exists()


@pytest.mark.parametrize(
    ("values", "allowed"),
    [
        (np.array([[0.5, 2.0]], np.float64), True),
        (np.array([[0.5, -2.0]], np.float16), True),
        (np.array([[1, -2], [3, 4]], np.int16), False),  # camcli writes floating-point maps only
        (np.array([[1, 2], [3, 255]], np.uint8), False),
        (np.array([[True, False]]), False),
        (np.array([[1 + 2j, 0]], np.complex64), False),
        (np.array([["a", "b"]]), False),
    ],
)
def test_floating_point_maps_become_float32_others_are_refused(tmp_path, values, allowed):
    path = tmp_path / "map.npy"
    np.save(path, values)
    if allowed:
        loaded = outputs.load_map(path)
        assert loaded.dtype == np.float32
        np.testing.assert_array_equal(loaded, values.astype(np.float32))
    else:
        with pytest.raises(ValueError, match=f"holds {values.dtype} values, not the floating-point map"):
            outputs.load_map(path)


def test_a_map_has_the_shape_and_values_of_a_map(tmp_path):
    path = tmp_path / "map.npy"
    np.save(path, np.ones((3, 4, 5), np.float32))
    with pytest.raises(ValueError, match=r"holds a 3×4×5 array, not a map"):
        outputs.load_map(path)  # a raw heat map is 2-D
    assert outputs.load_map(path, (2, 3)).shape == (3, 4, 5)  # a pixel-space map is 3×H×W
    for bad, message in [
        (np.ones((0, 4), np.float32), r"holds a 0×4 array, not a map"),
        (np.ones(4, np.float32), r"holds a 4 array, not a map"),
        (np.array([[1.0, np.nan]], np.float32), "NaN or infinite"),
        (np.array([[1.0, -np.inf]], np.float32), "NaN or infinite"),
    ]:
        np.save(path, bad)
        with pytest.raises(ValueError, match=message):
            outputs.load_map(path)
    np.save(path, np.ones((64, 64), np.float32))
    with pytest.raises(ValueError, match=r"cannot read .* over the limit of 100"):
        outputs.load_array(path, limit=100)
    path.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError, match="is not a NumPy array file"):
        outputs.load_map(path)


# --- documents ----------------------------------------------------------------------------------


def test_names_of_an_images_files():
    assert outputs.file_name("gradcam++", 282, "overlay", "png") == "gradcam++_282_overlay.png"
    pattern = outputs.output_file_pattern(("gradcam++", "occlusion"))
    assert pattern.match("gradcam++_282_overlay.webp")
    assert pattern.match("occlusion_0_raw.npy")
    assert not pattern.match("gradcamxx_282_overlay.png")  # "+" is a character here, not a repeat
    assert not pattern.match("layercam_1_raw.npy")  # another method: never removed as stale
    assert not pattern.match("gradcam++_x_raw.npy")
    assert not pattern.match("notes_1_raw.txt")


def test_entries_find_and_kinds_take_only_well_formed_entries():
    doc = {
        "explanations": [
            {"method": "gradcam", "class_index": 3, "files": {"overlay": "o.png"}},
            {"method": "gradcam", "class_index": True, "files": {}},  # a bool is not a class index
            {"method": 7, "class_index": 3},
            {"method": "saliency", "class_index": 3, "files": "x"},
            "junk",
            {"method": "toycam", "class_index": 4, "files": {"raw_map": "r.npy"}},  # a plugin not installed
            {"method": "pixelplug", "class_index": 4, "files": {"image": "i.png", "raw_map": "r.npy"}},
        ]
    }
    assert [(e["method"], e["class_index"]) for e in outputs.entries(doc)] == [
        ("gradcam", 3),
        ("toycam", 4),
        ("pixelplug", 4),
    ]
    assert outputs.entries({"explanations": "nope"}) == []
    assert outputs.find(doc, "gradcam", 3) == doc["explanations"][0]
    assert outputs.find(doc, "gradcam", 4) is None
    assert outputs.is_heat_map({"method": "gradcam", "files": {}})  # by the registry
    assert not outputs.is_heat_map({"method": "guided-backprop", "files": {"raw_map": "r.npy"}})
    assert outputs.is_heat_map(doc["explanations"][5])  # unknown method: by what it wrote
    assert not outputs.is_heat_map(doc["explanations"][6])


def test_explanation_documents_are_checked(tmp_path):
    good = {"schema_version": 1, "source": None, "explanations": []}
    assert outputs.explanation_doc(good) is good
    for bad in ([1], {"schema_version": 1, "source": "x", "explanations": []}, {"source": None}):
        assert outputs.explanation_doc(bad) is None
    path = tmp_path / "explanation.json"
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"is not a camcli explanation\.json"):
        outputs.read_explanation(path)
    path.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(ValueError, match="is not UTF-8 text"):
        outputs.read_explanation(path)
    with pytest.raises(ValueError, match="cannot read"):
        outputs.read_explanation(tmp_path / "missing.json")


def test_summary_line_and_strict_json():
    doc = {
        "status": "ok",
        "error": None,
        "predictions": [{"class_index": 1, "label": "a", "logit": 2.0, "probability": 0.5}],
    }
    assert outputs.summary_line("in/x.png", PurePosixPath("x.png"), doc) == {
        "path": "in/x.png",
        "status": "ok",
        "top1": {"class_index": 1, "label": "a", "probability": 0.5},
        "json": "x.png/explanation.json",
        "error": None,
    }
    failed = {"status": "error", "error": {"type": "ImageError", "message": "broken"}, "predictions": []}
    assert outputs.summary_line("y.png", PurePosixPath("y.png"), failed)["error"] == "broken"
    assert outputs.json_text({"name": "caf\udce9"}) == '{"name": "caf\\udce9"}'  # an undecodable file name
    assert json.loads(outputs.json_text({"name": "café"})) == {"name": "café"}
    with pytest.raises(ValueError, match="not JSON compliant"):
        outputs.json_text({"value": float("nan")})


# --- the run folder -----------------------------------------------------------------------------


def _doc(path: str, status: str = "ok") -> dict:
    return {"schema_version": 1, "status": status, "source": {"path": path}, "explanations": []}


def _image(out: Path, rel: str, doc: object) -> None:
    (out / rel).mkdir(parents=True, exist_ok=True)
    text = doc if isinstance(doc, str) else json.dumps(doc)
    (out / rel / "explanation.json").write_text(text)


def test_run_folder_images(tmp_path):
    out = tmp_path / "out"
    _image(out, "a.png", _doc("in/a.png"))
    _image(out, "sub/b.png", _doc("in/sub/b.png", "error"))
    _image(out, "broken.png", '{"schema_version": 1, "sou')  # being written, or damaged
    _image(out, "report/thumbs.png", _doc("not/an/image.png"))  # the report's folder
    _image(out, "shards/0-of-2/c.png", _doc("in/c.png"))  # a shard's records
    _image(out, ".hidden/d.png", _doc("in/d.png"))
    _image(out, "nested/e.png", _doc("in/e.png"))
    (out / "nested" / ".camcli-output").write_text("{}")  # another run's output folder, inside this one
    _image(out, "old/f.png", _doc("in/f.png"))
    (out / "old" / "run.json").write_text("{}")  # another run's folder, from before markers
    (out / "summary.jsonl").write_text(
        "\n".join(
            json.dumps(line)
            for line in [
                {"path": "in/a.png", "json": "a.png/explanation.json"},
                {"path": "in/gone.png", "json": "gone.png/explanation.json"},  # being redone, or lost
                {"path": "in/sub/b.png", "json": "elsewhere/b.png/explanation.json"},  # known by its path
                {"path": "in/up.png", "json": "../up.png/explanation.json"},  # outside the folder
                {"path": "in/abs.png", "json": "/abs.png/explanation.json"},
                {"path": 3, "json": "three.png/explanation.json"},
            ]
        )
        + '\n{"path": "in/torn.png", "js'
    )
    (out / "run.json").write_text(json.dumps({"status": "complete"}))
    folder = RunFolder(out)
    assert folder.exists()
    assert folder.run_record() == {"status": "complete"}
    images = folder.images()
    assert [(i.rel.as_posix(), i.status, i.path) for i in images] == [
        ("a.png", "ok", "in/a.png"),
        ("broken.png", "unreadable", "broken.png"),
        ("sub/b.png", "error", "in/sub/b.png"),
        ("gone.png", "missing", "in/gone.png"),
    ]
    assert images[1].doc is None
    assert images[1].problem  # why it could not be read
    assert images[3].folder == out / "gone.png"
    assert images[3].line == {"path": "in/gone.png", "json": "gone.png/explanation.json"}
    assert not RunFolder(tmp_path / "nowhere").exists()
    assert RunFolder(tmp_path / "nowhere").images() == []
    assert RunFolder(tmp_path / "nowhere").run_record() is None
