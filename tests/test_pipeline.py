"""camcli.pipeline: batches, decoding ahead in order, the resume rule (whole batches), results in input order
(tests: conftest's TinyNet on a few small real image files and a broken one)."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from camcli.discover import discover
from camcli.job import ExplainJob
from camcli.pipeline import ahead, batches, explain, redo_whole, run
from camcli.records import Failure, ImageResult, Skipped
from camcli.session import resolve

NAMES = ["a.png", "b.png", "c.jpg", "d.png", "e.png"]


def test_batches():
    assert list(batches(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(batches(iter(range(4)), 2)) == [[0, 1], [2, 3]]
    assert list(batches([], 3)) == []


def test_redo_whole_skips_a_batch_only_when_every_image_is_finished():
    assert not redo_whole([True, True, True])
    assert redo_whole([True, False, True])
    assert redo_whole([False])


def test_ahead_keeps_the_input_order_and_its_window():
    pulled: list[int] = []

    def items():
        for i in range(40):
            pulled.append(i)
            yield i

    def slow_square(i: int) -> int:
        time.sleep(random.Random(i).uniform(0, 0.004))  # finish out of order
        return i * i

    with ThreadPoolExecutor(4) as pool:
        results = ahead(pool, slow_square, items(), window=5)
        assert next(results) == 0
        assert len(pulled) <= 6  # the window, plus the one submitted when the first was taken
        assert list(results) == [i * i for i in range(1, 40)]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for name, size in zip(NAMES, [(40, 30), (32, 32), (0, 0), (50, 64), (36, 36)], strict=True):
        if name == "c.jpg":
            (root / name).write_text("not a picture")
        else:
            Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(root / name)
    return root


@pytest.fixture(scope="module")
def session(tiny_model):
    return resolve(ExplainJob(methods=("gradcam", "saliency"), top_k=2, batch_size=2), tiny_model)


@pytest.fixture(scope="module")
def uninterrupted(session, folder):
    return list(explain(session, discover([folder])))


def _kinds(outcomes) -> list[str]:
    return [type(o).__name__ for o in outcomes]


def _name(outcome) -> str:
    item = outcome.prepared.item if isinstance(outcome, ImageResult) else outcome.item
    return item.rel.as_posix()


def _same_maps(a: ImageResult, b: ImageResult) -> None:
    assert [(e.method, e.class_index) for e in a.explanations] == [(e.method, e.class_index) for e in b.explanations]
    for x, y in zip(a.explanations, b.explanations, strict=True):
        assert np.array_equal(x.raw_map.numpy(), y.raw_map.numpy())


def test_every_image_has_one_outcome_in_input_order(uninterrupted):
    assert [_name(o) for o in uninterrupted] == NAMES
    assert _kinds(uninterrupted) == ["ImageResult", "ImageResult", "Failure", "ImageResult", "ImageResult"]
    broken = uninterrupted[2]
    assert isinstance(broken, Failure)
    assert broken.error_type == "ImageError"
    first = uninterrupted[0]
    assert [(e.method, e.rank) for e in first.explanations] == [
        ("gradcam", 1),
        ("saliency", 1),
        ("gradcam", 2),
        ("saliency", 2),
    ]
    assert first.explanations[0].raw_map.shape == (16, 16)  # the layer's grid
    assert first.explanations[1].raw_map.shape == (3, 32, 32)  # an input-space gradient
    assert first.explanations[1].bbox is None
    assert len(first.predictions) == 4  # at most five: the model has four classes


def test_decoding_ahead_in_threads_gives_the_same_results(session, folder, uninterrupted):
    with ThreadPoolExecutor(3) as decoders:
        threaded = list(explain(session, discover([folder]), decoders))
    assert _kinds(threaded) == _kinds(uninterrupted)
    for a, b in zip(threaded, uninterrupted, strict=True):
        if isinstance(a, ImageResult):
            _same_maps(a, b)


def test_resume_skips_whole_finished_batches_and_redoes_the_others(session, folder, uninterrupted):
    # Batches of two: [a, b] half finished: both redone; [c, d]: c cannot be decoded (it never joins a
    # batch), d finished: skipped; [e] finished: skipped.
    finished = {"a.png", "d.png", "e.png"}
    asked: list[str] = []

    def done(item, sha256):
        asked.append(item.rel.as_posix())
        return {"status": "ok", "name": item.rel.as_posix()} if item.rel.as_posix() in finished else None

    outcomes = list(explain(session, discover([folder]), done=done))
    assert _kinds(outcomes) == ["ImageResult", "ImageResult", "Failure", "Skipped", "Skipped"]
    assert [o.doc["name"] for o in outcomes if isinstance(o, Skipped)] == ["d.png", "e.png"]
    assert asked == NAMES  # every file is hashed and asked about, the broken one too
    for a, b in zip(outcomes[:2], uninterrupted[:2], strict=True):
        _same_maps(a, b)  # a.png redone in the same batch as before: bit-identical


def test_stop_lets_no_further_batch_start(session, folder):
    stop = threading.Event()
    outcomes = explain(session, discover([folder]), stop=stop)
    first_batch = [next(outcomes), next(outcomes)]
    stop.set()
    assert list(outcomes) == []
    assert [_name(o) for o in first_batch] == ["a.png", "b.png"]
    stop.clear()
    stop.set()
    assert list(explain(session, discover([folder]), stop=stop)) == []


def test_run_writes_each_outcome_behind_the_model_in_input_order(session, folder):
    written: list[str] = []
    lock = threading.Lock()

    def write(outcome):
        with lock:
            written.append(_name(outcome))
        return f"written {_name(outcome)}"

    pairs = list(run(session, discover([folder]), write))
    assert [(_name(o), w) for o, w in pairs] == [(n, f"written {n}") for n in NAMES]
    assert sorted(written) == NAMES  # each once
