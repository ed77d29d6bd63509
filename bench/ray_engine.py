"""--engine ray against the local engine on the same folder, in images/second.

Each contender is a real `camcli explain` process (top-5 Grad-CAM, default outputs) into a new output
folder: local, Ray with 1 explaining actor, Ray with 2, on one local Ray cluster started for the bench
(`ray start --head`, stopped at the end). Start-up (imports, model, actors) is measured by a one-image
run of each and taken out: "per image" is (time for N images − time for one) / (N − 1).

    python bench/ray_engine.py [--images 192] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SAMPLES = Path(__file__).resolve().parent.parent / "sample_images"
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled"}  # a throwaway cluster on loopback


def folder_of(n: int, folder: Path) -> Path:
    files = sorted(p for p in SAMPLES.iterdir() if p.suffix in (".png", ".jpg"))
    folder.mkdir(parents=True)
    for i in range(n):
        shutil.copy(files[i % len(files)], folder / f"{i:04d}_{files[i % len(files)].name}")
    return folder


def timed(args: list[str], out: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "camcli", "explain", *args, "-o", str(out), "-q", "--top-k", "5"],
        capture_output=True,
        text=True,
        env=ENV,
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=192)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="camcli-bench-", dir="/tmp") as tmp:
        root = Path(tmp)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        ray = str(Path(sys.executable).with_name("ray"))
        subprocess.run(
            [
                ray,
                "start",
                "--head",
                "--port",
                str(port),
                "--temp-dir",
                str(root / "ray"),
                "--include-dashboard=false",
                "--disable-usage-stats",
            ],
            check=True,
            capture_output=True,
            env=ENV,
        )
        try:
            address = ["--engine", "ray", "--ray-address", f"127.0.0.1:{port}"]
            contenders = {
                "local": [],
                "ray, 1 worker": [*address, "--ray-workers", "1"],
                "ray, 2 workers": [*address, "--ray-workers", "2"],
            }
            folder, one = folder_of(args.images, root / "images"), folder_of(1, root / "one")
            full: dict[str, list[float]] = {name: [] for name in contenders}
            single: dict[str, list[float]] = {name: [] for name in contenders}
            for r in range(args.rounds):  # in turn, so drifting load hits every contender alike
                for i, (name, flags) in enumerate(contenders.items()):
                    single[name].append(timed([str(one), *flags], root / f"one-{r}-{i}"))
                    full[name].append(timed([str(folder), *flags], root / f"full-{r}-{i}"))
        finally:
            _stop(root / "ray")
    per = {
        name: statistics.median((f - s) / (args.images - 1) for f, s in zip(full[name], single[name], strict=True))
        for name in contenders
    }
    print(
        f"{args.images} images, top-5 Grad-CAM, default outputs, {os.cpu_count()} CPUs, median of {args.rounds} rounds"
    )
    for name in contenders:
        print(
            f"  {name:<16} {1 / per[name]:6.2f} img/s after start-up ({statistics.median(single[name]):5.1f} s for "
            f"one image)   {per['local'] / per[name]:4.2f}x local"
        )


def _stop(temp: Path) -> None:
    """Stop only the processes of this bench's cluster (their command lines name its temp folder)."""
    import psutil

    for process in psutil.process_iter(["cmdline"]):
        if any(str(temp) in part for part in process.info["cmdline"] or []):
            with contextlib.suppress(psutil.Error):
                process.kill()


if __name__ == "__main__":
    main()
