"""``camcli evaluate``: explain a folder with ground truth through the chosen runner (or read an earlier
run with ``--from``), score its maps, write metrics.json and per_image.jsonl, and judge the gates.

Every number's protocol is stated in metrics.json's ``protocol`` and in README; the maths live in
``camcli.evaluate`` (``scoring``, ``faithfulness``, ``road``, ``sanity``, ``metrics``). A shard of a job array
(``--shard I/N``) writes its per-image lines and settings under ``OUT/shards/I-of-N/``; ``camcli merge``
computes metrics.json from all of them exactly as one run would.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import EXIT_GATE_FAILED, EXIT_INTERRUPTED, EXIT_OK
from ..evaluate.job import EvaluateJob

if TYPE_CHECKING:
    from ..evaluate.document import Counts, Settings
    from ..evaluate.scoring import Line
    from ..evaluate.truth import Image
    from ..runners.base import RunResult
    from ..session import Session


@dataclass(frozen=True)
class EvaluateResult:
    code: int
    metrics: dict[str, Any] | None = None  # metrics.json (None for a shard, or when interrupted)
    messages: list[str] = field(default_factory=list)  # the table, notes and failed gates, for stderr
    run: RunResult | None = None  # the explain run, unless --from
    report: Path | None = None


def evaluate(
    job: EvaluateJob,
    report: bool = False,
    stop: threading.Event | None = None,
    say: Callable[[str], None] = lambda text: None,
) -> EvaluateResult:
    """Run the evaluation (see the module docstring); ``say`` reports progress between steps."""
    from ..runners.base import locked

    stop = stop or threading.Event()
    with locked(job.out, job.explain.shard):
        result = _from_run(job, stop, say) if job.source is not None else _explaining(job, stop, say)
    if report and result.code != EXIT_INTERRUPTED:
        from .report import ReportRequest
        from .report import report as write_report

        result = dataclasses.replace(result, report=write_report(ReportRequest(job.out)))
    return result


def _explaining(job: EvaluateJob, stop: threading.Event, say: Callable[[str], None]) -> EvaluateResult:
    from .. import outputs
    from ..discover import discover, printable
    from ..errors import CamcliError
    from ..evaluate.truth import ground_truth_classes, read_truth, with_truth
    from ..runners import base
    from ..runners.shards import select

    truths = read_truth(job)
    explain = job.explain
    everything = discover(explain.inputs, explain.include, explain.exclude, out=explain.out)
    items = select(everything, explain.shard)
    if not items and explain.shard is not None:
        raise CamcliError(f"Shard {explain.shard[0]}/{explain.shard[1]} has no images: fewer images than shards.")
    refs = [(Path(printable(i.path)), i.rel) for i in everything]
    unmatched: list[str] = []

    def with_ground_truth(session: Session) -> Session:
        _check_options(job, session)
        per_image, missing = ground_truth_classes(truths, refs, session.loaded.labels)
        unmatched.extend(missing)
        return session.with_targets(dataclasses.replace(session.targets, per_image=per_image))

    run = base.run(explain, items, None, stop, with_ground_truth)
    if run.code == EXIT_INTERRUPTED or run.session is None:
        return EvaluateResult(EXIT_INTERRUPTED, run=run)
    folder = outputs.RunFolder(explain.out)
    found = [folder.image(explain.out / i.rel / outputs.EXPLANATION) for i in items]
    images, _, unreadable = with_truth(found, truths, run.session.loaded.labels)
    scored = _score(job, images, run.session, stop, say, unreadable, tuple(unmatched))
    return dataclasses.replace(scored, run=run, code=run.code if scored.code == EXIT_OK else scored.code)


def _from_run(job: EvaluateJob, stop: threading.Event, say: Callable[[str], None]) -> EvaluateResult:
    from .. import outputs
    from ..errors import CamcliError
    from ..evaluate.truth import read_truth, recorded_labels, with_truth
    from ..session import resolve

    assert job.source is not None
    truths = read_truth(job)
    folder = outputs.require_run(job.source)
    found = folder.images()
    if not found:
        raise CamcliError(f"'{job.source}' holds no explanation.json: pass the output folder of camcli explain.")
    session = None
    if job.reruns_model:
        session = resolve(job.explain)
        _check_same_model(folder.run_record() or {}, session, job.source)
        _check_options(job, session)
    labels = (
        session.loaded.labels
        if session
        else folder.labels() or recorded_labels(i.doc for i in found if i.doc is not None)
    )
    images, unmatched, unreadable = with_truth(found, truths, labels, folder.working_directory())
    return _score(job, images, session, stop, say, unreadable, tuple(unmatched))


def _check_options(job: EvaluateJob, session: Session) -> None:
    """What only the model can tell, before anything is explained: the occlusion window fits its input; the
    metrics that run the model again score a classifier's class probabilities."""
    from ..errors import CamcliError

    if session.loaded.head.task == "segment" and job.reruns_model:
        raise CamcliError(
            "--faithfulness, --road, --occlusion-correlation, --cam-mult-image, --arcc and --sanity rerun the model "
            "and score a classifier's class probabilities; for a segmentation model camcli evaluate scores the "
            "maps against ground-truth masks and boxes only (pointing game, energy). Leave those options out."
        )
    if job.occlusion_correlation:
        from ..evaluate.faithfulness import occlusion_params

        occlusion_params(job.correlation_window, job.correlation_stride, session.loaded.data.input_size)


