"""What every runner shares: the output folder's lock, the run's accounting (summary.jsonl as images
finish, run.json, the progress bar, ``--json`` lines, the exit code), interruption, and the resume rule.

A runner (``runners.local``, ``runners.ray``) adds only how batches are scheduled: its ``Runner``
resolves the job into a session (connecting to what it needs first) and yields the images' outcomes,
explained and written, in input order.
"""

from __future__ import annotations

import importlib
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .. import __version__
from ..discover import printable
from ..errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_FAILED, CamcliError
from ..job import ExplainJob
from ..lock import RunLock
from ..outputs import CAMCLI_FILES, LOCK, MARKER, RUN, SUMMARY, json_text, summary_line
from ..records import ImageItem
from . import REGISTRY
from .shards import records_folder

if TYPE_CHECKING:
    from ..session import Session

Outcomes = Iterator[tuple[ImageItem, dict[str, Any], bool]]  # (image, its explanation.json, skipped by --resume)


class Runner(Protocol):
    """How a runner schedules a job (see ``runners.local`` and ``runners.ray``)."""

    def session(self, job: ExplainJob) -> AbstractContextManager[Session]:
        """Connect to what the runner needs and resolve the job; the connection lasts the block."""
        ...

    def outcomes(self, session: Session, items: Sequence[ImageItem], stop: threading.Event) -> Outcomes:
        """Every image explained (or skipped by ``--resume``, following ``pipeline.redo_whole``) and
        written, in input order; no further batch starts once ``stop`` is set."""
        ...


def runner_for(job: ExplainJob) -> Runner:
    """The job's runner, imported now (it may import torch, Ray)."""
    module = importlib.import_module(REGISTRY[job.runner].module)
    made: Runner = module.RUNNER
    return made


@dataclass(frozen=True)
class RunResult:
    """What a run did: its exit code and record (run.json as written)."""

    code: int
    out: Path
    record: dict[str, Any] = field(default_factory=dict)
    session: Session | None = None

    @property
    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = self.record.get("counts", {})
        return counts

    @property
    def failures(self) -> list[dict[str, Any]]:
        failures: list[dict[str, Any]] = self.record.get("failures", [])
        return failures

    @property
    def status(self) -> str:
        return str(self.record.get("status", ""))


@contextmanager
def locked(out: Path, shard: tuple[int, int] | None = None) -> Iterator[RunLock]:
    """Hold the output folder's lock (see ``camcli.lock``); a folder created for it and left empty by a
    failed start is removed."""
    created = not out.exists()
    lock = RunLock(out, shard)
    try:
        lock.acquire()
    except OSError as exc:
        raise CamcliError(
            f"Cannot write to output folder '{out}': {exc.strerror or exc}. Pass a writable --out DIR."
        ) from exc
    try:
        yield lock
    except CamcliError:
        lock.release()
        if created:
            _remove_if_only_locks(out)
        raise
    finally:
        lock.release()


def _remove_if_only_locks(out: Path) -> None:
    """A folder made for a run that failed to start, holding nothing but lock files: leave no trace."""
    with suppress(OSError):
        leftovers = list(out.iterdir())
        if all(path.name.startswith(LOCK) for path in leftovers):
            for path in leftovers:
                path.unlink(missing_ok=True)
            out.rmdir()


def run(
    job: ExplainJob,
    items: Sequence[ImageItem],
    emit: Callable[[dict[str, Any]], None] | None = None,
    stop: threading.Event | None = None,
    adjust: Callable[[Session], Session] | None = None,
) -> RunResult:
    """Explain and write ``items`` with the job's runner, accounting for every image. The caller holds
    the folder's lock (``locked``). ``emit`` receives each image's document (with a "json" key: its
    path) as it finishes; ``adjust`` may change the session before any image (evaluate adds each
    image's ground-truth classes)."""
    from ..allocator import keep_freed_memory

    keep_freed_memory()  # a long run reuses its memory instead of faulting it in again each batch
    stop = stop or threading.Event()
    runner = runner_for(job)
    with runner.session(job) as session:
        if adjust is not None:
            session = adjust(session)
        return account(job, session, items, emit, stop, runner)


