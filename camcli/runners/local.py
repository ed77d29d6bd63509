"""The local runner: this process, a thread pool decoding ahead of the model and one writing behind it."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial

from ..job import ExplainJob
from ..pipeline import run as run_pipeline
from ..records import ImageItem, Skipped
from ..session import Session, resolve
from ..writer import finished_doc, item_of, write
from .base import Outcomes


class LocalRunner:
    @contextmanager
    def session(self, job: ExplainJob) -> Iterator[Session]:
        yield resolve(job)

    def outcomes(self, session: Session, items: Sequence[ImageItem], stop: threading.Event) -> Outcomes:
        out = session.job.out
        done = partial(finished_doc, out, ctx=session.ctx) if session.job.resume else None
        for outcome, doc in run_pipeline(session, items, partial(write, out, ctx=session.ctx), done, stop):
            yield item_of(outcome), doc, isinstance(outcome, Skipped)


RUNNER = LocalRunner()
