"""Deep Feature Factorization: camcli's NMF against scikit-learn's, concept maps and concept names against
pytorch-grad-cam's ``DeepFeatureFactorization`` (a timm resnet18 with seeded random weights, the bundled
tf_efficientnet_lite0), the command line's files and JSON, resume, evaluate's refusal, and a head that
does not read the layer."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from conftest import corr, explain_tensors
from pytorch_grad_cam import DeepFeatureFactorization
from sklearn.decomposition import NMF

from camcli import full_map
from camcli.errors import CamcliError
from camcli.methods.dff import factorize, nmf
from camcli.models import DataConfig, load_model
from camcli.preprocess import decode, to_input


def sklearn_nmf(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, int]:
    model = NMF(n_components=k, init="random", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Maximum number of iterations 200 reached"
        w = model.fit_transform(x)
    return w, model.components_, model.n_iter_


def test_nmf_is_sklearns_coordinate_descent():
    """The same start, steps and stopping iteration: W and H agree to rounding, each matrix of a stack as
    when factorized alone; one that converges early (low rank) and one that runs the 200 iterations."""
    rng = np.random.RandomState(1)
    low_rank = [np.abs(rng.rand(64, 3)) @ np.abs(rng.rand(3, 20)) + 0.01 * rng.rand(64, 20) for _ in range(3)]
    for stack, k in ((np.stack(low_rank), 2), (np.abs(rng.randn(2, 96, 49)) ** 2, 6)):
        w, h, iterations = nmf(torch.from_numpy(stack), k)
        for b, x in enumerate(stack):
            ws, hs, n = sklearn_nmf(x, k)
            assert int(iterations[b]) == n
            np.testing.assert_allclose(w[b].numpy(), ws, rtol=0, atol=1e-9 * ws.max())
            np.testing.assert_allclose(h[b].numpy(), hs, rtol=0, atol=1e-9 * hs.max())
        alone = nmf(torch.from_numpy(stack[-1]), k)
        np.testing.assert_allclose(alone[0].numpy(), w[-1].numpy(), rtol=0, atol=1e-9)
    assert set(iterations.tolist()) == {200}
    early = nmf(torch.from_numpy(np.stack(low_rank)), 2)[2]
    assert max(early.tolist()) < 200  # the stopping rule, per matrix


def test_factorize_adds_back_each_channels_minimum():
    """Activations are factorized in float32, as the reference's are (scikit-learn keeps X's precision)."""
    rng = np.random.RandomState(0)
    acts = torch.from_numpy(rng.randn(1, 8, 4, 5).astype(np.float32))
    vectors, maps = factorize(acts, 3)
    assert vectors.dtype == maps.dtype == torch.float32
    flat = acts[0].reshape(8, 20).numpy()
    offset = flat.min(axis=1, keepdims=True)
    w, h, _ = sklearn_nmf(flat - offset, 3)
    np.testing.assert_allclose(vectors[0].numpy(), (w + offset).T, atol=1e-4)
    np.testing.assert_allclose(maps[0].numpy(), h.reshape(3, 4, 5), atol=1e-4)


@pytest.fixture(scope="module")
def inputs(samples):
    def make(data: DataConfig, size: int) -> torch.Tensor:
        config = DataConfig((size, size), size, "bilinear", data.mean, data.std)
        return torch.stack([to_input(decode(samples / f)[0], config)[0] for f in ("chelsea.png", "coffee.png")])

    return make


def reference(model, layer, classifier, x, k, top):
    """pytorch-grad-cam, one image per call (as camcli factorizes): maps (k×H×W, scaled) and top classes."""
    found = []
    for image in x:
        dff = DeepFeatureFactorization(model, dict(model.named_modules())[layer], computation_on_concepts=classifier)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, maps, outputs = dff(image[None], k)
        dff.activations_and_grads.release()
        scores = torch.softmax(torch.from_numpy(outputs), dim=-1)
        best = scores.topk(top, dim=-1)
        found.append((maps[0], best.indices.tolist(), best.values.numpy()))
    return found


@pytest.mark.parametrize(("name", "layer", "size", "k"), [("resnet18", "layer4", 96, 5), ("lite0", "bn2", 160, 4)])
def test_concepts_match_pytorch_grad_cam(name, layer, size, k, inputs, lite0):
    if name == "lite0":
        loaded = lite0
    else:
        torch.manual_seed(0)
        loaded = load_model(name, random_weights=True)
    model = loaded.model.eval()
    x = inputs(loaded.data, size)
    classifier = model.get_classifier()
    expected = reference(model, layer, classifier, x, k, 2)
    out = explain_tensors(model, layer, x, ["dff"], dff_n_components=k)
    found = out.maps["dff"]
    assert found.concepts
    assert found.display.shape == (2, k, size, size)
    assert found.names is not None
    worst = 1.0
    for b, (maps, classes, scores) in enumerate(expected):
        for n in range(k):  # each of our concepts, matched to the reference's by best correlation
            r = [corr(found.display[b, n], maps[m]) for m in range(k)]
            m = int(np.argmax(r))
            worst = min(worst, r[m])
            assert [c for c, _ in found.names[b][n]] == classes[m], (name, b, n)
            np.testing.assert_allclose([s for _, s in found.names[b][n]], scores[m], rtol=1e-3)
    assert worst >= 0.99, (name, worst)


def test_a_head_that_does_not_read_the_layer_leaves_concepts_unnamed(samples, inputs):
    torch.manual_seed(0)
    loaded = load_model("resnet18", random_weights=True)
    x = inputs(loaded.data, 64)
    out = explain_tensors(loaded.model.eval(), "layer3", x, ["dff"], dff_n_components=3)
    found = out.maps["dff"]
    assert found.names is None
    assert "'layer3' has 256 channels and the classifier takes 512 inputs" in (found.unnamed or "")
    assert found.raw.shape[:2] == (2, 3)
    assert float(found.raw.amax()) > 0


def test_a_binary_head_names_concepts_by_its_two_classes():
    """One output y under --head binary: class 1 is sigmoid(y) of the concept's vector, class 0 sigmoid(−y)."""
    from camcli.explainer import BatchExplainer
    from camcli.heads import Head
    from camcli.layout import Layout

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 1),
    ).eval()
    x = torch.randn(2, 3, 16, 16)
    params = {"dff": {"n_components": 2, "top_k": 2}}
    with BatchExplainer(model, [("1", Layout())], params, (16, 16), head=Head("binary")) as explain:
        found = explain(x, lambda scores: torch.tensor([[1], [0]])).maps["dff"]
    vectors, _ = factorize(torch.relu(model[0](x)).detach(), 2)
    y = model[4](vectors).detach()[..., 0]  # B×2 concepts
    assert found.names is not None
    for b in range(2):
        for n in range(2):
            named = dict(found.names[b][n])
            assert set(named) == {0, 1}
            assert named[1] == pytest.approx(float(torch.sigmoid(y[b, n])), abs=1e-6)
            assert named[0] == pytest.approx(1 - named[1], abs=1e-6)