def account(
    job: ExplainJob,
    session: Session,
    items: Sequence[ImageItem],
    emit: Callable[[dict[str, Any]], None] | None,
    stop: threading.Event,
    runner: Runner,
) -> RunResult:
    """Record every outcome (summary.jsonl, run.json, --json, the progress bar); the run's result."""
    from tqdm import tqdm

    out = job.out
    try:
        record = Accounting(out, {**session.run_record(), "shard": list(job.shard) if job.shard else None}, job.shard)
    except OSError as exc:
        raise CamcliError(
            f"Cannot write to output folder '{out}': {exc.strerror or exc}. Pass a writable --out DIR."
        ) from exc
    try:
        with tqdm(total=len(items), unit="img", file=sys.stderr, disable=job.quiet, desc="explain") as bar:
            for item, doc, skipped in runner.outcomes(session, items, stop):
                line = record.add(printable(item.path), item, doc, skipped=skipped)
                if emit is not None:
                    emit({"json": printable(out / line["json"]), **doc})
                bar.update(1)
        if stop.is_set():
            return RunResult(EXIT_INTERRUPTED, out, record.close(status="interrupted"), session)
    except BrokenPipeError:  # whoever read --json stopped reading (`| head`): stop quietly
        record.close_quietly("interrupted")
        raise
    except BaseException as exc:
        record.close_quietly("interrupted" if isinstance(exc, KeyboardInterrupt) else "failed")
        if isinstance(exc, OSError):
            raise CamcliError(
                f"Cannot write outputs under '{out}': {exc.strerror or exc}. "
                "Free some space or pass a writable --out DIR."
            ) from exc
        raise
    return RunResult(record.exit_code, out, record.close(), session)


def mark_output_folder(out: Path) -> None:
    """Mark a folder camcli made (or found holding only camcli's files) so that walks never enter it.

    A folder of yours used as --out is not marked (a marker would hide your images from later runs);
    the image folders camcli writes there are recognized by their explanation.json instead.
    """
    from ..writer import atomic_write

    marker = out / MARKER
    if marker.exists() or any(
        p.name not in CAMCLI_FILES and not p.name.startswith((f".{RUN}.tmp", LOCK)) for p in out.iterdir()
    ):
        return
    atomic_write(marker, (json_text({"camcli": __version__}) + "\n").encode("utf-8"))


class Accounting:
    """Counts outcomes, appends one summary line per image, writes run.json, owns the exit code."""

    def __init__(self, out: Path, run_info: dict[str, Any], shard: tuple[int, int] | None = None) -> None:
        self.out = out
        self.records = records_folder(out, shard)
        self.run_info = run_info
        self.ok = 0
        self.skipped = 0
        self.failed: list[dict[str, Any]] = []
        self.started = time.time()
        out.mkdir(parents=True, exist_ok=True)
        mark_output_folder(out)
        self.records.mkdir(parents=True, exist_ok=True)
        for stale in self.records.glob(f".{RUN}.tmp*"):  # from a run killed while closing
            stale.unlink(missing_ok=True)
        # Held open for the whole run, one line appended per image; closed by close().
        self._summary = open(self.records / SUMMARY, "w", encoding="utf-8")  # noqa: SIM115
        self._write_run("running")  # a run killed later is not mistaken for the last finished one

    def add(self, path: str, item: ImageItem, doc: dict[str, Any], skipped: bool = False) -> dict[str, Any]:
        """Record one image's explanation.json document; returns its summary line.

        An image skipped by --resume gets the same line as when it was done; it counts as skipped,
        or as failed if its outputs record a failure.
        """
        line = summary_line(path, item.rel, doc)
        if doc["status"] != "ok":  # failed now or in the run that is being resumed: still failed
            self.failed.append({"path": line["path"], "error": line["error"]})
        elif skipped:
            self.skipped += 1
        else:
            self.ok += 1
        self._summary.write(json_text(line) + "\n")
        self._summary.flush()
        return dict(line)

    @property
    def exit_code(self) -> int:
        return EXIT_SOME_FAILED if self.failed else EXIT_OK

    def close(self, status: str = "complete") -> dict[str, Any]:
        """Write run.json; returns it."""
        self._summary.close()
        return self._write_run(status)

    def close_quietly(self, status: str) -> None:
        with suppress(OSError):  # record how far the run got, if the output folder still takes it
            self.close(status=status)

    def _write_run(self, status: str) -> dict[str, Any]:
        from ..writer import atomic_write

        finished = time.time()
        doc = {
            **self.run_info,
            "status": status,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started)),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(finished)),
            "seconds": round(finished - self.started, 3),
            "counts": {
                "ok": self.ok,
                "failed": len(self.failed),
                "skipped": self.skipped,
                "total": self.ok + len(self.failed) + self.skipped,
            },
            "failures": self.failed,
        }
        atomic_write(self.records / RUN, (json_text(doc, indent=2) + "\n").encode("utf-8"))
        return doc
