"""The command line: parse, call a command function (``camcli.commands``), print, map errors to exit codes.

The only click importer. Allowed values come from ``camcli.choices`` and the registries; options that
belong to a method or a runner are generated from their declarations (``camcli.params``). Module-level
imports stay light (no torch, timm or torchvision), so --help, --version and usage errors answer at once.
"""

from __future__ import annotations

import difflib
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

from . import __version__, methods, runners
from .choices import (
    COLORMAPS,
    CROP_MODES,
    HEADS,
    INTERPOLATIONS,
    LAYERS_AS,
    OVERLAY_FORMATS,
    PRECISIONS,
    SCORES,
    SOURCES,
    TASKS,
)
from .errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, CamcliError
from .params import Param

if TYPE_CHECKING:
    from .job import ExplainJob, ModelSpec

MODEL_HELP = (
    "A timm name (resnet50), tv:NAME (torchvision), a model folder or local-dir:PATH, hf-hub:ORG/NAME "
    "(local cache only), or FILE.py:FACTORY / package.module:FACTORY (runs that code)."
)
Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


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


class Declared(click.ParamType[Any, Any]):
    """A declared parameter (``camcli.params.Param``) as a click type: its own check, its own words."""

    def __init__(self, param: Param, owner: str) -> None:
        self.param, self.owner = param, owner
        self.name = param.metavar or param.kind.__name__

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return self.param.check(value, self.owner)
        except CamcliError as exc:
            self.fail(str(exc), param, ctx)


def declared_option(owner: str, param: Param, summary: str) -> Decorator:
    """``--OWNER-NAME``: a method's or runner's parameter as an option (None when not given)."""
    help_text = f"{summary}: {param.help}."
    if param.choices:
        help_text += f" One of {', '.join(param.choices)}."
    if param.default not in ((), ""):
        help_text += f"  [default: {param.describe_default()}]"
    return click.option(param.option(owner), param.keyword(owner), type=Declared(param, owner), help=help_text)


def method_options() -> list[Decorator]:
    return [
        declared_option(info.name, param, info.name) for info in methods.registry().values() for param in info.params
    ]


