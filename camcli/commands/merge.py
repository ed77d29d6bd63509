"""``camcli merge``: the records of a job array's shards combined into the output folder's own, as one
unsharded run would have written them; for ``camcli evaluate`` shards, metrics.json computed from all
shards' per-image lines exactly as one run computes it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EXIT_GATE_FAILED, EXIT_OK, EXIT_SOME_FAILED, CamcliError


@dataclass(frozen=True)
class MergeResult:
    code: int
    record: dict[str, Any]  # the merged run.json
    metrics: dict[str, Any] | None = None  # the merged metrics.json, for evaluate shards
    messages: list[str] = field(default_factory=list)


def merge(out: Path) -> MergeResult:
    from ..runners.base import locked
    from ..runners.shards import merge as merge_records

    with locked(out):
        merged, folders = merge_records(out)
        counts, shards = merged["counts"], merged["shards"]
        messages = [
            f"Merged {len(shards['merged'])} of {shards['count']} shards: {counts['total']} images, "
            f"{counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped; status {merged['status']}"
            + (f" (missing shards {shards['missing']})" if shards["missing"] else "")
            + (f" (unfinished shards {shards['unfinished']})" if shards["unfinished"] else "")
        ]
        code = EXIT_SOME_FAILED if counts["failed"] or merged["status"] != "complete" else EXIT_OK
        metrics = None
        evaluated = _evaluations(folders)
        if evaluated is not None:
            from .evaluate import write_metrics

            settings, counts_, lines = evaluated
            if merged["status"] != "complete":
                messages.append("metrics.json not written: every shard must be complete first.")
            else:
                result = write_metrics(out, settings, counts_, lines, [])
                messages += result.messages
                metrics = result.metrics
                code = max(code, result.code) if result.code == EXIT_GATE_FAILED else code
        return MergeResult(code, merged, metrics, messages)


def _evaluations(folders: list[Path]) -> Any:
    """The shards' evaluation settings (all equal), summed counts and per-image lines in shard order; None
    when the shards are explain runs."""
    from ..evaluate.document import Counts, Settings
    from ..outputs import EVALUATION, PER_IMAGE, read_json, read_jsonl

    present = [(folder / EVALUATION).exists() for folder in folders]
    if not any(present):
        return None
    if not all(present):
        missing = [str(f) for f, p in zip(folders, present, strict=True) if not p]
        raise CamcliError(
            f"Some shards were evaluated and others not (no {EVALUATION} in {missing[0]}). Run each "
            "shard with the same camcli evaluate command, then merge."
        )
    settings: Settings | None = None
    totals: dict[str, Any] = {"images": 0, "annotated": 0, "failed": 0, "unreadable": 0}
    changed: list[str] = []
    unmatched: tuple[str, ...] | None = None
    lines: list[dict[str, Any]] = []
    for folder in folders:
        try:
            doc = read_json(folder / EVALUATION)
            mine = Settings.of(doc["settings"])
            counts = doc["counts"]
            for key in totals:
                totals[key] += int(counts[key])
            changed += [str(p) for p in counts["source_changed"]]
            theirs = tuple(str(u) for u in counts["unmatched"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CamcliError(f"Cannot read {folder / EVALUATION}: {exc}. Run that shard again.") from exc
        if settings is not None and mine != settings:
            raise CamcliError(
                f"The shards were evaluated with different settings ({folder.name} differs). Evaluate every shard "
                "with the same command, then merge."
            )
        settings, unmatched = mine, theirs if unmatched is None else unmatched
        lines += list(read_jsonl(folder / PER_IMAGE))
    assert settings is not None
    return settings, Counts(**totals, source_changed=tuple(changed), unmatched=unmatched or ()), lines
