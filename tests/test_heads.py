"""camcli.heads: model outputs → class scores (what is explained) and probabilities (what is reported),
compared with the formulas computed here in NumPy (float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from camcli.heads import HEADS, SOFTMAX, Head

OUTPUTS = torch.tensor([[2.0, -1.0, 0.5, 0.0], [-3.0, 4.0, 4.0, 1.0]])


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def test_the_heads():
    assert HEADS == ("softmax", "sigmoid", "binary")
    assert Head() == SOFTMAX
    assert SOFTMAX.name == "softmax"


def test_softmax_scores_are_the_logits_and_probabilities_sum_to_one():
    head = Head("softmax")
    assert torch.equal(head.scores(OUTPUTS), OUTPUTS)  # the pre-softmax score y^c, as the paper
    probs = head.probabilities(head.scores(OUTPUTS)).double().numpy()
    np.testing.assert_allclose(probs, _softmax(OUTPUTS.double().numpy()), rtol=1e-6)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    assert head.classes(4) == 4


def test_sigmoid_is_one_probability_per_class():
    head = Head("sigmoid")
    assert torch.equal(head.scores(OUTPUTS), OUTPUTS)
    probs = head.probabilities(head.scores(OUTPUTS)).double().numpy()
    np.testing.assert_allclose(probs, _sigmoid(OUTPUTS.double().numpy()), rtol=1e-6)
    assert head.classes(4) == 4


def test_binary_explains_both_signs_of_one_logit():
    head = Head("binary")
    logits = torch.tensor([[1.5], [-0.25], [0.0]], requires_grad=True)
    scores = head.scores(logits)
    assert scores.shape == (3, 2)
    np.testing.assert_array_equal(scores.detach().numpy(), [[-1.5, 1.5], [0.25, -0.25], [0.0, 0.0]])
    probs = head.probabilities(scores).detach().double().numpy()
    l = logits.detach().double().numpy()[:, 0]  # noqa: E741
    np.testing.assert_allclose(probs[:, 1], _sigmoid(l), rtol=1e-6)  # P(positive)
    np.testing.assert_allclose(probs[:, 0], 1 - _sigmoid(l), rtol=1e-6)  # P(negative)
    assert head.classes(1) == 2
    scores[:, 0].sum().backward()  # class 0 is explained by −l: its gradient is −1
    np.testing.assert_array_equal(logits.grad.numpy(), [[-1.0], [-1.0], [-1.0]])


@pytest.mark.parametrize("name", HEADS)
def test_scores_keep_the_gradient(name):
    outputs = OUTPUTS[:, :1].clone().requires_grad_(True) if name == "binary" else OUTPUTS.clone().requires_grad_(True)
    Head(name).scores(outputs)[:, -1].sum().backward()
    assert outputs.grad is not None
    assert float(outputs.grad.abs().sum()) > 0
