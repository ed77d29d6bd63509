"""Start-up: how long camcli takes before and around its real work, next to the floor it cannot beat.

Wall time, median of several runs each, of:
  help        camcli --help (no model: must not import torch)
  usage       a usage error (unknown method): same
  floor       python -c "import torch, timm" plus building the default model with its bundled weights
  one-image   camcli explain on one image with defaults (the floor plus the real work)

    python bench/startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SAMPLE = Path(__file__).resolve().parent.parent / "sample_images" / "coffee.png"
FLOOR = "import torch, timm; from camcli.models import load_model; load_model('tf_efficientnet_lite0')"


def wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=False, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    camcli = [sys.executable, "-m", "camcli"]
    with tempfile.TemporaryDirectory() as tmp:
        commands = {
            "help": [*camcli, "--help"],
            "usage": [*camcli, "explain", str(SAMPLE), "--method", "no-such-method"],
            "floor": [sys.executable, "-c", FLOOR],
            "one-image": [*camcli, "explain", str(SAMPLE), "-o", tmp, "-q", "--overwrite"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):  # interleaved, so drifting load hits every command alike
            for name, command in commands.items():
                times[name].append(wall(command))
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, value in medians.items():
        print(f"{name:<10} {value:6.2f} s   (runs: {', '.join(f'{t:.2f}' for t in times[name])})")
    print(f"one-image / floor = {medians['one-image'] / medians['floor']:.2f}x")


if __name__ == "__main__":
    main()
