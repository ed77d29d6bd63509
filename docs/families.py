"""Every timm family: the model the coverage test uses for it, and the default layer camcli picks.

    python docs/families.py --select   # pick the smallest model of each family (slow: builds them on 'meta')
    python docs/families.py            # explain each with random weights; write the table into README.md

The selection lives in docs/families.json with the timm version it was made with; tests/test_families.py
checks it covers every family timm lists, so a new timm family fails the test until this is rerun.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SELECTION = HERE / "families.json"
README = HERE.parent / "README.md"
START, END = "<!-- families:start -->", "<!-- families:end -->"
MAX_PARAMS = 50_000_000  # larger models are skipped in CI: building and running them costs too much
ALLOW_LARGE = {"beit"}  # all its models are larger, and it is a family users ask about
# Families whose models are not image classifiers with a plain forward, or are all too large.
NOT_CLASSIFIERS = {
    "deepseek_vit": "a vision encoder for a language model (412M parameters), not an image classifier",
    "gemma4_vit": "a vision encoder for a language model (167M parameters), not an image classifier",
    "qwen3_vit": "a vision encoder for a language model, not an image classifier",
    "naflexvit": "takes patch dictionaries (NaFlex), not images",
    "hieradet_sam2": "SAM2's image encoder: returns multi-scale features, not class scores",
}


def select() -> dict[str, Any]:
    """The smallest model (by parameters, counted on the 'meta' device) of every family, real
    configurations only (timm's ``test_*`` models are skipped)."""
    import timm
    import torch

    picked: dict[str, Any] = {}
    for family in timm.list_modules():
        if family in NOT_CLASSIFIERS:
            picked[family] = {"skip": NOT_CLASSIFIERS[family]}
            continue
        best: tuple[str, int] | None = None
        for name in timm.list_models(module=family):
            if name.startswith("test_"):
                continue
            try:
                with torch.device("meta"):
                    model = timm.create_model(name)
            except Exception:
                continue
            params = sum(p.numel() for p in model.parameters())
            if best is None or params < best[1]:
                best = (name, params)
        if best is None:
            picked[family] = {"skip": "no model of this family builds"}
        elif best[1] > MAX_PARAMS and family not in ALLOW_LARGE:
            picked[family] = {
                "skip": f"smallest model {best[0]} has {best[1] / 1e6:.0f}M parameters: too large for CI",
                "model": best[0],
            }
        else:
            picked[family] = {"model": best[0], "params": best[1]}
    return {"timm": timm.__version__, "families": picked}


def explain_family(name: str) -> dict[str, Any]:
    """Build ``name`` with random weights (zero-initialized heads made non-zero), explain two sample images
    with defaults, and describe the default layer and map."""
    import torch

    from camcli.api import Explainer

    explainer = Explainer(name, random_weights=True, methods=["gradcam", "counterfactual"])
    wake_zero_parameters(explainer.loaded.model)
    samples = HERE.parent / "sample_images"
    results = explainer.explain([samples / "chelsea.png", samples / "coffee.png"], top_k=1)
    layer = explainer.layers[0]
    assert layer.layout is not None
    # Evidence for the top class or against it: an untrained model may have only the latter.
    evidence = [max(float(torch.as_tensor(e.raw).abs().max()) for e in r.explanations) for r in results]
    return {
        "model": name,
        "layer": layer.name,
        "layout": layer.layout.kind,
        "grid": list(layer.layout.grid),
        "prefix": layer.layout.prefix,
        "input": list(explainer.loaded.data.input_size),
        "nonzero": all(e > 0 for e in evidence),
        "expected_grid": expected_grid(explainer.loaded.model, explainer.loaded.data.input_size),
    }


def wake_zero_parameters(model: Any) -> None:
    """timm and torchvision start some heads at zero, so an untrained model's class scores are all 0 and
    every gradient vanishes. Give those parameters small random values (tests and tables only)."""
    import torch

    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for param in model.parameters():
            if param.dim() >= 1 and not param.any():
                param.normal_(0, 0.02)


def expected_grid(model: Any, size: tuple[int, int]) -> list[int] | None:
    """The final stage's grid from timm's feature_info (its reduction), or None where the model has none."""
    info = getattr(model, "feature_info", None)
    if not info:
        return None
    last = info[-1] if isinstance(info, list) else None
    reduction = last.get("reduction") if isinstance(last, dict) else None
    if not reduction:
        return None
    return [-(-size[0] // int(reduction)), -(-size[1] // int(reduction))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--select", action="store_true", help="redo the selection (docs/families.json)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.select:
        SELECTION.write_text(json.dumps(select(), indent=1) + "\n")
    chosen = json.loads(SELECTION.read_text())
    rows = ["| family | model | default layer | layout | grid |", "|---|---|---|---|---|"]
    for family, entry in sorted(chosen["families"].items()):
        if "skip" in entry:
            rows.append(f"| {family} | {entry.get('model', '—')} | skipped: {entry['skip']} | | |")
            continue
        start = time.perf_counter()
        try:
            found = explain_family(entry["model"])
        except Exception as exc:  # report and go on: the table shows what fails
            rows.append(f"| {family} | {entry['model']} | error: {type(exc).__name__}: {str(exc)[:80]} | | |")
            continue
        grid = "×".join(map(str, found["grid"])) + (f" +{found['prefix']}" if found["prefix"] else "")
        rows.append(f"| {family} | {entry['model']} | `{found['layer']}` | {found['layout']} | {grid} |")
        print(f"{family:<28} {time.perf_counter() - start:5.1f} s  {found}", file=sys.stderr, flush=True)
    text = README.read_text()
    before, _, rest = text.partition(START)
    _, _, after = rest.partition(END)
    table = (
        f"{START}\n*timm {chosen['timm']}, random weights; generated by `python docs/families.py`.*\n\n"
        + "\n".join(rows)
        + f"\n{END}"
    )
    README.write_text(before + table + after)


if __name__ == "__main__":
    main()
