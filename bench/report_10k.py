"""HTML report at scale: build time and time to interactive for a run of 10,000 images.

Explains sample_images/ once (or takes --base, an existing output folder), then synthesizes an
output folder of --images entries by hard-linking that run's files under new names (no disk cost)
with rewritten explanation.json documents, builds the report, and opens it in headless Chromium:

  build          build_report on the synthetic folder, first time and again (thumbnails reused)
  cold thumbs    thumbnails per second for --cold distinct sources (each a sample with a byte appended)
  interactive    navigation start to the page's first render with all data parsed (window.camcliReady)
  search/filter  a search keystroke, a status filter and a sort, each until the next frame

    python bench/report_10k.py [--images 10000] [--cold 200] [--base OUT] [--loads 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from click.testing import CliRunner
from playwright.sync_api import sync_playwright

from camcli.cli import cli
from camcli.html import build_report
from camcli.html.collect import explanation_files

SAMPLES = Path(__file__).resolve().parent.parent / "sample_images"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Time from a change to the control until the next frame, measured inside the page.
UNTIL_FRAME = """async ([selector, value, event]) => {
  const control = document.querySelector(selector);
  const start = performance.now();
  control.value = value;
  control.dispatchEvent(new Event(event));
  await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
  return performance.now() - start;
}"""


def explain_samples(work: Path) -> Path:
    out = work / "base"
    result = CliRunner().invoke(
        cli, ["explain", str(SAMPLES), "-o", str(out), "-q", "--top-k", "2", "--method", "gradcam,guided-gradcam"]
    )
    assert result.exit_code == 0, result.output
    return out


def synthesize(base: Path, out: Path, n: int) -> None:
    """n image folders, 1,000 per subfolder, each hard-linking one base image's files."""
    folders = [p.parent for p in explanation_files(base)]
    docs = [json.loads((f / "explanation.json").read_text()) for f in folders]
    for i in range(n):
        folder, doc = folders[i % len(folders)], docs[i % len(docs)]
        dest = out / f"part{i // 1000:03d}" / f"img{i:06d}_{folder.name}"
        dest.mkdir(parents=True)
        for file in folder.iterdir():
            if file.name != "explanation.json":
                os.link(file, dest / file.name)
        doc["source"]["path"] = str(SAMPLES / folder.name)  # real sources: thumbnails from them
        (dest / "explanation.json").write_text(json.dumps(doc))
    shutil.copy(base / "run.json", out / "run.json")


def cold_thumbnails(base: Path, work: Path, n: int) -> float:
    """Thumbnails per second when none exist yet: n distinct sources."""
    folder = next(p.parent for p in explanation_files(base))
    doc = json.loads((folder / "explanation.json").read_text())
    sources, out = work / "cold-src", work / "cold-out"
    sources.mkdir()
    data = (SAMPLES / folder.name).read_bytes()
    for i in range(n):
        source = sources / f"{i}{Path(folder.name).suffix}"
        source.write_bytes(data + i.to_bytes(4, "big"))  # trailing bytes: same picture, new sha256
        dest = out / f"{i}"
        dest.mkdir(parents=True)
        doc["source"].update(path=str(source), sha256=hashlib.sha256(source.read_bytes()).hexdigest())
        (dest / "explanation.json").write_text(json.dumps(doc))
    start = time.perf_counter()
    build_report(out)
    return n / (time.perf_counter() - start)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def browser_figures(index: Path, loads: int) -> dict[str, float]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        ready, figures = [], {}
        for _ in range(loads):
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
            page.goto(index.as_uri())
            page.wait_for_function("window.camcliReady === true", timeout=30_000)
            ready.append(page.evaluate("window.camcliReadyAt"))
            assert not errors, errors
            figures = {
                "search keystroke": page.evaluate(UNTIL_FRAME, ["#search", "img0042", "input"]),
                "clear search": page.evaluate(UNTIL_FRAME, ["#search", "", "input"]),
                "status filter": page.evaluate(UNTIL_FRAME, ["#f-status", "ok", "change"]),
                "sort by confidence": page.evaluate(UNTIL_FRAME, ["#sort", "conf-asc", "change"]),
            }
            page.close()
        browser.close()
    return {"interactive (median)": statistics.median(ready), "interactive (max)": max(ready), **figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--cold", type=int, default=200, help="distinct sources for the cold thumbnail rate (0: skip)")
    parser.add_argument("--base", type=Path, help="an existing camcli output folder to replicate")
    parser.add_argument("--loads", type=int, default=3, help="page loads to time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = args.base or explain_samples(work)
        out = work / "out"
        print(f"synthesize {args.images} images: {timed(lambda: synthesize(base, out, args.images)):.1f} s")
        print(f"build_report, first:  {timed(lambda: build_report(out)):.2f} s")
        print(f"build_report, again:  {timed(lambda: build_report(out)):.2f} s")
        data = sum(p.stat().st_size for p in (out / "report" / "data").iterdir())
        print(
            f"data: {data / 1e6:.1f} MB in {len(list((out / 'report' / 'data').iterdir()))} parts "
            f"({data / args.images:.0f} bytes/image); index.html {(out / 'report' / 'index.html').stat().st_size} bytes"
        )
        if args.cold:
            print(f"cold thumbnails: {cold_thumbnails(base, work, args.cold):.0f} images/s ({os.cpu_count()} CPUs)")
        for name, ms in browser_figures(out / "report" / "index.html", args.loads).items():
            print(f"{name}: {ms:.0f} ms")


if __name__ == "__main__":
    main()
