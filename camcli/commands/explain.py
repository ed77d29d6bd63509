"""``camcli explain``: every image of the inputs explained into the output folder."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CamcliError
from ..job import ExplainJob

if TYPE_CHECKING:
    from ..records import ImageItem
    from ..runners.base import RunResult
    from ..session import Session


@dataclass(frozen=True)
class ExplainResult:
    run: RunResult
    report: Path | None = None  # the HTML report's index.html, when asked for
    notes: tuple[str, ...] = ()  # for stderr: e.g. rows of --classes-from that name no input

    @property
    def code(self) -> int:
        return self.run.code


def items_of(job: ExplainJob) -> list[ImageItem]:
    """The job's images: its inputs discovered (never camcli's own outputs), then its shard's part."""
    from ..discover import discover
    from ..runners.shards import select

    found = discover(job.inputs, job.include, job.exclude, out=job.out)
    items = select(found, job.shard)
    if not items and job.shard is not None:
        raise CamcliError(f"Shard {job.shard[0]}/{job.shard[1]} has no images: there are fewer images than shards.")
    return items


def explain(
    job: ExplainJob,
    report: bool = False,
    emit: Callable[[dict[str, Any]], None] | None = None,
    stop: threading.Event | None = None,
) -> ExplainResult:
    """Explain the job's images with its runner; ``report`` also writes OUT/report/."""
    from ..runners import base

    items = items_of(job)
    adjust, notes = _classes_from(job)
    with base.locked(job.out, job.shard):  # before the model loads: a second run stops at once
        result = base.run(job, items, emit, stop, adjust)
    page = None
    if report:
        from .report import ReportRequest
        from .report import report as write_report

        page = write_report(ReportRequest(job.out))
    return ExplainResult(result, page, tuple(notes))


def _classes_from(job: ExplainJob) -> tuple[Callable[[Session], Session] | None, list[str]]:
    """With ``--classes-from``: what adds each image's classes to the session once its labels are known,
    and the notes it leaves (rows that name no input image)."""
    if job.classes_from is None:
        return None, []
    import dataclasses

    from ..discover import discover, printable
    from ..evaluate.annotations import read_classes
    from ..evaluate.truth import ground_truth_classes

    truths = read_classes(job.classes_from)
    everything = discover(job.inputs, job.include, job.exclude, out=job.out)
    refs = [(Path(printable(i.path)), i.rel) for i in everything]
    notes: list[str] = []

    def adjust(session: Session) -> Session:
        per_image, unmatched = ground_truth_classes(truths, refs, session.loaded.labels)
        if unmatched:
            notes.append(
                f"{len(unmatched)} row(s) of {job.classes_from} name no input image: {'; '.join(unmatched[:3])}"
            )
        return session.with_targets(dataclasses.replace(session.targets, per_image=per_image))

    return adjust, notes
