"""Command line: ``camcli explain``, ``evaluate``, ``compare``, ``report``, ``layers``, ``models``.

The only click importer. Options become a job description (``camcli.job``); a runner does the work.
Module-level imports stay light (no torch, timm or torchvision), so --help, --version and usage
errors answer at once.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from . import __version__
from .errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, CamcliError
from .methods import METHODS, SMOOTHING

if TYPE_CHECKING:
    from .job import ExplainJob, ModelSpec

MODEL_HELP = (
    "A timm name (resnet50), tv:NAME (torchvision), a model folder or local-dir:PATH, hf-hub:ORG/NAME "
    "(local cache only), or FILE.py:FACTORY / package.module:FACTORY (runs that code)."
)
GATE_OPTIONS = ("max-loc-error", "min-pointing-game", "min-energy", "min-insertion-auc", "max-deletion-auc")


class CliError(click.ClickException):
    """A CamcliError as the user sees it: one sentence, exit code 2, no traceback."""

    exit_code = EXIT_USAGE


class FiniteFloat(click.FloatRange):
    """A float in a range that is also finite: NaN passes every range check, since comparisons are false."""

    name = "float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return float(super().convert(number, param, ctx))


class WholeNumber(click.IntRange):
    """An integer in a range, refusing what ``int()`` would silently truncate: 2.5, infinities, booleans."""

    name = "integer"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, bool) or (isinstance(value, float) and not (math.isfinite(value) and value.is_integer())):
            self.fail(f"{value!r} is not a whole number.", param, ctx)
        return int(super().convert(value, param, ctx))


def _apply_config(ctx: click.Context, param: click.Parameter, path: Path | None) -> Path | None:
    """Eager: the config file's values become this command's defaults (the command line wins)."""
    if path is None:
        return None
    from .config import read_config

    try:
        values, gates = read_config(path, ctx.command.name or "explain")
    except CamcliError as exc:
        raise CliError(str(exc)) from exc
    names = {}
    for p in ctx.command.params:
        if p.name == "config" or p.name is None:
            continue
        names[p.name] = p.name
        for opt in getattr(p, "opts", []):
            if opt.startswith("--"):
                names[opt[2:].replace("-", "_")] = p.name
    unknown = [k for k in values if k not in names]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(names), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise click.BadParameter(f"unknown key '{unknown[0]}' in {path}.{hint}", ctx=ctx, param=param)
    ctx.default_map = {**(ctx.default_map or {}), **{names[k]: v for k, v in values.items()}}
    ctx.meta["camcli.config"] = str(path)
    ctx.meta["camcli.gates"] = gates
    return path


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """SIGINT / SIGTERM ask the run to stop after the current batch; a second SIGINT stops at once."""
    stop = threading.Event()

    def ask_to_stop(signum: int, frame: object) -> None:
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        click.echo(
            f"\n{signal.Signals(signum).name}: finishing the current batch (Ctrl-C again to stop now).", err=True
        )

    if threading.current_thread() is not threading.main_thread():  # signals only reach the main thread
        yield stop
        return
    previous = {sig: signal.signal(sig, ask_to_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _options(specs: list[Callable[[Callable[..., Any]], Callable[..., Any]]]) -> Callable[..., Any]:
    def apply(fn: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(specs):
            fn = option(fn)
        return fn

    return apply


_model_options = _options(
    [
        click.option(
            "--model", "-m", "model_name", default="tf_efficientnet_lite0", show_default=True, help=MODEL_HELP
        ),
        click.option(
            "--weights",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="Local weights: a checkpoint as trainers write it (timm train.py, Lightning, torchvision "
            "references, DDP/compiled), a state dict (.pth/.pt/.bin) or .safetensors.",
        ),
        click.option("--ema", is_flag=True, help="Use the checkpoint's EMA weights (timm's state_dict_ema)."),
        click.option(
            "--num-classes",
            type=WholeNumber(min=1),
            help="Classifier outputs, for custom heads.  [default: read from the checkpoint]",
        ),
        click.option(
            "--labels",
            "labels_file",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="Class names, one per line, in class-index order.",
        ),
        click.option("--random-weights", is_flag=True, help="Use untrained random weights (never chosen silently)."),
        click.option(
            "--head",
            type=click.Choice(["softmax", "sigmoid", "binary"]),
            default="softmax",
            show_default=True,
            help="softmax: one class per image; sigmoid: multi-label; binary: one logit (negative/positive).",
        ),
        click.option("--input-size", metavar="N|HxW", help="Model input size, overriding the model's config."),
        click.option("--mean", metavar="A,B,C", help="Normalization mean (one value for grayscale models)."),
        click.option("--std", metavar="A,B,C", help="Normalization std."),
        click.option(
            "--interpolation",
            type=click.Choice(["bilinear", "bicubic", "nearest"]),
            default=None,
            help="Resize interpolation.",
        ),
        click.option(
            "--crop-pct",
            type=FiniteFloat(0.0, 1.5, min_open=True),
            default=None,
            help="Resize to input-size / crop-pct before cropping (timm's crop_pct).",
        ),
        click.option(
            "--crop-mode",
            type=click.Choice(["center", "squash", "border"]),
            default=None,
            help="center: crop the middle; squash: stretch; border: fit and pad with the mean colour.",
        ),
    ]
)

_run_options = _options(
    [
        click.option(
            "--include",
            multiple=True,
            metavar="GLOB",
            help="Only files in folders whose relative path or name matches; repeatable (e.g. '*.jpg').",
        ),
        click.option("--exclude", multiple=True, metavar="GLOB", help="Skip files in folders matching; repeatable."),
        click.option(
            "--layer",
            "layer_names",
            multiple=True,
            help="Target layer (default: the last layer the class scores reach at most positions); repeatable: "
            "per-layer maps are scaled and averaged. See 'camcli layers'.",
        ),
        click.option(
            "--top-k",
            type=WholeNumber(min=0),
            default=None,
            help="Explain the K most likely classes.  [default: 3, or 0 with --class or --threshold]",
        ),
        click.option(
            "--threshold",
            type=FiniteFloat(0.0, 1.0),
            default=None,
            help="Also explain every class at least this probable (multi-label models: --head sigmoid).",
        ),
        click.option(
            "--class", "class_specs", multiple=True, help="Explain this class (index or label name); repeatable."
        ),
        click.option(
            "--method",
            "method_specs",
            multiple=True,
            metavar="LIST",
            help=f"Comma-separated, repeatable: {', '.join(METHODS)}.  [default: gradcam]",
        ),
        click.option(
            "--smooth",
            type=click.Choice(SMOOTHING),
            default=None,
            help="aug: average over flipped and scaled copies; eigen: first principal component instead of the "
            "channel sum (CAM methods).",
        ),
        click.option(
            "--occlusion-window",
            type=WholeNumber(min=1),
            default=32,
            show_default=True,
            help="Occlusion: window side in input pixels.",
        ),
        click.option(
            "--occlusion-stride",
            type=WholeNumber(min=1),
            default=16,
            show_default=True,
            help="Occlusion: step between windows.",
        ),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps."),
        click.option("--batch-size", type=WholeNumber(min=1), default=8, show_default=True),
        click.option(
            "--workers",
            type=WholeNumber(min=1),
            default=None,
            help="Threads that decode images ahead of the model, and as many that write behind it.  "
            "[default: min(4, CPUs)]",
        ),
        click.option(
            "--precision",
            type=click.Choice(["fp32", "fp16", "bf16"]),
            default="fp32",
            show_default=True,
            help="Forward-pass precision (maps are always computed in fp32). fp16 needs a GPU.",
        ),
        click.option(
            "--save",
            "save_specs",
            multiple=True,
            metavar="LIST",
            help="What to write besides explanation.json: any of overlay,map,raw_map (comma-separated).  "
            "[default: overlay,raw_map]",
        ),
        click.option("--overlay-format", type=click.Choice(["png", "jpg", "webp"]), default="png", show_default=True),
        click.option(
            "--out",
            "-o",
            "out_dir",
            type=click.Path(file_okay=False, path_type=Path),
            default=Path("camcli-out"),
            show_default=True,
            help="Output folder.",
        ),
        click.option("--colormap", type=click.Choice(["jet", "hot", "gray"]), default="jet", show_default=True),
        click.option(
            "--alpha", type=FiniteFloat(0.0, 1.0), default=0.5, show_default=True, help="Heatmap opacity in overlays."
        ),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary on stderr."),
        click.option(
            "--max-pixels",
            type=WholeNumber(min=1),
            default=100_000_000,
            show_default=True,
            help="Refuse images with more pixels than this (a decompression-bomb guard), from the header.",
        ),
        click.option(
            "--resume/--overwrite",
            default=True,
            show_default=True,
            help="Skip images whose outputs are complete, from the same file content and settings; or redo all.",
        ),
        click.option(
            "--report",
            "html_report",
            is_flag=True,
            help="Also write OUT/report/index.html, the visual report (see 'camcli report').",
        ),
        click.option(
            "--shard",
            metavar="I/N",
            envvar=None,
            help="Explain only the I-th of N parts of the sorted inputs (job arrays).  "
            "[default: from SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT]",
        ),
        click.option(
            "--engine",
            type=click.Choice(["local", "ray"]),
            default="local",
            show_default=True,
            help="local: this process; ray: a Ray cluster (pip install -e '.[ray]').",
        ),
        click.option(
            "--ray-address",
            metavar="ADDR",
            help="Ray cluster to use.  [default: RAY_ADDRESS, else a running cluster, else start one here]",
        ),
        click.option(
            "--ray-workers",
            metavar="MIN,MAX",
            help="Explaining actors.  [default: 1 to half the CPUs, or one per GPU share]",
        ),
        click.option(
            "--ray-gpus-per-worker",
            type=FiniteFloat(0.0),
            default=0.0,
            show_default=True,
            help="GPUs per explaining actor (fractions share a GPU).",
        ),
    ]
)

_config_option = click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    is_eager=True,
    expose_value=False,
    callback=_apply_config,
    help="TOML file whose keys (long option names, e.g. top-k, model, inputs) set defaults.",
)


def _model_spec(options: dict[str, Any]) -> ModelSpec:
    """The model options (popped from ``options``) as a ModelSpec, checked without torch."""
    from .job import ModelSpec, Preprocessing, parse_floats, parse_size

    size, mean, std = options.pop("input_size"), options.pop("mean"), options.pop("std")
    preprocess = Preprocessing(
        parse_size(str(size)) if size else None,
        parse_floats("mean", mean) if mean else None,
        parse_floats("std", std) if std else None,
        options.pop("interpolation"),
        options.pop("crop_pct"),
        options.pop("crop_mode"),
    )
    return ModelSpec(
        options.pop("model_name"),
        options.pop("weights"),
        options.pop("num_classes"),
        options.pop("labels_file"),
        options.pop("random_weights"),
        options.pop("ema"),
        options.pop("head"),
        preprocess,
    )


def _explain_job(options: dict[str, Any], inputs: tuple[Path, ...], **overrides: Any) -> ExplainJob:
    """The run options (popped from ``options``) as an ExplainJob; '-' among ``inputs`` reads stdin."""
    from .discover import read_path_list
    from .job import ExplainJob, parse_methods, parse_save
    from .runners.shards import parse_shard

    spec = _model_spec(options)
    paths = tuple(p for given in inputs for p in (read_path_list(sys.stdin.buffer) if str(given) == "-" else [given]))
    fields = dict(
        inputs=paths,
        out=options.pop("out_dir"),
        model=spec,
        include=options.pop("include"),
        exclude=options.pop("exclude"),
        layers=options.pop("layer_names"),
        top_k=options.pop("top_k"),
        threshold=options.pop("threshold"),
        classes=options.pop("class_specs"),
        methods=parse_methods(options.pop("method_specs")),
        smooth=options.pop("smooth"),
        occlusion_window=options.pop("occlusion_window"),
        occlusion_stride=options.pop("occlusion_stride"),
        device=options.pop("device"),
        batch_size=options.pop("batch_size"),
        workers=options.pop("workers"),
        precision=options.pop("precision"),
        save=parse_save(options.pop("save_specs")),
        overlay_format=options.pop("overlay_format"),
        colormap=options.pop("colormap"),
        alpha=options.pop("alpha"),
        quiet=options.pop("quiet"),
        max_pixels=options.pop("max_pixels"),
        resume=options.pop("resume"),
        config=click.get_current_context().meta.get("camcli.config"),
        shard=parse_shard(options.pop("shard")),
        engine=options.pop("engine"),
        ray_address=options.pop("ray_address"),
        ray_workers=_workers(options.pop("ray_workers")),
        ray_gpus_per_worker=options.pop("ray_gpus_per_worker"),
    )
    fields.update(overrides)
    return ExplainJob(**fields)


def _workers(text: str | None) -> tuple[int, int] | None:
    """``--ray-workers N`` or ``MIN,MAX``."""
    if text is None:
        return None
    try:
        values = [int(v) for v in str(text).split(",")]
    except ValueError:
        values = []
    if len(values) not in (1, 2):
        raise CamcliError(f"--ray-workers '{text}' is not N or MIN,MAX (e.g. 1,4).")
    return values[0], values[-1]


def _debug_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--debug is read by main() from the raw arguments; declared here so it is valid anywhere."""
    return click.option("--debug", is_flag=True, expose_value=False, help="Show tracebacks of internal errors.")(fn)


