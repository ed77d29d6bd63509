"""The Python API: the same engine and records as the CLI, the caller's model left as it was, README's example runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from conftest import hook_counts
from PIL import Image

from camcli.api import Explainer
from camcli.errors import CamcliError

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_example_runs(monkeypatch, capsys):
    monkeypatch.chdir(README.parent)
    block = re.search(r"<!-- api-example -->\n```python\n(.*?)```", README.read_text(), re.S)
    assert block, "README lost its API example"
    exec(compile(block.group(1), "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "tiger cat" in printed
    assert "(7, 7) (224, 224) (300, 451) (93, 18, 358, 282)" in printed
    assert "malignant (7, 7)" in printed


def test_api_equals_the_cli(samples, tmp_path, run_cli):
    methods = ["gradcam", "occlusion", "saliency"]
    result = run_cli(
        "explain",
        samples / "coffee.png",
        "-o",
        tmp_path,
        "-q",
        "--top-k",
        "2",
        "--method",
        ",".join(methods),
        "--save",
        "raw_map",
    )
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "coffee.png" / "explanation.json").read_text())
    [ours] = Explainer(methods=methods).explain([samples / "coffee.png"], top_k=2)
    assert [(e.method, e.class_index) for e in ours.explanations] == [
        (e["method"], e["class_index"]) for e in doc["explanations"]
    ]
    for exp, entry in zip(ours.explanations, doc["explanations"], strict=True):
        saved = np.load(tmp_path / "coffee.png" / entry["files"]["raw_map"])
        np.testing.assert_allclose(exp.raw, saved, rtol=1e-5, atol=1e-6 * float(np.abs(saved).max()))
        assert list(exp.bbox or []) == (entry["bbox"] or [])
        assert exp.params == entry["params"]
    record = {k: v for k, v in ours.record.items() if k not in ("source", "fingerprint", "model")}
    assert record["predictions"] == doc["predictions"]


def test_images_as_paths_pil_arrays_and_tensors(samples):
    explainer = Explainer(methods=["gradcam"])
    path = samples / "chelsea.png"
    pil = Image.open(path)
    from_path, from_pil, from_array = explainer.explain([path, pil, np.asarray(pil.convert("RGB"))], top_k=1)
    assert (
        from_path.get("gradcam", 282).bbox == from_pil.get("gradcam", 282).bbox == from_array.get("gradcam", 282).bbox
    )
    tensors = torch.randn(2, 3, 224, 224)
    batch = explainer.explain(tensors, classes=["tiger cat", 967])
    assert [[e.class_index for e in r.explanations] for r in batch] == [[282, 967], [282, 967]]
    assert batch[0].explanations[0].full_map().shape == (224, 224)
    with pytest.raises(CamcliError, match="preprocessed"):
        explainer.explain(torch.randn(3, 100, 100))


def test_own_module_is_left_exactly_as_it_was():
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=3)
    model.train()
    before = (
        [m.training for m in model.modules()],
        hook_counts(model),
        [(p.data_ptr(), p.stride(), p.device) for p in model.parameters()],
        {k: v.clone() for k, v in model.state_dict().items()},
    )
    explainer = Explainer(model, methods=["gradcam", "ablationcam", "guided-gradcam"], labels=["a", "b", "c"])
    out = explainer.explain(torch.randn(2, 3, 224, 224), top_k=2)
    assert len(out) == 2
    assert {e.label for e in out[0].explanations} <= {"a", "b", "c"}
    with pytest.raises(CamcliError, match="labels"):
        Explainer(model, labels=["only one"])
    after = (
        [m.training for m in model.modules()],
        hook_counts(model),
        [(p.data_ptr(), p.stride(), p.device) for p in model.parameters()],
        model.state_dict(),
    )
    assert before[:3] == after[:3]
    assert all(torch.equal(before[3][k], after[3][k]) for k in before[3])
    assert all(p.grad is None for p in model.parameters())
