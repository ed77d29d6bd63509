"""Job arrays: ``--shard I/N`` explains the I-th of N parts of the input list, and ``camcli merge``
combines the parts' records.

The parts are contiguous blocks of the sorted input list (as ``discover`` orders it), disjoint and
covering it, so shard I of N is the same images on every machine and concatenating the shards'
summaries in shard order gives input order. Image folders go to the output folder as usual; each
shard keeps its own ``run.json`` and ``summary.jsonl`` under ``OUT/shards/I-of-N/`` and its own lock.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from ..errors import CamcliError
from ..outputs import SHARDS

T = TypeVar("T")
_FOLDER = re.compile(r"(\d+)-of-(\d+)")
_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(text: str | None, environ: dict[str, str] | None = None) -> tuple[int, int] | None:
    """``I/N`` (0 ≤ I < N), or Slurm's SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT when not given."""
    env = os.environ if environ is None else environ
    if text is None:
        task, count = env.get("SLURM_ARRAY_TASK_ID"), env.get("SLURM_ARRAY_TASK_COUNT")
        if task is None or count is None:
            return None
        text = f"{int(task) - int(env.get('SLURM_ARRAY_TASK_MIN', '0'))}/{count}"
    found = _SPEC.match(text)
    if not found or not 0 <= int(found[1]) < int(found[2]):
        raise CamcliError(f"--shard '{text}' is not I/N with 0 <= I < N (e.g. --shard 0/4 for the first of four).")
    return int(found[1]), int(found[2])


def select(items: Sequence[T], shard: tuple[int, int] | None) -> list[T]:
    """Shard I of N: the I-th of N contiguous, balanced blocks of ``items``."""
    if shard is None:
        return list(items)
    index, count = shard
    return list(items[index * len(items) // count : (index + 1) * len(items) // count])


def records_folder(out: Path, shard: tuple[int, int] | None) -> Path:
    """Where a run's run.json and summary.jsonl go: the output folder, or a shard's own folder."""
    return out if shard is None else out / SHARDS / f"{shard[0]}-of-{shard[1]}"


def merge(out: Path) -> tuple[dict[str, Any], list[Path]]:
    """Combine the shards' summaries and run records into OUT/summary.jsonl and OUT/run.json; returns the
    merged run record and the shard folders merged, in shard order.

    Only whole lines of a shard's summary.jsonl are taken (a shard killed mid-line leaves a torn one);
    shards must be of one split and of the same settings (their fingerprints), and folders that are not
    a shard of the split (``5-of-2``, ``00-of-2``) are refused by name.
    """
    from ..outputs import RUN, SUMMARY, json_text, parse_json, read_bytes, read_json
    from ..writer import atomic_write

    found: dict[int, tuple[int, Path]] = {}
    strays = []
    for folder in sorted((out / SHARDS).glob("*-of-*")):
        match = _FOLDER.fullmatch(folder.name)
        if match and int(match[1]) < int(match[2]) and folder.name == f"{int(match[1])}-of-{int(match[2])}":
            found[int(match[1])] = (int(match[2]), folder)
        elif folder.is_dir():
            strays.append(folder.name)
    if strays:
        raise CamcliError(
            f"{out / SHARDS} holds {', '.join(strays)}, which are not shards I-of-N with 0 <= I < N. "
            "Remove them, then merge again."
        )
    if not found:
        raise CamcliError(
            f"'{out}' has no shard records ({out / SHARDS}/I-of-N): run 'camcli explain --shard I/N' first."
        )
    counts = {n for n, _ in found.values()}
    if len(counts) > 1:
        raise CamcliError(
            f"'{out}' holds shards of different splits ({', '.join(map(str, sorted(counts)))} parts). "
            "Merge the shards of one split: remove the others' folders under shards/."
        )
    total = counts.pop()
    runs, lines = [], []
    for index in sorted(found):
        folder = found[index][1]
        try:
            run = read_json(folder / RUN)
            if not isinstance(run, dict):
                raise ValueError("run.json is not a JSON object")
            data = read_bytes(folder / SUMMARY, 1 << 30)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise CamcliError(f"Cannot read the records of shard {index}/{total} in {folder}: {exc}.") from exc
        runs.append(run)
        for raw in data.split(b"\n")[:-1]:  # the part after the last newline is a torn line, or nothing
            try:
                line = parse_json(raw)
            except (ValueError, UnicodeDecodeError):
                continue
            if isinstance(line, dict):
                lines.append(json_text(line) + "\n")
    prints = {str(run.get("fingerprint")) for run in runs}
    if len(prints) > 1:
        raise CamcliError(
            f"The shards in '{out}' were run with different settings (model, methods or options: their "
            "fingerprints differ). Run every shard with the same command, then merge."
        )
    missing = [i for i in range(total) if i not in found]
    unfinished = [i for i, run in zip(sorted(found), runs, strict=True) if run.get("status") != "complete"]
    merged = {
        **{
            k: v
            for k, v in runs[0].items()
            if k not in ("counts", "failures", "status", "started", "finished", "seconds", "shard")
        },
        "status": "complete" if not missing and not unfinished else "incomplete",
        "shards": {"count": total, "merged": sorted(found), "missing": missing, "unfinished": unfinished},
        "started": min(str(run.get("started", "")) for run in runs),
        "finished": max(str(run.get("finished", "")) for run in runs),
        "merged_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "counts": {key: sum(_count(run, key) for run in runs) for key in ("ok", "failed", "skipped", "total")},
        "failures": [f for run in runs for f in _failures(run)],
    }
    atomic_write(out / SUMMARY, "".join(lines).encode("utf-8"))
    atomic_write(out / RUN, (json_text(merged, indent=2) + "\n").encode("utf-8"))
    return merged, [found[i][1] for i in sorted(found)]


def _failures(run: dict[str, Any]) -> list[Any]:
    failures = run.get("failures")
    return failures if isinstance(failures, list) else []


def _count(run: dict[str, Any], key: str) -> int:
    counts = run.get("counts")
    value = counts.get(key, 0) if isinstance(counts, dict) else 0
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
