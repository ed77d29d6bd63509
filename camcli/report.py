"""Run-level accounting: summary.jsonl as images finish, run.json at the end, the exit code."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from . import __version__
from .discover import OUTPUT_MARKER
from .errors import EXIT_OK, EXIT_SOME_FAILED
from .writer import JSON_NAME, atomic_write, json_text

CAMCLI_FILES = frozenset({".camcli-lock", OUTPUT_MARKER, "run.json", "summary.jsonl", "shards"})


def mark_output_folder(out_root: Path) -> None:
    """Mark a folder camcli made (or found holding only camcli's files) so that walks never enter it.

    A folder of yours used as --out is not marked (a marker would hide your images from later runs);
    the image folders camcli writes there are recognized by their explanation.json instead.
    """
    marker = out_root / OUTPUT_MARKER
    if marker.exists() or any(
        p.name not in CAMCLI_FILES and not p.name.startswith((".run.json.tmp", ".camcli-lock"))
        for p in out_root.iterdir()
    ):
        return
    atomic_write(marker, (json_text({"camcli": __version__}) + "\n").encode("utf-8"))


class Report:
    """Counts outcomes, appends one summary line per image, and owns the exit code."""

    def __init__(self, out_root: Path, run_info: dict[str, Any], records: Path | None = None) -> None:
        """``records``: where run.json and summary.jsonl go (a shard's own folder), default ``out_root``."""
        self.out_root = out_root
        self.records = records or out_root
        self.run_info = run_info
        self.ok = 0
        self.skipped = 0
        self.failed: list[dict[str, str]] = []
        self.started = time.time()
        out_root.mkdir(parents=True, exist_ok=True)
        mark_output_folder(out_root)
        self.records.mkdir(parents=True, exist_ok=True)
        for stale in self.records.glob(".run.json.tmp*"):  # from a run killed while closing
            stale.unlink(missing_ok=True)
        # Held open for the whole run, one line appended per image; closed by close().
        self._summary = open(self.records / "summary.jsonl", "w", encoding="utf-8")  # noqa: SIM115
        self._write_run("running")  # a run killed later is not mistaken for the last finished one

    def add(self, path: str, rel: str, doc: dict[str, Any], skipped: bool = False) -> dict[str, Any]:
        """Record one image's explanation.json document; returns its summary line.

        An image skipped by --resume gets the same line as when it was done; it counts as skipped,
        or as failed if its outputs record a failure.
        """
        top: dict[str, Any] | None = None
        if doc["predictions"]:
            best = doc["predictions"][0]
            top = {k: best[k] for k in ("class_index", "label", "probability")}
        line = {
            "path": path,
            "status": doc["status"],
            "top1": top,
            "json": f"{rel}/{JSON_NAME}",
            "error": doc["error"]["message"] if doc["error"] else None,
        }
        if doc["status"] != "ok":  # failed now or in the run that is being resumed: still failed
            self.failed.append({"path": line["path"], "error": line["error"]})
        elif skipped:
            self.skipped += 1
        else:
            self.ok += 1
        self._summary.write(json_text(line) + "\n")
        self._summary.flush()
        return line

    @property
    def exit_code(self) -> int:
        return EXIT_SOME_FAILED if self.failed else EXIT_OK

    def close(self, status: str = "complete") -> dict[str, Any]:
        """Write run.json; returns it."""
        self._summary.close()
        return self._write_run(status)

    def _write_run(self, status: str) -> dict[str, Any]:
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
        atomic_write(self.records / "run.json", (json_text(doc, indent=2) + "\n").encode("utf-8"))
        return doc