def _check_same_model(run: dict[str, Any], session: Session, source: Path) -> None:
    """Faithfulness, ROAD, occlusion, CamMult, ARCC and sanity run the model again: it must be the model that
    made the maps."""
    from ..errors import CamcliError

    recorded = run.get("model") if isinstance(run.get("model"), dict) else {}
    assert isinstance(recorded, dict)
    name, weights = recorded.get("name"), recorded.get("weights")
    mine = session.ctx.model
    if name is None:
        return  # a run without its record (older, or hand-made): nothing to check against
    if (name, weights) != (mine["name"], mine["weights"]):
        raise CamcliError(
            f"'{source}' was explained with {name} ({weights}), but this evaluation would score its maps with "
            f"{mine['name']} ({mine['weights']}). Pass the run's model: -m {name}"
            + (f" --weights {weights}" if isinstance(weights, str) and Path(weights).is_file() else "")
            + "."
        )


def _score(
    job: EvaluateJob,
    images: list[Image],
    session: Session | None,
    stop: threading.Event,
    say: Callable[[str], None],
    unreadable: int,
    unmatched: tuple[str, ...],
) -> EvaluateResult:
    from ..evaluate.document import Counts, Settings
    from ..evaluate.faithfulness import arcc, cam_mult_image, faithfulness, occlusion_correlation, road
    from ..evaluate.sanity import sanity_check
    from ..evaluate.scoring import heat_methods, map_statistics, score_method

    methods = tuple(heat_methods(images))
    lines: dict[str, Line] = {}
    problems: dict[str, str] = {}
    for method in methods:
        problems |= score_method(images, method, lines, job.loc_threshold, job.tolerance, job.explain.max_pixels)
        problems |= map_statistics(images, method, lines)
    if problems:
        images = [i for i in images if i.path not in problems]
        for path in problems:
            lines.pop(path, None)
    # What runs the model again, in order: what to say, and the measure given the lines and the stop event.
    measures: list[tuple[str, Callable[[dict[str, Line], threading.Event], list[str]]]] = []
    if session is not None:
        for method in methods if job.faithfulness else ():
            measures.append((f"faithfulness of {method}", partial(faithfulness, images, method, session, job.steps)))
        for method in methods if job.cam_mult_image else ():
            mult = partial(cam_mult_image, images, method, session)
            measures.append((f"CamMult confidence change of {method}", mult))
        for method in methods if job.road else ():
            measures.append((f"ROAD of {method}", partial(road, images, method, session, job.road_percentiles)))
        for method in methods if job.arcc else ():  # after ROAD: ARCC takes ROAD's values from the lines
            measures.append((f"ARCC of {method}", partial(arcc, images, method, session, job.road_percentiles)))
        if job.occlusion_correlation:
            window, stride = job.correlation_window, job.correlation_stride
            correlation = partial(occlusion_correlation, images, methods, session, window, stride)
            measures.append(("occlusion maps, correlated with each method's", correlation))
    changed: list[str] = []
    for what, measure in measures:
        say(f"{what}...")
        changed += measure(lines, stop)
        if stop.is_set():
            return EvaluateResult(EXIT_INTERRUPTED, messages=_interrupted())
    sanity = {m: sanity_check(images, m, session, stop) for m in methods} if job.sanity and session else {}
    if stop.is_set():
        return EvaluateResult(EXIT_INTERRUPTED, messages=_interrupted())
    settings = Settings(
        job.loc_threshold,
        job.tolerance,
        job.faithfulness,
        job.steps,
        job.gates,
        methods,
        sanity,
        road=job.road,
        road_percentiles=job.road_percentiles,
        occlusion_correlation=job.occlusion_correlation,
        correlation_window=job.correlation_window,
        correlation_stride=job.correlation_stride,
        cam_mult_image=job.cam_mult_image,
        arcc=job.arcc,
    )
    unreadable += len(problems)
    counts = Counts(
        images=len(images) + unreadable,
        annotated=sum(1 for i in images if i.classes),
        failed=sum(1 for i in images if not i.ok) + unreadable,
        unreadable=unreadable,
        source_changed=tuple(dict.fromkeys(changed)),
        unmatched=unmatched,
    )
    ordered = [lines[i.path] for i in images if i.path in lines]
    notes = _notes(counts) + [f"  not scored: {why}" for why in list(problems.values())[:5]]
    if job.explain.shard is not None:
        _write_shard(job, settings, counts, ordered)
        index, total = job.explain.shard
        return EvaluateResult(
            EXIT_OK,
            messages=[
                *notes,
                f"Shard {index}/{total} scored: 'camcli merge {job.out}' "
                "computes metrics.json once every shard is done.",
            ],
        )
    return write_metrics(job.out, settings, counts, ordered, notes)


