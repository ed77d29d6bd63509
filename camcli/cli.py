"""Command line: ``camcli explain``, ``camcli layers``, ``camcli models``. The only click importer."""

from __future__ import annotations

import os
import platform
import signal
import sys
import threading
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Iterator, Optional

import click

from . import __version__
from .errors import CamcliError
from .report import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE

MODEL_HELP = "timm model name (or timm:NAME), or a torchvision model as tv:NAME."


class CliError(click.ClickException):
    """A CamcliError as the user sees it: one sentence, exit code 2, no traceback."""

    exit_code = EXIT_USAGE


def _apply_config(ctx: click.Context, param: click.Parameter, path: Optional[Path]) -> Optional[Path]:
    """Eager: the config file's values become this command's defaults (the command line wins)."""
    if path is None:
        return None
    from .config import read_config

    try:
        values = read_config(path)
    except CamcliError as exc:
        raise CliError(str(exc)) from exc
    names = {}
    for p in ctx.command.params:
        if p.name == "config":
            continue
        names[p.name] = p.name
        for opt in getattr(p, "opts", []):
            if opt.startswith("--"):
                names[opt[2:].replace("-", "_")] = p.name
    unknown = [k for k in values if k not in names]
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], list(names), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise click.BadParameter(f"unknown key '{unknown[0]}' in {path}.{hint}", ctx=ctx, param=param)
    ctx.default_map = {**(ctx.default_map or {}), **{names[k]: v for k, v in values.items()}}
    ctx.meta["camcli.config"] = str(path)
    return path


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """SIGINT / SIGTERM ask the run to stop after the current batch; a second SIGINT stops at once."""
    stop = threading.Event()

    def ask_to_stop(signum: int, frame: object) -> None:
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        click.echo(f"\n{signal.Signals(signum).name}: finishing the current batch (Ctrl-C again to stop now).", err=True)

    if threading.current_thread() is not threading.main_thread():  # signals only reach the main thread
        yield stop
        return
    previous = {sig: signal.signal(sig, ask_to_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _model_options(fn):
    """Options shared by every command that loads a model."""
    for option in reversed([
        click.option("--model", "-m", "model_name", default="tf_efficientnet_lite0", show_default=True, help=MODEL_HELP),
        click.option("--weights", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="Local weights: a .pth/.pt state dict (or a checkpoint with 'state_dict'/'model'), or .safetensors."),
        click.option("--num-classes", type=click.IntRange(min=1), help="Classifier outputs, for custom heads."),
        click.option("--labels", "labels_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="Class names, one per line, in class-index order."),
        click.option("--random-weights", is_flag=True, help="Use untrained random weights (never chosen silently)."),
    ]):
        fn = option(fn)
    return fn


def _load(model_name, weights, num_classes, labels_file, random_weights):
    from .models import load_model

    return load_model(model_name, weights=weights, num_classes=num_classes, labels_file=labels_file,
                      random_weights=random_weights)


def _debug_option(fn):
    """--debug is read by main() from the raw arguments; declared here so it is valid anywhere."""
    return click.option("--debug", is_flag=True, expose_value=False, help="Show tracebacks of internal errors.")(fn)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="camcli")
@_debug_option
def cli() -> None:
    """Explain image classifiers with Grad-CAM, for whole folders of images."""


@cli.command()
@_debug_option
@click.option("--config", type=click.Path(exists=True, dir_okay=False, path_type=Path), is_eager=True,
              expose_value=False, callback=_apply_config,
              help="TOML file whose keys (long option names, e.g. top-k, model, inputs) set defaults.")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@_model_options
@click.option("--include", multiple=True, metavar="GLOB",
              help="Only files in folders whose relative path or name matches; repeatable (e.g. '*.jpg').")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Skip files in folders matching; repeatable.")
@click.option("--layer", help="Target layer name (default: the last layer with a spatial 4-D output). See 'camcli layers'.")
@click.option("--top-k", type=click.IntRange(min=0), default=None, help="Explain the K most likely classes.  [default: 3, or 0 with --class]")
@click.option("--class", "class_specs", multiple=True, help="Explain this class (index or label name); repeatable.")
@click.option("--method", "method_specs", multiple=True, metavar="LIST",
              help="gradcam (default), counterfactual, guided-backprop, guided-gradcam; comma-separated, repeatable.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Threads that decode images ahead of the model, and as many that write behind it.  [default: min(4, CPUs)]")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16"]), default="fp32", show_default=True,
              help="Forward-pass precision (maps are always computed in fp32). fp16 needs a GPU.")
@click.option("--save", "save_specs", multiple=True, metavar="LIST",
              help="What to write besides explanation.json: overlay,map,raw_map (comma-separated).  [default: all]")
@click.option("--overlay-format", type=click.Choice(["png", "jpg", "webp"]), default="png", show_default=True)
@click.option("--out", "-o", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("camcli-out"),
              show_default=True, help="Output folder.")
@click.option("--colormap", type=click.Choice(["jet", "hot", "gray"]), default="jet", show_default=True)
@click.option("--alpha", type=click.FloatRange(0.0, 1.0), default=0.5, show_default=True, help="Heatmap opacity in overlays.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary on stderr.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=100_000_000, show_default=True,
              help="Refuse images with more pixels than this (a decompression-bomb guard), from the header.")
@click.option("--resume/--overwrite", default=True, show_default=True,
              help="Skip images whose outputs are complete, from the same file content and settings; or redo all.")
@click.option("--json", "json_lines", is_flag=True,
              help="Print each image's explanation.json as one line on stdout (and nothing else there).")
def explain(inputs, model_name, weights, num_classes, labels_file, random_weights, include, exclude, layer, top_k, class_specs,
            method_specs, device, batch_size, workers, precision, save_specs, overlay_format, out_dir, colormap, alpha,
            quiet, max_pixels, resume, json_lines) -> None:
    """Write Grad-CAM explanations for every image in INPUTS (files or folders; '-' reads paths from stdin)."""
    try:
        code = _explain(**locals())
    except CamcliError as exc:
        raise CliError(str(exc)) from exc
    except KeyboardInterrupt:  # a second Ctrl-C, or one before the run started
        click.echo("Interrupted.", err=True)
        code = EXIT_INTERRUPTED
    sys.exit(code)


def _explain(inputs, model_name, weights, num_classes, labels_file, random_weights, include, exclude, layer, top_k, class_specs,
             method_specs, device, batch_size, workers, precision, save_specs, overlay_format, out_dir, colormap, alpha,
             quiet, max_pixels, resume, json_lines) -> int:
    import timm
    import torch
    import torchvision
    from tqdm import tqdm

    from .allocator import keep_freed_memory
    from .discover import discover, printable, read_path_list
    from .layers import resolve_layer
    from .methods import parse_methods
    from .pipeline import EngineOptions, default_workers, resolve_device, run as run_pipeline
    from .report import Report
    from .targets import Targets, resolve_class
    from .records import Skipped
    from .writer import RunContext, finished_doc, fingerprint, item_of, json_text, parse_save, write

    keep_freed_memory()  # a long run reuses its memory instead of faulting it in again each batch
    chosen_methods = parse_methods(method_specs)
    save = parse_save(save_specs)
    paths = [p for given in inputs for p in (read_path_list(sys.stdin.buffer) if str(given) == "-" else [given])]
    items = discover(paths, include, exclude)
    torch_device = resolve_device(device)
    if precision == "fp16" and torch_device.type == "cpu":
        raise CamcliError("--precision fp16 needs a GPU; on the CPU use --precision bf16 or fp32.")
    loaded = _load(model_name, weights, num_classes, labels_file, random_weights)
    classes = tuple(dict.fromkeys(resolve_class(c, loaded.labels) for c in class_specs))
    k = (0 if classes else 3) if top_k is None else top_k
    if not classes and k == 0:
        raise CamcliError("Nothing to explain: --top-k 0 and no --class. Pass --top-k K or --class C.")
    targets = Targets(classes, min(k, loaded.num_classes))
    target = resolve_layer(loaded.model, loaded.data.input_size, layer)
    loaded.model.to(torch_device)

    data = loaded.data
    model_info = {
        "name": str(loaded.ref), "weights": loaded.weights, "target_layer": target.name,
        "input_size": list(data.input_size), "num_classes": loaded.num_classes,
    }
    preprocess_info = {
        "resize": data.resize if isinstance(data.resize, int) else list(data.resize),
        "resize_rule": "shorter side" if isinstance(data.resize, int) else "exact (height, width)",
        "interpolation": data.interpolation, "center_crop": list(data.input_size),
        "mean": list(data.mean), "std": list(data.std),
    }
    weights_id = loaded.weights
    if weights is not None:  # a local file: identified by its content
        from .preprocess import sha256_of

        weights_id = f"sha256:{sha256_of(Path(weights))}"
    settings = {  # everything that shapes an image's outputs: --resume compares their fingerprint
        "camcli": __version__, "model": str(loaded.ref), "weights": weights_id, "labels": list(loaded.labels),
        "layer": target.name, "methods": list(chosen_methods), "classes": list(classes), "top_k": targets.top_k,
        "batch_size": batch_size, "device": torch_device.type, "precision": precision, "save": sorted(save),
        "overlay_format": overlay_format, "colormap": colormap, "alpha": alpha, "preprocess": preprocess_info,
        "max_pixels": max_pixels,
    }
    ctx = RunContext(model=model_info, preprocess=preprocess_info, colormap=colormap, alpha=alpha, save=save,
                     overlay_format=overlay_format, fingerprint=fingerprint(settings))
    shared = ("methods", "classes", "top_k", "batch_size", "precision", "overlay_format", "colormap", "alpha",
              "max_pixels")
    run_info = {
        "camcli": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "torchvision": torchvision.__version__, "timm": timm.__version__,
        "model": model_info, "device": str(torch_device), "fingerprint": ctx.fingerprint,
        "options": {
            "inputs": [printable(p) for p in paths], "include": list(include), "exclude": list(exclude),
            **{key: settings[key] for key in shared},
            "workers": workers or default_workers(), "save": sorted(save | {"json"}), "out": str(out_dir),
            "resume": resume, "config": click.get_current_context().meta.get("camcli.config"),
        },
    }
    options = EngineOptions(layer=target.name, targets=targets, device=torch_device, batch_size=batch_size,
                            methods=chosen_methods, precision=precision, workers=workers or default_workers(),
                            max_pixels=max_pixels)
    try:
        report = Report(out_dir, run_info)
    except OSError as exc:
        raise CamcliError(f"Cannot write to output folder '{out_dir}': {exc.strerror or exc}. Pass a writable --out DIR.") from exc
    done = partial(finished_doc, out_dir, ctx=ctx) if resume else None
    try:
        with tqdm(total=len(items), unit="img", file=sys.stderr, disable=quiet, desc="explain") as bar, \
                _stop_on_signals() as stop:
            for outcome, doc in run_pipeline(loaded, items, options, partial(write, out_dir, ctx=ctx), done, stop):
                item = item_of(outcome)
                line = report.add(printable(item.path), printable(item.rel), doc, skipped=isinstance(outcome, Skipped))
                if json_lines:
                    click.echo(json_text({"json": printable(out_dir / line["json"]), **doc}))
                bar.update(1)
            if stop.is_set():
                report.close(status="interrupted")
                click.echo("Interrupted: stopped after the current batch. Run the same command again to resume.",
                           err=True)
                return EXIT_INTERRUPTED
    except BrokenPipeError:  # whoever read --json stopped reading (`| head`): stop quietly
        with suppress(OSError):
            report.close(status="interrupted")
        with suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_INTERRUPTED
    except BaseException as exc:
        with suppress(OSError):  # record how far the run got, if the output folder still takes it
            report.close(status="interrupted" if isinstance(exc, KeyboardInterrupt) else "failed")
        if isinstance(exc, OSError):
            raise CamcliError(f"Cannot write outputs under '{out_dir}': {exc.strerror or exc}. "
                              "Free some space or pass a writable --out DIR.") from exc
        raise
    summary = report.close()
    if not quiet:
        counts = summary["counts"]
        skipped = f", {counts['skipped']} skipped (already done)" if counts["skipped"] else ""
        click.echo(f"{counts['total']} image{'' if counts['total'] == 1 else 's'}: {counts['ok']} ok, "
                   f"{counts['failed']} failed{skipped}. Outputs in {out_dir}/", err=True)
        for failure in summary["failures"]:
            click.echo(f"  failed: {failure['path']}: {failure['error']}", err=True)
    return report.exit_code


@cli.command()
@click.argument("model_name", default="tf_efficientnet_lite0", metavar="[MODEL]")
@click.option("--num-classes", type=click.IntRange(min=1), help="Classifier outputs, for custom heads.")
@click.option("--all", "show_all", is_flag=True, help="List every module with a tensor output, not only spatial 4-D ones.")
def layers(model_name: str, num_classes: Optional[int], show_all: bool) -> None:
    """List candidate target layers of MODEL with their output shapes for a 1×3×H×W input.

    Shapes do not depend on weights, so the model is built with random weights.
    """
    from .layers import probe_layers

    try:
        loaded = _load(model_name, None, num_classes, None, True)
        found = probe_layers(loaded.model, loaded.data.input_size)
    except CamcliError as exc:
        raise CliError(str(exc)) from exc
    spatial = [info for info in found if info.spatial]
    default = spatial[-1].name if spatial else None
    h, w = loaded.data.input_size
    click.echo(f"{loaded.ref}: output shapes for a 1×3×{h}×{w} input (default target marked *)")
    for info in found if show_all else spatial:
        mark = "*" if info.name == default else " "
        click.echo(f"{mark} {info.name:<40} {info.kind:<24} {'×'.join(map(str, info.shape))}")


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
        click.echo(f"camcli: internal error: {type(exc).__name__}: {exc}. Run again with --debug for the "
                   "traceback, and please report it.", err=True)
        sys.exit(EXIT_INTERNAL)
