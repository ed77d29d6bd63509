"""The Ray runner (``--engine ray``): the same per-batch explain and write steps, on Ray Data.

- The driver holds the output folder's lock, loads the model once for the run's record and
  fingerprint, and skips images already finished (``--resume``, by ``pipeline.redo_whole``: a batch
  of the input list is skipped only when all of it is finished) before anything is scheduled.
- The rest become a dataset: decoding and preprocessing run as Ray tasks (CPU), explaining in a pool of
  actors (``map_batches`` with a class: each actor loads the model once), which write each image's
  outputs into the output folder themselves (a file system every node sees), atomically, JSON last.
- The driver streams the results back, in input order, for summary.jsonl, run.json, the progress bar
  and ``--json``.
- An actor or node that dies is restarted by Ray and its batch retried; writes are idempotent (an image
  written twice ends the same), so a run ends with every image written once.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch

from ..errors import CamcliError
from ..job import ExplainJob
from ..outputs import json_text
from ..pipeline import batches, redo_whole
from ..records import Failure, Geometry, ImageItem, Prepared, SourceInfo
from ..session import Session, resolve
from ..targets import Targets
from ..writer import RunContext, finished_doc, write
from .base import Outcomes

INSTALL = "pip install -e '.[ray]'"


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise CamcliError(f"--engine ray needs Ray: {INSTALL} (or pip install 'ray[data]'), on every node.") from None
    return ray


class RayRunner:
    """The driver connects (or starts a cluster), resolves the job once on the CPU to describe the run,
    and streams the workers' outcomes back."""

    @contextmanager
    def session(self, job: ExplainJob) -> Iterator[Session]:
        ray = _ray()
        with connected(ray, job):
            session = resolve(dataclasses.replace(job, device="cpu"))  # the driver only describes the run
            # Recorded and fingerprinted with the workers' device, which their outputs depend on.
            yield dataclasses.replace(session, device=torch.device(worker_device(job))).with_targets(session.targets)

    def outcomes(self, session: Session, items: Sequence[ImageItem], stop: threading.Event) -> Outcomes:
        return ray_outcomes(session, items, stop)


RUNNER = RayRunner()


def worker_device(job: ExplainJob) -> str:
    """Workers run on a GPU when they are given one, else on the device asked for (auto: the CPU)."""
    if float(job.runner_options["gpus_per_worker"]) > 0:
        return "cuda" if job.device in ("auto", "cpu") else job.device
    return "cpu" if job.device == "auto" else job.device


@contextmanager
def connected(ray: Any, job: ExplainJob) -> Iterator[None]:
    """Connect to ``--ray-address`` (else RAY_ADDRESS, else a running cluster), or start a local instance."""
    address = str(job.runner_options["address"]) or os.environ.get("RAY_ADDRESS")
    options = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": "WARNING",
        "configure_logging": True,
    }
    if ray.is_initialized():
        yield
        return
    try:
        if address:
            ray.init(address=address, **options)
        else:
            try:
                ray.init(address="auto", **options)
            except (ConnectionError, RuntimeError):
                ray.init(num_cpus=os.cpu_count(), **options)
    except Exception as exc:
        raise CamcliError(
            f"Cannot start or reach a Ray cluster ({address or 'local'}): {exc}. "
            "Pass --ray-address HOST:PORT of a running cluster, or leave it out to start one here."
        ) from exc
    try:
        yield
    finally:
        ray.shutdown()


def ray_outcomes(session: Session, items: Sequence[ImageItem], stop: threading.Event) -> Outcomes:
    """Finished images first checked here; the rest explained on the cluster; all yielded in input order."""
    from ..digest import sha256_of

    job = session.job
    ray = _ray()

    def finished(item: ImageItem) -> dict[str, Any] | None:
        try:
            return finished_doc(job.out, item, sha256_of(item.path), session.ctx)
        except OSError:
            return None

    done: dict[int, dict[str, Any]] = {}
    if job.resume:
        with ThreadPoolExecutor(session.workers) as pool:
            docs = list(pool.map(finished, items))
        for start, chunk in zip(range(0, len(items), job.batch_size), batches(docs, job.batch_size), strict=True):
            if not redo_whole([doc is not None for doc in chunk]):
                done.update({start + i: doc for i, doc in enumerate(chunk) if doc is not None})
    todo = [i for i in range(len(items)) if i not in done]
    rows = iter(()) if not todo else _schedule(ray, session, [(i, items[i]) for i in todo])
    for index, item in enumerate(items):
        if stop.is_set():
            return
        if index in done:
            yield item, done[index], True
            continue
        row = next(rows)
        if int(row["index"]) != index:
            raise RuntimeError(f"Ray returned image {row['index']} where {index} was expected")
        yield item, _json(row["doc"]), False


def _json(text: Any) -> dict[str, Any]:
    import json

    return dict(json.loads(str(text)))