def _guarded(run: Callable[[], int]) -> None:
    """Run a command: usage errors exit 2 in one sentence, a Ctrl-C before the run exits 130."""
    try:
        code = run()
    except CamcliError as exc:
        raise CliError(str(exc)) from exc
    except KeyboardInterrupt:  # a second Ctrl-C, or one before the run started
        click.echo("Interrupted.", err=True)
        code = EXIT_INTERRUPTED
    except BrokenPipeError:  # whoever read stdout stopped reading (`| head`): stop quietly
        with suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = EXIT_INTERRUPTED
    sys.exit(code)


def _say(quiet: bool = False) -> Callable[[str], None]:
    return (lambda text: None) if quiet else partial(click.echo, err=True)


def _report(out: Path, compare: Path | None = None) -> None:
    from .html import build_report

    try:
        index = build_report(out, compare=compare)
    except ValueError as exc:
        raise CamcliError(str(exc)) from exc
    click.echo(f"Report: {index}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="camcli")
@_debug_option
def cli() -> None:
    """Explain image classifiers with Grad-CAM and its family, for whole folders of images."""


@cli.command()
@_debug_option
@_config_option
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@_model_options
@_run_options
@click.option(
    "--json",
    "json_lines",
    is_flag=True,
    help="Print each image's explanation.json as one line on stdout (and nothing else there).",
)
def explain(**options: Any) -> None:
    """Write explanations for every image in INPUTS (files or folders; '-' reads paths from stdin)."""

    def run() -> int:
        from .discover import discover

        html_report = options.pop("html_report")
        job = _explain_job(options, options.pop("inputs"), json_lines=options.pop("json_lines"))
        from .runners.shards import select

        items = select(discover(job.inputs, job.include, job.exclude, out=job.out), job.shard)
        if not items and job.shard is not None:
            raise CamcliError(f"Shard {job.shard[0]}/{job.shard[1]} has no images: there are fewer images than shards.")
        # heavy (torch, ray): imported only once the job is known to be valid
        runner = importlib.import_module(f"camcli.runners.{job.engine}")
        from .writer import json_text

        emit = (lambda doc: click.echo(json_text(doc))) if job.json_lines else None
        with _stop_on_signals() as stop:
            code: int = runner.run(job, items, emit, stop, _say())
        if html_report:
            _report(job.out)
        return code

    _guarded(run)


@cli.command()
@_debug_option
@_config_option
@click.argument("inputs", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--annotations",
    type=click.Path(exists=True, path_type=Path),
    help="Ground truth: a CSV (path,class,x0,y0,x1,y1), a COCO JSON file, or a folder of Pascal VOC XML files.",
)
@click.option(
    "--masks",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Ground-truth masks: DIR/<class>/<image path under its input folder>.png, nonzero = object.",
)
@click.option(
    "--class-map",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV source,target: annotation classes (COCO names or ids) to the model's classes.",
)
@click.option(
    "--from",
    "source",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Evaluate an existing 'camcli explain' output folder instead of explaining INPUTS.",
)
@_model_options
@_run_options
@click.option(
    "--loc-threshold",
    type=FiniteFloat(0.0, 1.0, min_open=True, max_open=True),
    default=0.15,
    show_default=True,
    help="Binarize maps at this share of their max for localization (the paper: 0.15).",
)
@click.option(
    "--tolerance", type=FiniteFloat(0.0), default=15.0, show_default=True, help="Pointing game tolerance in pixels."
)
@click.option("--faithfulness", is_flag=True, help="Also deletion/insertion AUC, average drop, increase in confidence.")
@click.option("--steps", type=WholeNumber(min=2), default=50, show_default=True, help="Deletion/insertion steps.")
@click.option("--sanity", is_flag=True, help="Also the model-randomization sanity check (Adebayo et al. 2018).")
@click.option(
    "--max-loc-error", multiple=True, metavar="[METHOD:]VALUE", help="Gate: top-1 localization error ≤ VALUE."
)
@click.option("--min-pointing-game", multiple=True, metavar="[METHOD:]VALUE", help="Gate: pointing game ≥ VALUE.")
@click.option("--min-energy", multiple=True, metavar="[METHOD:]VALUE", help="Gate: energy pointing game ≥ VALUE.")
@click.option("--min-insertion-auc", multiple=True, metavar="[METHOD:]VALUE", help="Gate: insertion AUC ≥ VALUE.")
@click.option("--max-deletion-auc", multiple=True, metavar="[METHOD:]VALUE", help="Gate: deletion AUC ≤ VALUE.")
@click.option("--json", "json_out", is_flag=True, help="Print metrics.json on stdout.")
def evaluate(**options: Any) -> None:
    """Evaluate explanations against ground truth (localization, pointing game, faithfulness) and gate on them.

    Explains INPUTS into --out (resuming like explain; the top-5 classes and each image's ground-truth
    classes are always explained), or reads an earlier run with --from, then writes OUT/metrics.json and
    OUT/per_image.jsonl. Exit 4 when a gate fails.
    """

    def run() -> int:
        from .evaluate.gates import parse_gate, read_gates_table
        from .evaluate.run import EvaluateJob
        from .evaluate.run import run as run_evaluate

        ctx = click.get_current_context()
        gates = read_gates_table(ctx.meta.get("camcli.gates") or {}, f"[gates] of {ctx.meta.get('camcli.config')}")
        for name in GATE_OPTIONS:
            gates += [parse_gate(name, value) for value in options.pop(name.replace("-", "_"))]
        source, inputs = options.pop("source"), options.pop("inputs")
        if source is None and not inputs:
            raise CamcliError("Pass the images to evaluate (INPUTS), or an earlier explain output with --from DIR.")
        top_k = options.get("top_k")
        options["top_k"] = max(5, top_k or 0)
        html_report, json_out = options.pop("html_report"), options.pop("json_out")
        evaluation = {
            k: options.pop(k)
            for k in (
                "annotations",
                "masks",
                "class_map",
                "loc_threshold",
                "tolerance",
                "faithfulness",
                "steps",
                "sanity",
            )
        }
        if source is not None and options["out_dir"] == Path("camcli-out"):
            options["out_dir"] = source
        explain = _explain_job(options, tuple(inputs) or (source,))
        job = EvaluateJob(explain=explain, source=source, gates=tuple(gates), **evaluation)
        emit = (lambda text: click.echo(text)) if json_out else None
        with _stop_on_signals() as stop:
            code = run_evaluate(job, _say(), emit, stop)
        if html_report:
            _report(explain.out)
        return code

    _guarded(run)


@cli.command()
@_debug_option
@click.argument("run_a", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("run_b", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--method", help="The method whose top-1 maps are compared.  [default: the first heat-map method]")
@click.option(
    "--threshold",
    type=FiniteFloat(0.0, 1.0, min_open=True, max_open=True),
    default=0.15,
    show_default=True,
    help="Masks and boxes at this share of each map's max.",
)
@click.option(
    "--min-similarity",
    type=FiniteFloat(-1.0, 1.0),
    default=None,
    help="Gate: every image's Spearman ρ between the runs' maps ≥ this (exit 4 otherwise).",
)
@click.option(
    "--out",
    "-o",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where compare.json goes.  [default: RUN_B/compare]",
)
@click.option("--json", "json_out", is_flag=True, help="Print compare.json on stdout.")
@click.option("--report", "html_report", is_flag=True, help="Also write RUN_B/report with the pairs side by side.")
def compare(
    run_a: Path,
    run_b: Path,
    method: str | None,
    threshold: float,
    min_similarity: float | None,
    out_dir: Path | None,
    json_out: bool,
    html_report: bool,
) -> None:
    """Compare two explain outputs over the same images (old and new model, two settings)."""

    def run() -> int:
        from .errors import EXIT_GATE_FAILED, EXIT_OK
        from .evaluate.compare import compare_runs, gate, summary_text
        from .writer import atomic_write, json_text

        result = compare_runs(run_a, run_b, threshold, method)
        out = out_dir or run_b / "compare"
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "compare.json", (json_text(result, indent=2) + "\n").encode("utf-8"))
        click.echo(summary_text(result), err=True)
        click.echo(f"Written: {out / 'compare.json'}", err=True)
        if json_out:
            click.echo(json_text(result))
        code = EXIT_OK
        if min_similarity is not None:
            passed, message = gate(result, min_similarity)
            click.echo(message, err=True)
            code = EXIT_OK if passed else EXIT_GATE_FAILED
        if html_report:
            _report(run_b, out / "compare.json")
        return code

    _guarded(run)


@cli.command()
@_debug_option
@click.argument("out_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), metavar="OUT")
@click.option(
    "--compare",
    "compare_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A compare.json from 'camcli compare', shown as before/after pairs.",
)
def report(out_dir: Path, compare_file: Path | None) -> None:
    """Write OUT/report/index.html: a self-contained page to audit a run (works offline, from file://)."""

    def run() -> int:
        _report(out_dir, compare_file)
        return 0

    _guarded(run)


@cli.command()
@_debug_option
@click.argument("out_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), metavar="OUT")
def merge(out_dir: Path) -> None:
    """Combine the records of 'explain --shard I/N' runs into OUT/summary.jsonl and OUT/run.json."""

    def run() -> int:
        from .runners.shards import merge as merge_shards

        merged = merge_shards(out_dir)
        counts, shards = merged["counts"], merged["shards"]
        click.echo(
            f"Merged {len(shards['merged'])} of {shards['count']} shards: {counts['total']} images, "
            f"{counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped; status {merged['status']}"
            + (f" (missing shards {shards['missing']})" if shards["missing"] else ""),
            err=True,
        )
        return 1 if counts["failed"] else 0

    _guarded(run)


@cli.command()
@click.argument("model_arg", required=False, metavar="[MODEL]")
@_model_options
@click.option("--all", "show_all", is_flag=True, help="List every module with a tensor output, not only candidates.")
def layers(model_arg: str | None, show_all: bool, **options: Any) -> None:
    """List candidate target layers of MODEL (or --model): output shape, layout, grid, gradient coverage.

    Shapes do not depend on weights, so the model is built with random weights unless --weights is given.
    """
    from .layers import default_layer, probe_layers

    if model_arg:
        options["model_name"] = model_arg
    try:
        spec = _model_spec(options)
        from .models import load_spec

        loaded = load_spec(spec if spec.weights else dataclasses.replace(spec, random_weights=True))
        found = probe_layers(loaded.model, loaded.data.input_size, loaded.data.channels)
    except CamcliError as exc:
        raise CliError(str(exc)) from exc
    try:
        default: str | None = default_layer(found).name
    except CamcliError as exc:
        default = None
        click.echo(f"note: {exc}", err=True)
    h, w = loaded.data.input_size
    click.echo(
        f"{loaded.ref}: outputs for a 1×{loaded.data.channels}×{h}×{w} input; candidates are grids of image "
        "positions, '*' marks the default, 'grad' the share of positions the top class's gradient reaches"
    )
    for info in found if show_all else [i for i in found if i.candidate]:
        mark = "*" if info.name == default else " "
        where = f"{info.layout.kind} {info.layout.grid[0]}×{info.layout.grid[1]}" if info.layout else "-"
        if info.layout is not None and info.layout.prefix:
            where += f" +{info.layout.prefix}"
        grad = f"{info.live:4.0%}" if info.live >= 0 else "   -"
        note = f"  ({info.reason})" if info.reason and show_all else ""
        click.echo(
            f"{mark} {info.name:<40} {info.kind:<22} {'×'.join(map(str, info.shape)):<16} {where:<16} {grad}{note}"
        )


@cli.command()
@click.argument("pattern", default="*")
@click.option("--source", type=click.Choice(["timm", "tv"]), default="timm", show_default=True)
def models(pattern: str, source: str) -> None:
    """List model names matching a glob PATTERN (e.g. 'resnet*')."""
    from .models import list_model_names

    names = list_model_names(source, pattern)
    prefix = "tv:" if source == "tv" else ""
    for name in names:
        click.echo(prefix + name)
    if not names:
        raise CliError(f"No {source} model matches '{pattern}'. Try a wider pattern such as '*{pattern.strip('*')}*'.")


def main() -> None:
    """The console script: unexpected errors print one line (exit 3), tracebacks only with --debug."""
    try:
        cli(prog_name="camcli")
    except Exception as exc:  # click already turned usage errors into exit codes; this is a bug
        if "--debug" in sys.argv[1:]:
            raise
        click.echo(
            f"camcli: internal error: {type(exc).__name__}: {exc}. Run again with --debug for the "
            "traceback, and please report it.",
            err=True,
        )
        sys.exit(EXIT_INTERNAL)