def test_dff_takes_one_layer():
    torch.manual_seed(0)
    model = load_model("resnet18", random_weights=True).model.eval()
    with pytest.raises(CamcliError, match="one --layer"):
        explain_tensors(model, ["layer3", "layer4"], torch.zeros(1, 3, 64, 64), ["dff"])


def test_dff_from_the_command_line(run_cli, samples, tmp_path):
    out = tmp_path / "o"
    args = ["explain", samples / "chelsea.png", "--method", "dff", "-o", out, "-q", "--save", "overlay,map,raw_map"]
    result = run_cli(*args, "--dff-n-components", "3", "--dff-top-k", "3")
    assert result.exit_code == 0, result.output
    folder = out / "chelsea.png"
    doc = json.loads((folder / "explanation.json").read_text())
    entries = doc["explanations"]
    assert [e["concept"] for e in entries] == [0, 1, 2]
    colors = set()
    for n, e in enumerate(entries):
        assert (e["method"], e["class_index"], e["rank"], e["logit"], e["probability"]) == (
            "dff",
            None,
            None,
            None,
            None,
        )
        assert e["params"] == {"layers": ["bn2"], "n_components": 3, "top_k": 3}
        assert len(e["concept_classes"]) == 3
        assert "unnamed" not in e
        scores = [c["score"] for c in e["concept_classes"]]
        assert scores == sorted(scores, reverse=True)
        assert 0 < scores[0] <= 1
        assert e["label"].startswith(f"concept {n}: {e['concept_classes'][0]['label']}")
        assert e["files"] == {
            "overlay": f"dff_concept{n}_overlay.png",
            "map": f"dff_concept{n}_map.npy",
            "raw_map": f"dff_concept{n}_raw.npy",
            "concepts": "dff_concepts.png",
        }
        assert np.load(folder / e["files"]["raw_map"]).shape == (7, 7)
        assert np.load(folder / e["files"]["map"]).shape == (300, 451)  # the original image's size
        colors.add(e["color"])
    assert len(colors) == 3
    saved = np.load(folder / entries[1]["files"]["map"])
    np.testing.assert_array_equal(full_map(folder / "explanation.json", 1), saved)  # rebuilt from the raw map
    assert (folder / "dff_concepts.png").is_file()
    before = (folder / "explanation.json").stat().st_mtime_ns

    assert run_cli(*args, "--dff-n-components", "3", "--dff-top-k", "3").exit_code == 0
    assert (folder / "explanation.json").stat().st_mtime_ns == before  # resumed: nothing redone

    assert run_cli(*args, "--dff-n-components", "2", "--dff-top-k", "3").exit_code == 0
    redone = json.loads((folder / "explanation.json").read_text())["explanations"]
    assert [e["concept"] for e in redone] == [0, 1]
    assert not (folder / "dff_concept2_overlay.png").exists()  # the stale concept's files are removed
    assert (folder / "dff_concepts.png").is_file()

    mine = folder / "dff_concepts_mine.png"
    mine.write_bytes(b"not camcli's")
    assert run_cli("explain", samples / "chelsea.png", "-o", out, "-q", "--top-k", "1").exit_code == 0
    assert sorted(p.name for p in folder.iterdir()) == [
        "dff_concepts_mine.png",
        "explanation.json",
        "gradcam_282_overlay.png",
        "gradcam_282_raw.npy",
    ]


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        (["--smooth", "aug"], "--smooth aug does not apply to dff"),
        (["--layers-as", "separate"], "--layers-as separate does not apply to dff"),
        (["--dff-n-components", "0"], "--dff-n-components"),
    ],
)
def test_dff_refuses_what_does_not_apply(run_cli, samples, tmp_path, extra, why):
    result = run_cli("explain", samples / "chelsea.png", "--method", "gradcam,dff", "-o", tmp_path / "o", *extra)
    assert result.exit_code == 2, result.output
    assert why in result.output


