"""The static HTML report (camcli.html), checked in a real headless Chromium through Playwright.

A real `camcli explain` run over small copies of the samples, a corrupt file and hostile file names
is explained once per module; tests that change the output folder work on copies of it.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes, urlparse

import numpy as np
import pytest
from PIL import Image, ImageOps

from camcli.html import build_report, thumbs
from camcli.html import page as page_module
from camcli.html.collect import ImageDoc
from camcli.html.encode import json_for_html, url_path

SAMPLES = Path(__file__).resolve().parent.parent / "sample_images"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
HOSTILE = [
    "<img src=x onerror=alert(1)>.png",
    '"><script>window.__pwned=1</script>.png',
    "a&b#c?d%20.png",
    "javascript:alert(1).png",
    "日本 café 'q'.png",
]
NOT_UTF8 = b"caf\xe9.png"

# Scrolls every rendered image of a list into view and waits for it; returns the srcs that did not load.
BROKEN_IMAGES = """async (selector) => {
  const bad = [];
  for (const img of document.querySelectorAll(selector + ' img')) {
    img.scrollIntoView();
    const settled = new Promise((r) => { img.addEventListener('load', r); img.addEventListener('error', r); });
    if (!img.complete) await Promise.race([settled, new Promise((r) => setTimeout(r, 5000))]);
    if (!img.naturalWidth) bad.push(img.getAttribute('src'));
  }
  return bad.concat([...document.querySelectorAll(selector + ' .missing')].map(() => 'missing'));
}"""


@dataclass
class Explained:
    root: Path  # holds images/ (the inputs, named relative to root) and out/
    out: Path
    docs: dict[str, dict[str, Any]]  # source.path -> explanation.json


def explanation_docs(out: Path) -> dict[str, dict[str, Any]]:
    docs = {}
    for path in out.rglob("explanation.json"):
        if "report" not in path.relative_to(out).parts[:1]:
            doc = json.loads(path.read_text(encoding="utf-8"))
            docs[doc["source"]["path"]] = doc
    return docs


def small_copy(name: str, dest: Path) -> None:
    with Image.open(SAMPLES / name) as img:
        img.convert("RGB").resize((img.width // 3, img.height // 3)).save(dest)


@pytest.fixture(scope="module")
def explained(tmp_path_factory, run_cli) -> Explained:
    """`camcli explain images -o out` run from root, so source paths are relative ("images/...")."""
    root = tmp_path_factory.mktemp("explained")
    images = root / "images"
    (images / '"><script>window.__pwned=1<').mkdir(parents=True)
    small_copy("chelsea.png", images / "chelsea.png")
    small_copy("coffee.png", images / "coffee.png")
    small_copy("rocket.jpg", images / "rocket.jpg")
    for name in HOSTILE:
        shutil.copy(images / "chelsea.png", images / name)
    shutil.copy(images / "coffee.png", os.fsdecode(bytes(images) + b"/" + NOT_UTF8))
    (images / "bad.jpg").write_text("this is a text file, not a JPEG\n")
    with contextlib.chdir(root):
        result = run_cli(
            "explain",
            "images",
            "-o",
            "out",
            "-q",
            "--top-k",
            "1",
            "--method",
            "gradcam,guided-gradcam",
            "--save",
            "overlay,raw_map",
        )
    assert result.exit_code == 1, result.output  # bad.jpg fails, everything else is explained
    out = root / "out"
    build_report(out)
    return Explained(root, out, explanation_docs(out))


def copy_out(explained: Explained, dest: Path) -> Path:
    """A copy of the output folder without its report (so thumbnails are made afresh)."""
    shutil.copytree(
        explained.out, dest, ignore=lambda folder, names: ["report"] if Path(folder) == explained.out else []
    )
    return dest


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"browser tests need Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser tests need the playwright package (pip install playwright)")
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


class Page:
    """A report opened from file://, recording every console error, page error and dialog."""

    def __init__(self, browser, index: Path, viewport: dict[str, int] | None = None) -> None:
        self.problems: list[str] = []
        self.page = browser.new_page(viewport=viewport or {"width": 1280, "height": 900})
        self.page.on("console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text}"))
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("dialog", self._dialog)
        self.page.goto(index.as_uri())
        self.page.wait_for_function("window.camcliReady === true", timeout=10_000)

    def _dialog(self, dialog) -> None:
        self.problems.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    def cards(self) -> list[dict[str, str]]:
        return self.page.eval_on_selector_all(
            "#cards .card", "cs => cs.map(c => ({path: c.dataset.camcliImage, status: c.dataset.status}))"
        )

    def visible_paths(self) -> list[str]:
        return [c["path"] for c in self.cards()]

    def assert_clean(self) -> None:
        """No script ran from the data, nothing failed to load, no error was logged."""
        assert self.page.evaluate("window.__pwned") is None
        assert self.page.evaluate(BROKEN_IMAGES, "#cards") == []
        assert self.problems == []

    def close(self) -> None:
        self.page.close()