def _schedule(ray: Any, session: Session, todo: list[tuple[int, ImageItem]]) -> Iterator[dict[str, Any]]:
    """The dataset: decode tasks, then the explaining actors; rows back in input order."""
    job = session.job
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False  # camcli's own bar counts the images
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    data = session.loaded.data
    # Paths travel as bytes: names that are not UTF-8 survive.
    dataset = ray.data.from_items(
        [{"index": i, "path": os.fsencode(item.path), "rel": item.rel.as_posix()} for i, item in todo]
    )
    dataset = dataset.map_batches(
        decode_batch,
        fn_kwargs={"data": data, "max_pixels": job.max_pixels},
        batch_size=job.batch_size,
        batch_format="pandas",
    )
    given = job.runner_options["workers"]
    low, high = (given[0], given[-1]) if isinstance(given, tuple) and given else default_workers(ray, job)
    worker_job = dataclasses.replace(job, device=session.device.type, workers=1)
    gpus = float(job.runner_options["gpus_per_worker"])
    dataset = dataset.map_batches(
        Explain,
        fn_constructor_kwargs={"job": worker_job, "ctx": session.ctx, "targets": session.targets},
        batch_size=job.batch_size,
        batch_format="pandas",
        compute=ray.data.ActorPoolStrategy(min_size=low, max_size=high),
        num_gpus=gpus or None,
    )  # Ray Data restarts a dead actor and retries its batch
    return iter(dataset.iter_rows())


def default_workers(ray: Any, job: ExplainJob) -> tuple[int, int]:
    """One actor per GPU share when workers take GPUs; else up to half the cluster's CPUs."""
    resources = ray.cluster_resources()
    gpus = float(job.runner_options["gpus_per_worker"])
    if gpus > 0:
        return 1, max(1, int(resources.get("GPU", 0) // gpus))
    return 1, max(1, int(resources.get("CPU", 1)) // 2)


def decode_batch(batch: Any, data: Any, max_pixels: int) -> Any:
    """A Ray Data task: decode and preprocess images (CPU); a file that cannot be used becomes a failure row."""
    from ..preprocess import prepare

    rows = []
    for index, path, rel in zip(batch["index"], batch["path"], batch["rel"], strict=True):
        outcome = prepare(ImageItem(Path(os.fsdecode(path)), PurePosixPath(rel)), data, max_pixels=max_pixels)
        rows.append({"index": int(index), "path": path, "rel": rel, **_encode(outcome)})
    return _frame(rows)


def _frame(rows: list[dict[str, Any]]) -> Any:
    import pandas as pd

    return pd.DataFrame(rows)


def _encode(outcome: Any) -> dict[str, Any]:
    """A Prepared or Failure as plain columns (the original image as bytes, the tensor as bytes)."""
    if isinstance(outcome, Failure):
        return {
            "failure": json_text(dataclasses.asdict(outcome.source) if outcome.source else None),
            "error": json_text([outcome.error_type, outcome.message]),
            "image": b"",
            "tensor": b"",
            "shape": "",
            "geometry": "",
            "source": "",
        }
    image = np.asarray(outcome.image, dtype=np.uint8)
    tensor = outcome.tensor.numpy()
    return {
        "failure": "",
        "error": "",
        "image": image.tobytes(),
        "tensor": tensor.tobytes(),
        "shape": json_text([list(image.shape), list(tensor.shape)]),
        "geometry": json_text(dataclasses.asdict(outcome.geometry)),
        "source": json_text(dataclasses.asdict(outcome.source)),
    }


def _decode(row: Any) -> Any:
    import json

    import torch
    from PIL import Image

    item = ImageItem(Path(os.fsdecode(row["path"])), PurePosixPath(row["rel"]))
    if row["error"]:
        kind, message = json.loads(row["error"])
        source = json.loads(row["failure"])
        return Failure(item, kind, message, SourceInfo(**source) if source else None)
    image_shape, tensor_shape = json.loads(row["shape"])
    image = Image.fromarray(np.frombuffer(row["image"], dtype=np.uint8).reshape(image_shape))
    tensor = torch.from_numpy(np.frombuffer(row["tensor"], dtype=np.float32).reshape(tensor_shape).copy())
    geometry = json.loads(row["geometry"])
    geometry = Geometry(
        geometry["width"],
        geometry["height"],
        tuple(geometry["resized"]),
        tuple(geometry["crop_box"]),
        tuple(geometry["input_size"]),
    )
    return Prepared(item, SourceInfo(**json.loads(row["source"])), image, tensor, geometry)


class Explain:
    """A Ray Data actor: loads the model once, explains batches and writes each image's outputs."""

    def __init__(self, job: ExplainJob, ctx: RunContext, targets: Targets) -> None:
        from ..allocator import keep_freed_memory as keep

        keep()
        self.job, self.ctx = job, ctx
        self.session = resolve(job).with_targets(targets)  # the driver's: e.g. each image's ground truth
        self.explainer = self.session.explainer()
        self.explainer.__enter__()  # the actor owns its model: the hooks stay for its life

    def __call__(self, batch: Any) -> Any:
        from ..pipeline import explain_batch

        outcomes = [_decode(row) for _, row in batch.iterrows()]
        good = [o for o in outcomes if isinstance(o, Prepared)]
        results = iter(explain_batch(self.explainer, self.session, good) if good else [])
        docs = []
        for outcome in outcomes:
            result = next(results) if isinstance(outcome, Prepared) else outcome
            docs.append(json_text(write(self.job.out, result, self.ctx)))
        return _frame([{"index": int(i), "doc": d} for i, d in zip(batch["index"], docs, strict=True)])
