"""`camcli` in a background process, for tests that signal, kill or race a run.

Its stderr goes to a file, not a pipe: a pipe nobody reads can fill and stall the run, and a pipe left
open when the test ends is a ResourceWarning (an error in this suite).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path


class Background:
    def __init__(self, out: Path, *args: str, env: dict[str, str] | None = None) -> None:
        """Run `camcli ARGS`; its stderr goes to OUT.stderr.txt beside the output folder OUT."""
        self.log = out.with_name(out.name + ".stderr.txt")
        with self.log.open("wb") as err:  # the child holds its own copy of the descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", "camcli", *args], stdout=subprocess.DEVNULL, stderr=err, env=env
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def poll(self) -> int | None:
        return self.process.poll()

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def send_signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def stderr(self) -> str:
        """What the run has written to stderr so far."""
        return self.log.read_text(errors="replace")