def runner_options() -> list[Decorator]:
    return [
        declared_option(info.name, param, f"--runner {info.name}")
        for info in runners.REGISTRY.values()
        for param in info.params
    ]


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
    """SIGINT / SIGTERM ask the run to stop soon (between batches, or chunks of long per-image work);
    a second SIGINT stops at once."""
    stop = threading.Event()

    def ask_to_stop(signum: int, frame: object) -> None:
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        click.echo(
            f"\n{signal.Signals(signum).name}: stopping after the current step (Ctrl-C again to stop now).", err=True
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


def _options(specs: list[Decorator]) -> Decorator:
    def apply(fn: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(specs):
            fn = option(fn)
        return fn

    return apply


def _model_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    return _options(
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
            click.option(
                "--random-weights", is_flag=True, help="Use untrained random weights (never chosen silently)."
            ),
            click.option(
                "--head",
                type=click.Choice(HEADS),
                default="softmax",
                show_default=True,
                help="softmax: one class per image; sigmoid: multi-label; binary: one logit (negative/positive).",
            ),
            click.option(
                "--task",
                type=click.Choice(TASKS),
                help="What the model does: classify (B×classes logits) or segment (B×classes×H×W).  "
                "[default: found from the model's output]",
            ),
            click.option("--input-size", metavar="N|HxW", help="Model input size, overriding the model's config."),
            click.option("--mean", metavar="A,B,C", help="Normalization mean (one value for grayscale models)."),
            click.option("--std", metavar="A,B,C", help="Normalization std."),
            click.option(
                "--interpolation", type=click.Choice(INTERPOLATIONS), default=None, help="Resize interpolation."
            ),
            click.option(
                "--crop-pct",
                type=FiniteFloat(0.0, 1.5, min_open=True),
                default=None,
                help="Resize to input-size / crop-pct before cropping (timm's crop_pct).",
            ),
            click.option(
                "--crop-mode",
                type=click.Choice(CROP_MODES),
                default=None,
                help="center: crop the middle; squash: stretch; border: fit and pad with the mean colour.",
            ),
        ]
    )(fn)


def _run_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    return _options(
        [
            click.option(
                "--include",
                multiple=True,
                metavar="GLOB",
                help="Only files in folders whose relative path or name matches; repeatable (e.g. '*.jpg').",
            ),
            click.option(
                "--exclude", multiple=True, metavar="GLOB", help="Skip files in folders matching; repeatable."
            ),
            click.option(
                "--layer",
                "layer_names",
                multiple=True,
                help="Target layer (default: the last layer the class scores reach at most positions); repeatable: "
                "per-layer maps are scaled and averaged. See 'camcli layers'.",
            ),
            click.option(
                "--layers-as",
                type=click.Choice(LAYERS_AS),
                default="average",
                show_default=True,
                help="With several --layer: average their scaled maps, or write one map per layer (from one pass).",
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
                "--classes-from",
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                help="CSV path,class: explain each image's own classes (e.g. its label), paths relative to the CSV.",
            ),
            click.option(
                "--method",
                "method_specs",
                multiple=True,
                metavar="LIST",
                help=f"Comma-separated, repeatable: {', '.join(methods.names())}.  [default: {methods.DEFAULT}]",
            ),
            click.option(
                "--smooth",
                "smooth_specs",
                multiple=True,
                metavar="LIST",
                help="CAM methods: aug averages over flipped and scaled copies; eigen takes the first principal "
                "component instead of the channel sum; aug,eigen does both.",
            ),
            click.option(
                "--score",
                type=click.Choice(SCORES),
                default="logit",
                show_default=True,
                help="What the maps explain: the class's pre-softmax logit (the paper), its probability, or "
                "ReST (logit minus cross-entropy).",
            ),
            *method_options(),
            click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps."),
            click.option("--batch-size", type=WholeNumber(min=1), default=8, show_default=True),
            click.option(
                "--perturbation-batch",
                type=WholeNumber(min=1),
                default=None,
                help="Perturbed forwards run together (Score-CAM, Ablation-CAM, occlusion); changes no number.  "
                "[default: as many as 1 GiB of activations holds, at most 256]",
            ),
            click.option(
                "--workers",
                type=WholeNumber(min=1),
                default=None,
                help="Threads that decode images ahead of the model, and as many that write behind it.  "
                "[default: min(4, CPUs)]",
            ),
            click.option(
                "--precision",
                type=click.Choice(PRECISIONS),
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
            click.option("--overlay-format", type=click.Choice(OVERLAY_FORMATS), default="png", show_default=True),
            click.option(
                "--out",
                "-o",
                "out_dir",
                type=click.Path(file_okay=False, path_type=Path),
                default=Path("camcli-out"),
                show_default=True,
                help="Output folder.",
            ),
            click.option("--colormap", type=click.Choice(COLORMAPS), default="jet", show_default=True),
            click.option(
                "--alpha",
                type=FiniteFloat(0.0, 1.0),
                default=0.5,
                show_default=True,
                help="Heatmap opacity in overlays.",
            ),
            click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary on stderr."),
            click.option(
                "--max-pixels",
                type=WholeNumber(min=1),
                default=100_000_000,
                show_default=True,
                help="Refuse images (and masks) with more pixels than this (a decompression-bomb guard), from the "
                "header.",
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
                help="Explain only the I-th of N parts of the sorted inputs (job arrays).  "
                "[default: from SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT]",
            ),
            click.option(
                "--runner",
                "--engine",
                "runner",
                type=click.Choice(runners.NAMES),
                default=runners.DEFAULT,
                show_default=True,
                help="; ".join(f"{r.name}: {r.summary}" for r in runners.REGISTRY.values())
                + " (pip install -e '.[ray]'). --engine is the older name.",
            ),
            *runner_options(),
        ]
    )(fn)


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
        options.pop("task"),
    )


def _explain_job(options: dict[str, Any], inputs: tuple[Path, ...]) -> ExplainJob:
    """The run options (popped from ``options``) as an ExplainJob; '-' among ``inputs`` reads stdin."""
    from .discover import read_path_list
    from .job import ExplainJob, parse_save
    from .runners.shards import parse_shard

    spec = _model_spec(options)
    paths = tuple(p for given in inputs for p in (read_path_list(sys.stdin.buffer) if str(given) == "-" else [given]))
    runner = options.pop("runner")
    return ExplainJob(
        inputs=paths,
        out=options.pop("out_dir"),
        model=spec,
        include=options.pop("include"),
        exclude=options.pop("exclude"),
        layers=options.pop("layer_names"),
        layers_as=options.pop("layers_as"),
        top_k=options.pop("top_k"),
        threshold=options.pop("threshold"),
        classes=options.pop("class_specs"),
        classes_from=options.pop("classes_from"),
        methods=methods.parse_methods(options.pop("method_specs")),
        smooth=methods.parse_smoothing(options.pop("smooth_specs")),
        score=options.pop("score"),
        method_params=methods.split_options(options),
        device=options.pop("device"),
        batch_size=options.pop("batch_size"),
        perturbation_batch=options.pop("perturbation_batch"),
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
        runner=runner,
        runner_params=runners.check_options(runner, runners.split_options(options)),
        json_lines=bool(options.pop("json_lines", False)),
    )


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


def _print_run(result: Any, quiet: bool) -> None:
    """The closing lines of an explain run (a ``runners.base.RunResult``) on stderr."""
    say = _say(quiet)
    if result.status == "interrupted":
        say("Interrupted: stopped after the current batch. Run the same command again to resume.")
        return
    counts, shard = result.counts, result.record.get("shard")
    skip_note = f", {counts['skipped']} skipped (already done)" if counts["skipped"] else ""
    part = f" (shard {shard[0]}/{shard[1]}; 'camcli merge {result.out}' combines the shards)" if shard else ""
    say(
        f"{counts['total']} image{'' if counts['total'] == 1 else 's'}: {counts['ok']} ok, "
        f"{counts['failed']} failed{skip_note}. Outputs in {result.out}/{part}"
    )
    for failure in result.failures:
        say(f"  failed: {failure['path']}: {failure['error']}")


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
        from .commands.explain import explain as explain_command
        from .outputs import json_text

        html_report = options.pop("html_report")
        job = _explain_job(options, options.pop("inputs"))
        emit = (lambda doc: click.echo(json_text(doc))) if job.json_lines else None
        with _stop_on_signals() as stop:
            result = explain_command(job, report=html_report, emit=emit, stop=stop)
        _print_run(result.run, job.quiet)
        for note in result.notes:
            click.echo(note, err=True)
        if result.report is not None:
            click.echo(f"Report: {result.report}", err=True)
        return result.code

    _guarded(run)


def _gate_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    from .evaluate.gates import GATES

    return _options(
        [
            click.option(
                f"--{gate.name}",
                multiple=True,
                metavar="[METHOD:]VALUE",
                help=f"Gate: {gate.label} {'≤' if gate.bound == 'max' else '≥'} VALUE.",
            )
            for gate in GATES.values()
        ]
    )(fn)


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
    "--road",
    is_flag=True,
    help="Also ROAD (Rong et al. 2022): the probability change when the most / least relevant pixels are replaced "
    "by noisy linear imputation, and their combination. Two forwards and two imputations per percentile and map.",
)
@click.option(
    "--road-percentiles",
    multiple=True,
    metavar="LIST",
    help="ROAD's percentiles, comma-separated, repeatable.  [default: 10,20,30,40,50,60,70,80,90]",
)
@click.option(
    "--occlusion-correlation",
    is_flag=True,
    help="Also the Grad-CAM paper's faithfulness (§5.3): Spearman's ρ between each map and the occlusion map "
    "of the same image and class.",
)
@click.option(
    "--correlation-window",
    type=WholeNumber(min=1),
    default=32,
    show_default=True,
    help="Occlusion window side in input pixels, for --occlusion-correlation (as the occlusion method).",
)
@click.option(
    "--correlation-stride",
    type=WholeNumber(min=1),
    default=16,
    show_default=True,
    help="Step between occlusion windows, for --occlusion-correlation.",
)
@click.option(
    "--cam-mult-image",
    is_flag=True,
    help="Also pytorch-grad-cam's CamMultImageConfidenceChange: the change of the class's probability when the "
    "normalized input is multiplied by the map, with its drop in and increase in confidence. One forward per map.",
)
@click.option(
    "--arcc",
    is_flag=True,
    help="Also pytorch-grad-cam's ARCC: the harmonic mean of coherency (the map against the method's map of the "
    "input multiplied by it), 1 - complexity (the map's mean) and ROAD combined (--road-percentiles). One "
    "explanation and ROAD's work per map.",
)
@_gate_options
@click.option("--json", "json_out", is_flag=True, help="Print metrics.json on stdout.")
def evaluate(**options: Any) -> None:
    """Evaluate explanations against ground truth (localization, pointing game, faithfulness) and gate on them.

    Explains INPUTS into --out (resuming like explain; the top-5 classes and each image's ground-truth
    classes are always explained), or reads an earlier run with --from, then writes OUT/metrics.json and
    OUT/per_image.jsonl. Exit 4 when a gate fails.
    """

    def run() -> int:
        from .commands.evaluate import evaluate as evaluate_command
        from .evaluate.gates import GATES, parse_gate, read_gates_table
        from .evaluate.job import EVALUATION_OPTIONS, EvaluateJob, parse_percentiles

        ctx = click.get_current_context()
        gates = read_gates_table(ctx.meta.get("camcli.gates") or {}, f"[gates] of {ctx.meta.get('camcli.config')}")
        for name in GATES:
            gates += [parse_gate(name, value) for value in options.pop(name.replace("-", "_"))]
        source, inputs = options.pop("source"), options.pop("inputs")
        if source is None and not inputs:
            raise CamcliError("Pass the images to evaluate (INPUTS), or an earlier explain output with --from DIR.")
        options["top_k"] = max(5, options.get("top_k") or 0)
        html_report, json_out = options.pop("html_report"), options.pop("json_out")
        evaluation = {k: options.pop(k) for k in EVALUATION_OPTIONS}
        evaluation["road_percentiles"] = parse_percentiles(evaluation["road_percentiles"])
        if source is not None and options["out_dir"] == Path("camcli-out"):
            options["out_dir"] = source
        explain_job = _explain_job(options, tuple(inputs) or (source,))
        job = EvaluateJob(explain=explain_job, source=source, gates=tuple(gates), **evaluation)
        with _stop_on_signals() as stop:
            result = evaluate_command(job, report=html_report, stop=stop, say=_say(explain_job.quiet))
        if result.run is not None:
            _print_run(result.run, explain_job.quiet)
        for line in result.messages:
            click.echo(line, err=True)
        if json_out and result.metrics is not None:
            from .outputs import json_text

            click.echo(json_text(result.metrics))
        if result.report is not None:
            click.echo(f"Report: {result.report}", err=True)
        return result.code

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
        from .commands.compare import CompareRequest
        from .commands.compare import compare as compare_command
        from .evaluate.compare import summary_text
        from .outputs import json_text

        request = CompareRequest(run_a, run_b, method, threshold, min_similarity, out_dir, html_report)
        result = compare_command(request)
        click.echo(summary_text(result.doc), err=True)
        click.echo(f"Written: {result.written}", err=True)
        if json_out:
            click.echo(json_text(result.doc))
        if result.gate is not None:
            click.echo(result.gate, err=True)
        if result.report is not None:
            click.echo(f"Report: {result.report}", err=True)
        return result.code

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
        from .commands.report import ReportRequest
        from .commands.report import report as report_command

        click.echo(f"Report: {report_command(ReportRequest(out_dir, compare_file))}", err=True)
        return 0

    _guarded(run)


