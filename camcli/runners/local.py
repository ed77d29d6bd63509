"""The local runner: one process, a thread pool decoding ahead of the model and one writing behind it."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..allocator import keep_freed_memory
from ..discover import printable
from ..errors import EXIT_INTERRUPTED, CamcliError
from ..job import ExplainJob
from ..lock import LOCK_NAME, RunLock
from ..pipeline import run as run_pipeline
from ..records import ImageItem, Skipped
from ..report import Report
from ..session import Session, open_session
from ..writer import finished_doc, item_of, write
from .shards import lock_name, records_folder


def run(
    job: ExplainJob,
    items: Sequence[ImageItem],
    emit: Callable[[dict[str, Any]], None] | None = None,
    stop: threading.Event | None = None,
    say: Callable[[str], None] = print,
) -> int:
    """Explain and write ``items``; returns the exit code. ``emit`` receives each image's document
    (with a "json" key: its path) as it finishes; ``say`` prints the closing summary."""
    keep_freed_memory()  # a long run reuses its memory instead of faulting it in again each batch
    stop = stop or threading.Event()
    with output_lock(job.out, lock_name(job.shard)):  # before the model loads: a second run stops at once
        session = open_session(job)
        return execute(job, session, items, emit, stop, say)


@contextmanager
def output_lock(out: Path, name: str = LOCK_NAME) -> Iterator[RunLock]:
    """Hold the output folder's lock; a folder created for it and left empty by a failed start is removed."""
    created = not out.exists()
    lock = RunLock(out, name)
    try:
        lock.acquire()
    except OSError as exc:
        raise CamcliError(
            f"Cannot write to output folder '{out}': {exc.strerror or exc}. Pass a writable --out DIR."
        ) from exc
    try:
        yield lock
    except CamcliError:
        if created and [p.name for p in out.iterdir()] == [name]:  # nothing but the lock: leave no trace
            (out / name).unlink(missing_ok=True)
            out.rmdir()
        raise
    finally:
        lock.release()


Outcomes = Iterator[tuple[ImageItem, dict[str, Any], bool]]  # (image, its explanation.json, skipped by --resume)


def local_outcomes(job: ExplainJob, session: Session, items: Sequence[ImageItem], stop: threading.Event) -> Outcomes:
    """Every image explained and written in this process, in input order."""
    done = partial(finished_doc, job.out, ctx=session.ctx) if job.resume else None
    for outcome, doc in run_pipeline(
        session.loaded, items, session.options, partial(write, job.out, ctx=session.ctx), done, stop
    ):
        yield item_of(outcome), doc, isinstance(outcome, Skipped)


def execute(
    job: ExplainJob,
    session: Session,
    items: Sequence[ImageItem],
    emit: Callable[[dict[str, Any]], None] | None,
    stop: threading.Event,
    say: Callable[[str], None],
    outcomes: Callable[[ExplainJob, Session, Sequence[ImageItem], threading.Event], Outcomes] = local_outcomes,
) -> int:
    """Record every outcome (summary.jsonl, run.json, --json, the progress bar) and return the exit code.
    ``outcomes`` explains and writes the images: here, or on a Ray cluster (runners.ray)."""
    out = job.out
    records = records_folder(out, job.shard)
    try:
        report = Report(out, {**session.run_info, "shard": list(job.shard) if job.shard else None}, records)
    except OSError as exc:
        raise CamcliError(
            f"Cannot write to output folder '{out}': {exc.strerror or exc}. Pass a writable --out DIR."
        ) from exc
    try:
        with tqdm(total=len(items), unit="img", file=sys.stderr, disable=job.quiet, desc="explain") as bar:
            for item, doc, skipped in outcomes(job, session, items, stop):
                line = report.add(printable(item.path), printable(item.rel), doc, skipped=skipped)
                if emit is not None:
                    emit({"json": printable(out / line["json"]), **doc})
                bar.update(1)
        if stop.is_set():
            report.close(status="interrupted")
            say("Interrupted: stopped after the current batch. Run the same command again to resume.")
            return EXIT_INTERRUPTED
    except BrokenPipeError:  # whoever read --json stopped reading (`| head`): stop quietly
        _close_quietly(report, "interrupted")
        raise
    except BaseException as exc:
        _close_quietly(report, "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed")
        if isinstance(exc, OSError):
            raise CamcliError(
                f"Cannot write outputs under '{out}': {exc.strerror or exc}. "
                "Free some space or pass a writable --out DIR."
            ) from exc
        raise
    summary = report.close()
    if not job.quiet:
        counts = summary["counts"]
        skip_note = f", {counts['skipped']} skipped (already done)" if counts["skipped"] else ""
        part = f" (shard {job.shard[0]}/{job.shard[1]}; 'camcli merge {out}' combines the shards)" if job.shard else ""
        say(
            f"{counts['total']} image{'' if counts['total'] == 1 else 's'}: {counts['ok']} ok, "
            f"{counts['failed']} failed{skip_note}. Outputs in {out}/{part}"
        )
        for failure in summary["failures"]:
            say(f"  failed: {failure['path']}: {failure['error']}")
    return report.exit_code


def _close_quietly(report: Report, status: str) -> None:
    with suppress(OSError):  # record how far the run got, if the output folder still takes it
        report.close(status=status)
