"""Job arrays: ``--shard I/N`` explains the I-th of N parts of the input list, and ``camcli merge``
combines the parts' records.

The parts are contiguous blocks of the sorted input list (as ``discover`` orders it), disjoint and
covering it, so shard I of N is the same images on every machine and concatenating the shards'
summaries in shard order gives input order. Image folders go to the output folder as usual; each
shard keeps its own ``run.json`` and ``summary.jsonl`` under ``OUT/shards/I-of-N/`` and its own lock.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from ..errors import CamcliError

T = TypeVar("T")
SHARDS = "shards"
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
    return out if shard is None else out / SHARDS / f"{shard[0]}-of-{shard[1]}"


def lock_name(shard: tuple[int, int] | None) -> str:
    return ".camcli-lock" if shard is None else f".camcli-lock-shard-{shard[0]}-of-{shard[1]}"


def merge(out: Path) -> dict[str, Any]:
    """Combine the shards' summaries and run records into OUT/summary.jsonl and OUT/run.json."""
    from ..writer import atomic_write, json_text

    found: dict[int, tuple[int, Path]] = {}
    for folder in sorted((out / SHARDS).glob("*-of-*")):
        match = re.fullmatch(r"(\d+)-of-(\d+)", folder.name)
        if match:
            found[int(match[1])] = (int(match[2]), folder)
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
            runs.append(json.loads((folder / "run.json").read_text(encoding="utf-8")))
            lines += (folder / "summary.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
        except (OSError, ValueError) as exc:
            raise CamcliError(f"Cannot read the records of shard {index}/{total} in {folder}: {exc}.") from exc
    missing = [i for i in range(total) if i not in found]
    unfinished = [i for i, run in zip(sorted(found), runs, strict=True) if run.get("status") != "complete"]
    merged = {
        **{
            k: v
            for k, v in runs[0].items()
            if k not in ("counts", "failures", "status", "started", "finished", "seconds")
        },
        "status": "complete" if not missing and not unfinished else "incomplete",
        "shards": {"count": total, "merged": sorted(found), "missing": missing, "unfinished": unfinished},
        "started": min(run.get("started", "") for run in runs),
        "finished": max(run.get("finished", "") for run in runs),
        "merged_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "counts": {
            key: sum(int(run.get("counts", {}).get(key, 0)) for run in runs)
            for key in ("ok", "failed", "skipped", "total")
        },
        "failures": [f for run in runs for f in run.get("failures", [])],
    }
    atomic_write(out / "summary.jsonl", "".join(lines).encode("utf-8"))
    atomic_write(out / "run.json", (json_text(merged, indent=2) + "\n").encode("utf-8"))
    return merged