@cli.command()
@_debug_option
@click.argument("out_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), metavar="OUT")
def merge(out_dir: Path) -> None:
    """Combine the records of --shard I/N runs (explain or evaluate) into OUT/summary.jsonl, OUT/run.json and,
    for evaluate, OUT/metrics.json and OUT/per_image.jsonl."""

    def run() -> int:
        from .commands.merge import merge as merge_command

        result = merge_command(out_dir)
        for line in result.messages:
            click.echo(line, err=True)
        return result.code

    _guarded(run)


@cli.command()
@click.argument("model_arg", required=False, metavar="[MODEL]")
@_model_options
@click.option("--all", "show_all", is_flag=True, help="List every module with a tensor output, not only candidates.")
def layers(model_arg: str | None, show_all: bool, **options: Any) -> None:
    """List candidate target layers of MODEL (or --model): output shape, layout, grid, gradient coverage.

    Shapes do not depend on weights, so the model is built with random weights unless --weights is given.
    """

    def run() -> int:
        from .commands.layers import LayersRequest
        from .commands.layers import layers as layers_command

        if model_arg:
            options["model_name"] = model_arg
        result = layers_command(LayersRequest(_model_spec(options), show_all))
        if result.note:
            click.echo(f"note: {result.note}", err=True)
        h, w = result.input_size
        click.echo(
            f"{result.model}: outputs for a 1×{result.channels}×{h}×{w} input; candidates are grids of image "
            "positions, '*' marks the default, 'grad' the share of positions the top class's gradient reaches"
        )
        for info in result.layers:
            mark = "*" if info.name == result.default else " "
            where = f"{info.layout.kind} {info.layout.grid[0]}×{info.layout.grid[1]}" if info.layout else "-"
            if info.layout is not None and info.layout.prefix:
                where += f" +{info.layout.prefix}"
            grad = f"{info.live:4.0%}" if info.live >= 0 else "   -"
            note = f"  ({info.reason})" if info.reason and show_all else ""
            click.echo(
                f"{mark} {info.name:<40} {info.kind:<22} {'×'.join(map(str, info.shape)):<16} {where:<16} {grad}{note}"
            )
        return 0

    _guarded(run)


@cli.command()
@click.argument("pattern", default="*")
@click.option("--source", type=click.Choice(SOURCES), default="timm", show_default=True)
def models(pattern: str, source: str) -> None:
    """List model names matching a glob PATTERN (e.g. 'resnet*')."""

    def run() -> int:
        from .commands.models import models as models_command

        for name in models_command(pattern, source):
            click.echo(name)
        return 0

    _guarded(run)


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