@pytest.fixture
def open_report(browser) -> Iterator:
    pages: list[Page] = []

    def open_(index: Path, viewport: dict[str, int] | None = None) -> Page:
        pages.append(Page(browser, index, viewport))
        return pages[-1]

    yield open_
    for page in pages:
        page.close()


@pytest.fixture
def artifacts(tmp_path) -> Path:
    folder = Path(os.environ.get("CAMCLI_TEST_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def index_of(out: Path) -> Path:
    return out / "report" / "index.html"


def file_of(url: str) -> Path:
    return Path(os.fsdecode(unquote_to_bytes(urlparse(url).path)))


# ---- without a browser -------------------------------------------------------------------------


def test_embedded_json_cannot_close_the_script_or_break_parsing():
    text = json_for_html({"name": "</script><!--&\u2028\u2029\udce9", "nan": float("nan")})
    assert not set(text) & set("<>&\u2028\u2029")
    assert json.loads(text) == {"name": "</script><!--&\u2028\u2029\udce9", "nan": None}


@pytest.mark.parametrize(
    ("name", "encoded"),
    [
        ("javascript:alert(1).png", "javascript%3Aalert%281%29.png"),
        ("a&b#c?d%20.png", "a%26b%23c%3Fd%2520.png"),
        ('"><img src=x>.png', "%22%3E%3Cimg%20src%3Dx%3E.png"),
        (os.fsdecode(NOT_UTF8), "caf%E9.png"),
    ],
)
def test_urls_are_relative_percent_encoded_paths(tmp_path, name, encoded):
    assert url_path(tmp_path / "out" / name / "x.png", tmp_path / "out" / "report") == f"../{encoded}/x.png"


def test_report_lists_every_explanation_and_names_its_thumbnails(explained):
    parts = sorted((explained.out / "report" / "data").glob("part-*.js"))
    assert len(parts) == 1
    assert index_of(explained.out).is_file()
    thumbs_made = sorted(p.stem for p in (explained.out / "report" / "thumbs").rglob("*.jpg"))
    ok_shas = {d["source"]["sha256"][:32] for d in explained.docs.values() if d["status"] == "ok"}
    assert thumbs_made == sorted(ok_shas)  # one per distinct source content, named after it
    for thumb in (explained.out / "report" / "thumbs").rglob("*.jpg"):
        with Image.open(thumb) as img:
            assert img.format == "JPEG"
            assert max(img.size) <= thumbs.SIZE


def test_thumbnails_are_not_redone(explained, tmp_path, monkeypatch):
    out = copy_out(explained, tmp_path / "out")
    with contextlib.chdir(explained.root):
        build_report(out)
        before = {p: p.stat().st_mtime_ns for p in (out / "report" / "thumbs").rglob("*.jpg")}
        monkeypatch.setattr(thumbs, "_write", lambda *a: pytest.fail("a thumbnail was made again"))
        calls: list[tuple[int, int]] = []
        build_report(out, progress=lambda done, total: calls.append((done, total)))
    assert before
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert calls[-1] == (len(explained.docs), len(explained.docs))


def _odd_images(folder: Path) -> dict[str, tuple[int, int]]:
    """Images in awkward modes, with the (width, height) a viewer shows."""
    with Image.open(SAMPLES / "chelsea.png") as img:
        photo = img.convert("RGB")  # 451 × 300
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90°: shown 300 wide, 451 high
    photo.save(folder / "rotated.jpg", exif=exif)
    Image.fromarray(np.linspace(0, 65535, 300 * 451).reshape(300, 451).astype(np.uint16)).save(folder / "gray16.png")
    photo.convert("CMYK").save(folder / "cmyk.jpg")
    palette = photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.save(folder / "palette.png", transparency=0)
    return {"rotated.jpg": (300, 451), "gray16.png": (451, 300), "cmyk.jpg": (451, 300), "palette.png": (451, 300)}


def test_thumbnails_of_odd_modes_are_upright_rgb(tmp_path):
    out = tmp_path / "out"
    for name, (width, height) in _odd_images(tmp_path).items():
        sha = hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
        doc = ImageDoc(path=str(tmp_path / name), status="ok", error=None, folder=out / name, sha256=sha)
        rel = thumbs.thumbnail(doc, out)
        assert rel == f"thumbs/{sha[:2]}/{sha[:32]}.jpg"
        with Image.open(out / "report" / rel) as thumb:
            assert thumb.mode == "RGB"
            assert max(thumb.size) == thumbs.SIZE
            assert (thumb.width < thumb.height) == (width < height), name
            assert ImageOps.grayscale(thumb).getextrema()[1] > 100, name  # 16-bit grey scaled, not clipped


def test_a_changed_source_is_not_thumbnailed(explained, tmp_path):
    """The thumbnail must show what was explained: a source edited since falls back to the overlay
    (unless a copy with the explained content made the thumbnail: the hostile names copy chelsea.png)."""
    root = tmp_path / "root"
    shutil.copytree(explained.root / "images", root / "images")
    out = copy_out(explained, root / "out")
    Image.new("RGB", (50, 50), "red").save(root / "images" / "rocket.jpg")
    Image.new("RGB", (50, 50), "red").save(root / "images" / "chelsea.png")
    build_report(out)
    data = (out / "report" / "data" / "part-000.js").read_text()
    records = json.loads(json.loads(data[data.index('"images", ') + 10 : data.rindex("]);")]))
    thumb = {r[0]: r[4] for r in records}
    assert Path(thumb["images/rocket.jpg"]).name.startswith("o")
    assert thumb["images/chelsea.png"] == thumb[f"images/{HOSTILE[0]}"]
    assert not Path(thumb["images/chelsea.png"]).name.startswith("o")


# ---- in the browser ----------------------------------------------------------------------------


def test_cards_are_inert_complete_and_loaded(explained, open_report, artifacts):
    page = open_report(index_of(explained.out))
    cards = page.cards()
    assert sorted(c["path"] for c in cards) == sorted(explained.docs)
    assert {c["path"]: c["status"] for c in cards} == {p: d["status"] for p, d in explained.docs.items()}
    assert {c["path"] for c in cards} >= {f"images/{n}" for n in HOSTILE} | {"images/caf\\xe9.png"}
    bad = page.page.locator('.card[data-status="error"]')
    assert bad.get_attribute("data-camcli-image") == "images/bad.jpg"
    assert explained.docs["images/bad.jpg"]["error"]["message"] in bad.locator(".error-text").inner_text()
    for path in HOSTILE:
        assert page.page.locator(".card .path").filter(has_text=path.split("/")[-1]).count() >= 1
    for url in page.page.eval_on_selector_all("#cards img", "imgs => imgs.map(i => i.src)"):
        assert url.startswith("file://")
        assert file_of(url).is_file()
    legend = page.page.eval_on_selector("#legend-bar", "e => getComputedStyle(e).backgroundImage")
    assert legend.startswith("linear-gradient")
    assert "rgb(0, 0, 128)" in legend
    page.assert_clean()
    page.page.screenshot(path=str(artifacts / "report-desktop.png"), full_page=True)


def test_phone_layout_is_one_column(explained, open_report, artifacts):
    page = open_report(index_of(explained.out), {"width": 390, "height": 844})
    lefts = page.page.eval_on_selector_all("#cards .card", "cs => cs.map(c => c.getBoundingClientRect().left)")
    assert len(set(lefts)) == 1
    assert page.page.evaluate("document.documentElement.scrollWidth") <= 390
    page.page.screenshot(path=str(artifacts / "report-phone-top.png"))
    page.page.evaluate("document.getElementById('images').scrollIntoView()")
    page.page.screenshot(path=str(artifacts / "report-phone-cards.png"))
    page.assert_clean()


def test_filters_and_search(explained, open_report):
    page = open_report(index_of(explained.out))
    everything = sorted(explained.docs)
    page.page.select_option("#f-status", "error")
    assert page.visible_paths() == ["images/bad.jpg"]
    page.page.select_option("#f-status", "")
    page.page.fill("#search", "COFFEE")
    assert page.visible_paths() == ["images/coffee.png"]
    page.page.fill("#search", "#c?d%")
    assert page.visible_paths() == ["images/a&b#c?d%20.png"]
    page.page.fill("#search", "")
    coffee_class = explained.docs["images/coffee.png"]["predictions"][0]["label"]
    page.page.select_option(
        "#f-class",
        label=next(
            o for o in page.page.locator("#f-class option").all_inner_texts() if o.startswith(coffee_class + " (")
        ),
    )
    shown = page.visible_paths()
    assert "images/coffee.png" in shown
    assert all(explained.docs[p]["predictions"][0]["label"] == coffee_class for p in shown)
    page.page.select_option("#f-class", "")
    page.page.select_option("#f-method", label="guided-gradcam")
    assert sorted(page.visible_paths()) == [p for p in everything if p != "images/bad.jpg"]
    assert page.page.locator("#cards .shot figcaption").first.inner_text().startswith("guided-gradcam")
    page.page.select_option("#sort", "conf-asc")
    probabilities = [explained.docs[p]["predictions"][0]["probability"] for p in page.visible_paths()]
    assert probabilities == sorted(probabilities)
    page.assert_clean()


def test_keyboard_navigation_and_detail_view(explained, open_report, artifacts):
    page = open_report(index_of(explained.out))
    paths = page.visible_paths()
    keyboard = page.page.keyboard
    focused = "document.activeElement.dataset.camcliImage"
    keyboard.press("j")
    assert page.page.evaluate(focused) == paths[0]
    columns = len(set(page.page.eval_on_selector_all("#cards .card", "cs => cs.map(c => c.offsetLeft)")))
    keyboard.press("ArrowDown")
    assert page.page.evaluate(focused) == paths[columns]
    keyboard.press("ArrowUp")
    keyboard.press("j")
    keyboard.press("ArrowRight")
    keyboard.press("k")
    assert page.page.evaluate(focused) == paths[1]
    keyboard.press("Enter")
    dialog = page.page.locator("#detail")
    assert dialog.evaluate("d => d.open")
    assert page.page.inner_text("#detail-title") == paths[1]
    link = dialog.locator("a.json-link")
    assert json.loads(file_of(link.evaluate("a => a.href")).read_text())["source"]["path"] == paths[1]
    assert link.get_attribute("href").endswith("/explanation.json")
    assert link.get_attribute("href").startswith("../")
    doc = explained.docs[paths[1]]
    body = dialog.inner_text()
    for entry in doc["explanations"]:
        assert entry["method"] in body
        assert str(entry["class_index"]) in body
    assert page.page.evaluate(BROKEN_IMAGES, "#detail") == []
    page.page.screenshot(path=str(artifacts / "report-detail.png"))
    keyboard.press("j")
    assert page.page.inner_text("#detail-title") == paths[2]
    keyboard.press("Escape")
    assert not dialog.evaluate("d => d.open")
    assert page.page.evaluate(focused) == paths[2]
    page.assert_clean()


def test_report_without_sources_or_pictures(explained, tmp_path, open_report):
    """Sources moved away: thumbnails come from overlays. No pictures saved: numbers only."""
    out = copy_out(explained, tmp_path / "out")
    build_report(out)
    page = open_report(index_of(out))
    thumbs_shown = page.page.eval_on_selector_all("#cards img.thumb", "imgs => imgs.map(i => i.getAttribute('src'))")
    assert len(thumbs_shown) == len(explained.docs) - 1
    assert all(Path(t).name.startswith("o") for t in thumbs_shown)
    assert page.page.locator('.card[data-status="error"] .thumb.placeholder').count() == 1
    page.assert_clean()

    for json_path in out.rglob("explanation.json"):
        doc = json.loads(json_path.read_text(encoding="utf-8"))
        for entry in doc["explanations"]:
            entry["files"] = {k: v for k, v in entry["files"].items() if k == "raw_map"}
        json_path.write_text(json.dumps(doc), encoding="utf-8")
    build_report(out)
    page = open_report(index_of(out))
    assert len(page.cards()) == len(explained.docs)
    assert page.page.locator("#cards .shot-img.placeholder").count() == 2 * (len(explained.docs) - 1)
    page.assert_clean()


def test_interrupted_run(explained, tmp_path, open_report):
    out = copy_out(explained, tmp_path / "out")
    run = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps({**run, "status": "running"}))
    lines = (out / "summary.jsonl").read_text().splitlines()
    gone = [json.loads(line) for line in lines[:2]]
    for line in gone:
        (out / line["json"]).unlink()
    (out / "summary.jsonl").write_text("\n".join(lines[1:]) + '\n{"path": "torn')  # first line lost, last one torn
    build_report(out)
    page = open_report(index_of(out))
    assert "still running" in page.page.inner_text("#notice")
    cards = {c["path"]: c["status"] for c in page.cards()}
    assert gone[0]["path"] not in cards
    assert cards[gone[1]["path"]] == gone[1]["status"]
    assert len(cards) == len(explained.docs) - 1
    page.assert_clean()


def test_empty_or_missing_folder(tmp_path, open_report):
    with pytest.raises(ValueError, match="not a folder"):
        build_report(tmp_path / "nowhere")
    (tmp_path / "out").mkdir()
    build_report(tmp_path / "out")
    page = open_report(index_of(tmp_path / "out"))
    assert page.cards() == []
    assert "No finished images" in page.page.inner_text("#count")
    assert "run.json was not found" in page.page.inner_text("#notice")
    page.assert_clean()


def test_malformed_documents_are_shown_safely(tmp_path, open_report):
    """Hand-edited or foreign JSON: odd types, NaN, lone surrogates, NUL, files outside the folder."""
    out = tmp_path / "out"
    odd = {
        "status": "ok",
        "source": {"path": "\ud800<b>x\u0000y", "sha256": 7},
        "predictions": [{"class_index": "?", "label": 5, "probability": float("nan")}, "junk"],
        "explanations": [
            {"method": "<i>m</i>", "bbox": [float("inf"), 0, 1, 2], "files": {"overlay": "../../../etc/passwd"}},
            {"files": {"image": "\ud800.png"}},
        ],
    }
    for name, doc in {"odd.png": odd, "list.png": [1, 2], "nosource.png": {"status": "ok"}}.items():
        (out / name).mkdir(parents=True)
        (out / name / "explanation.json").write_text(json.dumps(doc))
    (out / "torn.png").mkdir()
    (out / "torn.png" / "explanation.json").write_text('{"status": "ok", "sou')
    build_report(out)
    page = open_report(index_of(out))
    assert page.cards() == [{"path": "\ud800<b>x\u0000y", "status": "ok"}]
    assert page.page.locator("#cards img").count() == 0  # no thumbnail, no picture outside the folder
    assert "3 explanation.json files could not be read" in page.page.inner_text("#notice")
    page.assert_clean()


def test_legend_matches_the_colormap():
    from camcli.html.meta import legend

    assert legend({"options": {"colormap": "hot"}})["stops"][::16] == ["#000000", "#ffffff"]
    assert legend({"options": {"colormap": "gray"}})["stops"][::16] == ["#000000", "#ffffff"]
    assert legend(None) == legend({"options": {"colormap": "jet"}}) != legend({"options": {"colormap": "hot"}})


def _shown(value: Any) -> str:
    """A value as the page prints it (report.js ``fmt``): 4 significant digits, yes/no, – for none."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return str(int(value)) if float(value).is_integer() else repr(float(f"{value:.4g}"))
    return str(value)


def _flat(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        elif not isinstance(value, list):
            flat[f"{prefix}{key}"] = value
    return flat


def _evaluate(explained: Explained, out: Path, run_cli) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A real `camcli evaluate --from OUT` with real gates. Ground truth: sample_images/boxes.csv's hand-drawn
    boxes scaled to the small copies, each for the class the run explained (its top-1), and one copy of the
    cat annotated with a box in a corner, far from the cat: a pointing-game miss. Returns metrics.json and
    per_image.jsonl's lines by source path."""
    with open(SAMPLES / "boxes.csv", newline="") as fh:
        drawn = {row["path"]: row for row in csv.DictReader(fh)}
    rows = []
    for name in ("chelsea.png", "coffee.png", "rocket.jpg", HOSTILE[4]):
        source = drawn["chelsea.png" if name == HOSTILE[4] else name]
        with Image.open(SAMPLES / source["path"]) as big, Image.open(explained.root / "images" / name) as small:
            sx, sy = small.width / big.width, small.height / big.height
        box = [float(source[k]) * s for k, s in (("x0", sx), ("y0", sy), ("x1", sx), ("y1", sy))]
        if name == HOSTILE[4]:
            box = [0, 0, 8, 8]
        top1 = explained.docs[f"images/{name}"]["predictions"][0]["class_index"]
        rows.append([str(explained.root / "images" / name), top1, *box])
    truth = out.parent / "truth.csv"
    with open(truth, "w", newline="") as fh:
        csv.writer(fh).writerows([["path", "class", "x0", "y0", "x1", "y1"], *rows])
    gates = ["--max-loc-error", "1", "--min-pointing-game", "0", "--min-energy", "1", "--min-insertion-auc", "0.5"]
    with contextlib.chdir(explained.root):  # the run's source paths are relative to where it ran
        result = run_cli("evaluate", "--from", out, "--annotations", truth, "-q", *gates)
    assert result.exit_code == 4, result.output  # a gate failed
    metrics = json.loads((out / "metrics.json").read_text())
    lines = [json.loads(line) for line in (out / "per_image.jsonl").read_text().splitlines()]
    return metrics, {line["path"]: line for line in lines}


def test_evaluation_gates_and_audit(explained, tmp_path, open_report, run_cli):
    out = copy_out(explained, tmp_path / "out")
    metrics, lines = _evaluate(explained, out, run_cli)
    gates = metrics["gates"]
    assert {g["name"] for g in gates} == {"max-loc-error", "min-pointing-game", "min-energy", "min-insertion-auc"}
    assert {g["passed"] for g in gates} == {True, False}
    build_report(out)
    page = open_report(index_of(out))

    rows = page.page.eval_on_selector_all(
        "#gates tbody tr", "rs => rs.map(r => [...[...r.cells].slice(1).map(c => c.textContent), r.dataset.passed])"
    )
    failing_first = sorted(gates, key=lambda g: g["passed"])
    assert rows == [
        [g["name"], g["method"], g["metric"], _shown(g["value"]), _shown(g["threshold"]), str(g["passed"]).lower()]
        for g in failing_first
    ]
    passing = sum(g["passed"] for g in gates)
    verdict = page.page.inner_text("#verdict")
    assert "FAILED" in verdict
    assert f"{passing} of {len(gates)} gates pass · {metrics['images']} images evaluated" in verdict

    header = page.page.eval_on_selector_all("#method-metrics thead th", "hs => hs.map(h => h.textContent)")
    table = page.page.eval_on_selector_all(
        "#method-metrics tbody tr", "rs => rs.map(r => [...r.cells].map(c => c.textContent))"
    )
    assert header[0] == "method"
    assert {"localization.top1_loc_error", "pointing_game.accuracy", "energy_pointing_game"} <= set(header)
    flat = _flat(metrics["methods"]["gradcam"])
    assert set(header[1:]) == set(flat)
    assert [row[0] for row in table] == ["gradcam"]
    assert dict(zip(header[1:], table[0][1:], strict=True)) == {k: _shown(v) for k, v in flat.items()}

    hits = {p: line["methods"]["gradcam"]["pointing_hit"] for p, line in lines.items() if "pointing_hit" in line}
    assert set(hits.values()) == {True, False}  # the corner box misses
    for outcome, wanted in (("miss", False), ("hit", True)):
        page.page.select_option("#f-audit", outcome)
        shown = page.visible_paths()
        assert sorted(shown) == sorted(p for p, h in hits.items() if h is wanted)
        assert page.page.locator("#cards .badge", has_text=f"audit: {outcome}").count() == len(shown)
    page.page.select_option("#f-audit", "")

    page.page.select_option("#sort", label="gradcam energy, worst first")  # higher is better: lowest first
    energy = {p: line["methods"]["gradcam"].get("energy") for p, line in lines.items()}
    order = page.visible_paths()
    scored = [energy[p] for p in order if energy.get(p) is not None]
    assert len(scored) >= 2
    assert scored == sorted(scored)
    assert order[: len(scored)] == [p for p in order if energy.get(p) is not None]  # the others after them
    page.assert_clean()


def test_compare_pairs_least_similar_first(explained, tmp_path, open_report):
    root = tmp_path
    a = copy_out(explained, root / "a")
    copy_out(explained, root / "b")
    folders = {
        d: str(p.parent.relative_to(a))
        for p in a.rglob("explanation.json")
        for d in [json.loads(p.read_text(encoding="utf-8"))["source"]["path"]]
    }
    ok = sorted(p for p, d in explained.docs.items() if d["status"] == "ok")
    images = [
        {
            "path": p,
            "a": f"a/{folders[p]}",
            "b": f"b/{folders[p]}",
            "top1_changed": n == 3,
            "top1_a": {"class_index": 1, "label": "x", "probability": 0.5},
            "top1_b": {"class_index": 2, "label": "y", "probability": 0.4},
            "spearman": 1 - n / 10,
            "mask_iou": 0.5,
            "box_iou": 0.5,
        }
        for n, p in enumerate(ok)
    ]
    compare = root / "compare.json"
    compare.write_text(
        json.dumps(
            {
                "schema_version": 1,
                "run_a": "a",
                "run_b": "b",
                "images": images,
                "only_in_a": ["gone.png"],
                "only_in_b": [],
                "summary": {"pairs": len(ok)},
            }
        )
    )
    build_report(a, compare=compare)
    page = open_report(index_of(a))
    page.page.click("#tab-compare")
    order = page.page.eval_on_selector_all("#pairs .pair", "ps => ps.map(p => p.dataset.camcliImage)")
    expected = [ok[3]] + [p for n, p in sorted(enumerate(ok), key=lambda x: -x[0]) if n != 3]
    assert order == expected
    assert page.page.locator("#pairs .pair").first.locator("img").count() == 2
    assert page.page.evaluate(BROKEN_IMAGES, "#pairs") == []
    assert "gone.png" in page.page.text_content("#only-lists")
    page.page.click("#tab-images")
    page.assert_clean()


def _synthetic_out(out: Path, n: int, overlay: bytes) -> None:
    """n explanation.json documents, each folder with its own copy of one small overlay."""
    out.mkdir()
    for i in range(n):
        folder = out / f"img{i:04d}.png"
        folder.mkdir()
        (folder / "gradcam_1_overlay.png").write_bytes(overlay)
        doc = {
            "schema_version": 1,
            "status": "ok",
            "error": None,
            "source": {"path": f"gone/img{i:04d}.png", "sha256": f"{i:064x}", "width": 8, "height": 8},
            "predictions": [{"class_index": 1, "label": f"class {i % 7}", "logit": 1.0, "probability": i / n}],
            "explanations": [
                {
                    "method": "gradcam",
                    "class_index": 1,
                    "label": f"class {i % 7}",
                    "rank": 1,
                    "logit": 1.0,
                    "probability": i / n,
                    "bbox": [0, 0, 4, 4],
                    "peak": [1, 1],
                    "files": {"overlay": "gradcam_1_overlay.png"},
                }
            ],
        }
        (folder / "explanation.json").write_text(json.dumps(doc))


def test_hundreds_of_cards_render_lazily_from_several_parts(tmp_path, open_report, monkeypatch):
    monkeypatch.setattr(page_module, "PART_SIZE", 128)
    overlay = tmp_path / "o.png"
    Image.new("RGB", (8, 8), "blue").save(overlay)
    _synthetic_out(tmp_path / "out", 300, overlay.read_bytes())
    build_report(tmp_path / "out")
    assert len(list((tmp_path / "out" / "report" / "data").glob("part-*.js"))) == 3
    page = open_report(index_of(tmp_path / "out"), {"width": 1280, "height": 700})
    assert len(page.cards()) < 300
    for _ in range(50):
        if len(page.cards()) == 300:
            break
        page.page.mouse.wheel(0, 20_000)
        page.page.wait_for_timeout(50)
    assert len(page.cards()) == 300
    assert page.visible_paths() == [f"gone/img{i:04d}.png" for i in range(300)]
    assert page.problems == []
    assert page.page.evaluate("window.__pwned") is None


def test_dff_concepts_are_shown_with_their_top_classes(tmp_path, run_cli, open_report, artifacts):
    """A dff run: each concept's overlay captioned with its top classes (set as text, even a hostile
    label), the picture of all concepts once, and the detail view's group of concepts."""
    images = tmp_path / "images"
    images.mkdir()
    small_copy("chelsea.png", images / "chelsea.png")
    out = tmp_path / "out"
    result = run_cli("explain", images, "-o", out, "-q", "--method", "dff", "--dff-n-components", "3")
    assert result.exit_code == 0, result.output
    json_path = out / "chelsea.png" / "explanation.json"
    doc = json.loads(json_path.read_text(encoding="utf-8"))
    doc["explanations"][1]["concept_classes"][0]["label"] = "<img src=x onerror=window.__pwned=1>"
    json_path.write_text(json.dumps(doc), encoding="utf-8")
    build_report(out)
    page = open_report(index_of(out))
    captions = page.page.eval_on_selector_all("#cards .shot figcaption", "fs => fs.map(f => f.textContent)")
    entries = doc["explanations"]
    assert len(captions) == len(entries) + 1
    for caption, entry in zip(captions, entries, strict=False):
        named = entry["concept_classes"]
        assert caption.startswith(f"dff · concept {entry['concept']}: {named[0]['label']} ")
        assert named[1]["label"] in caption
    assert captions[-1] == "dff · all concepts"
    assert page.page.locator("#cards .shot img").count() == len(entries) + 1
    page.page.locator("#cards .card").first.focus()
    page.page.keyboard.press("Enter")
    body = page.page.locator("#detail").inner_text()
    assert "dff concepts (not per class)" in body
    assert "<img src=x onerror=window.__pwned=1>" in body
    page.page.screenshot(path=str(artifacts / "report-dff.png"))
    page.assert_clean()


def test_segmentation_run_shows_its_predicted_classes(tmp_path, run_cli, open_report, artifacts):
    """A segmentation model's detail view: the predicted-class picture and each class's share, its labels
    set as text (a hostile one too)."""
    images = tmp_path / "images"
    images.mkdir()
    small_copy("chelsea.png", images / "chelsea.png")
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(["<img src=x onerror=window.__pwned=1>", *[f"c{i}" for i in range(1, 21)]]) + "\n")
    out = tmp_path / "out"
    spec = ["-m", "tv:lraspp_mobilenet_v3_large", "--random-weights", "--input-size", "64", "--labels", labels]
    result = run_cli("explain", images, "-o", out, "-q", *spec)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "chelsea.png" / "explanation.json").read_text(encoding="utf-8"))
    doc["segmentation"]["areas"][0]["label"] = "<img src=x onerror=window.__pwned=1>"
    (out / "chelsea.png" / "explanation.json").write_text(json.dumps(doc), encoding="utf-8")
    build_report(out)
    page = open_report(index_of(out))
    page.page.locator("#cards .card").first.focus()
    page.page.keyboard.press("Enter")
    detail = page.page.locator("#detail")
    body = detail.inner_text()
    assert "Predicted classes (segmentation)" in body
    assert "<img src=x onerror=window.__pwned=1>" in body
    masks = detail.locator("img.segmentation")
    assert masks.count() == 1
    assert masks.get_attribute("src").endswith("/segmentation.png")
    assert page.page.evaluate(BROKEN_IMAGES, "#detail") == []
    page.page.screenshot(path=str(artifacts / "report-segmentation.png"))
    page.assert_clean()