def test_evaluate_refuses_dff(run_cli, samples, tmp_path):
    csv = tmp_path / "truth.csv"
    csv.write_text("path,class,x0,y0,x1,y1\nchelsea.png,281,0,0,200,200\n")
    result = run_cli("evaluate", samples / "chelsea.png", "--annotations", csv, "--method", "dff", "-o", tmp_path / "o")
    assert result.exit_code == 2, result.output
    assert "dff makes no map per class" in result.output
    assert "--method gradcam" in result.output
    assert not (tmp_path / "o").exists()
    explained = tmp_path / "dff"
    args = ["explain", samples / "chelsea.png", "--method", "dff", "--dff-n-components", "2", "-o", explained, "-q"]
    assert run_cli(*args).exit_code == 0
    result = run_cli("evaluate", "--from", explained, "--annotations", csv, "-o", tmp_path / "e")
    assert result.exit_code == 2, result.output
    assert "only class-free concept maps (dff)" in result.output


def test_the_python_api_gives_concepts(samples):
    from camcli.api import Explainer

    explainer = Explainer(methods=["dff"], dff_n_components=2)
    [image] = explainer.explain(samples / "chelsea.png")
    concepts = image.concepts()
    assert [c.concept for c in concepts] == [0, 1]
    assert all(c.class_index is None and c.concept_classes and len(c.concept_classes) == 2 for c in concepts)
    assert concepts[0].full_map().shape == (300, 451)
    assert [e["concept"] for e in image.record["explanations"]] == [0, 1]