def _interrupted() -> list[str]:
    return ["Interrupted: metrics.json was not written. Run the same command again to resume."]


def _notes(counts: Counts) -> list[str]:
    notes = []
    if counts.unmatched:
        shown = "; ".join(counts.unmatched[:3])
        more = f" (and {len(counts.unmatched) - 3} more, listed in metrics.json)" if len(counts.unmatched) > 3 else ""
        notes.append(f"{len(counts.unmatched)} annotation(s) match no explained image: {shown}{more}")
    if counts.unreadable:
        notes.append(f"{counts.unreadable} image folder(s) have an unreadable explanation.json: counted as failed")
    if counts.source_changed:
        notes.append(
            f"{len(counts.source_changed)} image(s) changed on disk since they were explained (or are gone), so "
            f"their faithfulness was not scored: e.g. {counts.source_changed[0]}"
        )
    return notes


def write_metrics(out: Path, settings: Settings, counts: Counts, lines: list[Line], notes: list[str]) -> EvaluateResult:
    """Write metrics.json and per_image.jsonl; the table and verdicts for stderr, and the exit code."""
    from ..evaluate.document import metrics_doc
    from ..evaluate.table import format_table
    from ..outputs import METRICS, PER_IMAGE, json_text
    from ..writer import atomic_write

    doc, gates = metrics_doc(settings, lines, counts)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / METRICS, (json_text(doc, indent=2) + "\n").encode("utf-8"))
    atomic_write(out / PER_IMAGE, "".join(json_text(line) + "\n" for line in lines).encode("utf-8"))
    flat = {m: settings.summary(lines, m) for m in settings.methods}
    messages = [format_table({"methods": flat, "gates": sorted(gates, key=lambda g: g["passed"])}), *notes]
    failed = [g for g in gates if not g["passed"]]
    for g in failed:
        why = g["reason"] or f"value {g['value']:.4g}"
        messages.append(f"gate failed: --{g['name']} {g['threshold']:g} on {g['method']}: {why}")
    return EvaluateResult(EXIT_GATE_FAILED if failed else EXIT_OK, doc, messages)


def _write_shard(job: EvaluateJob, settings: Settings, counts: Counts, lines: list[Line]) -> None:
    from ..outputs import EVALUATION, PER_IMAGE, json_text
    from ..runners.shards import records_folder
    from ..writer import atomic_write

    folder = records_folder(job.out, job.explain.shard)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / PER_IMAGE, "".join(json_text(line) + "\n" for line in lines).encode("utf-8"))
    doc = {"settings": settings.describe(), "counts": dataclasses.asdict(counts)}
    atomic_write(folder / EVALUATION, (json_text(doc, indent=2) + "\n").encode("utf-8"))
