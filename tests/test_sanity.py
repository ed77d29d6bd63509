"""camcli.evaluate.sanity: Adebayo et al.'s cascade, the model's blocks from the classifier down (the whole
check, maps before and after, runs end to end in test_evaluate.py)."""

from __future__ import annotations

from torch import nn

from camcli.evaluate.sanity import randomization_steps


def test_the_cascade_starts_at_the_classifier_and_opens_top_level_sequences(tiny_model):
    # TinyNet: features = Sequential(conv, relu, conv), unused = conv, head = linear
    assert randomization_steps(tiny_model.model) == ["head", "unused", "features.2", "features.0"]


def test_blocks_without_parameters_are_not_steps():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.ReLU(),
        nn.Sequential(nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4)),  # a sequence at the top: opened one level
        nn.ModuleList([nn.Identity()]),  # one element: taken as one block, without parameters: skipped
        nn.Flatten(),
        nn.Linear(4, 2),
    )
    assert randomization_steps(model) == ["5", "2.1", "2.0", "0"]
