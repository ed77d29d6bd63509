"""camcli.targets: which classes each image explains (named, top-k, per image, above a threshold), as the
equal-width columns the engine needs, and class names resolved without guessing."""

from __future__ import annotations

import pytest
import torch

from camcli.errors import TargetError
from camcli.heads import Head
from camcli.targets import Targets, resolve_class

# Two images, five classes; image 0 ranks 3 > 1 > 0 > 4 > 2, image 1 ranks 0 > 2 > 4 > 3 > 1.
SCORES = torch.tensor([[1.0, 2.0, -1.0, 5.0, 0.0], [4.0, -2.0, 3.0, 0.5, 1.0]])


def _select(targets: Targets, keys=()):
    classes, valid, rank = targets.select(SCORES, keys)
    return classes.tolist(), valid.tolist(), rank.tolist()


def test_named_classes_then_the_top_k_with_their_ranks():
    classes, valid, rank = _select(Targets(classes=(4,), top_k=2))
    assert classes == [[4, 3, 1], [4, 0, 2]]
    assert valid == [[True] * 3] * 2
    assert rank == [[0, 1, 2], [0, 1, 2]]  # 0: a named class, not a top-k place
    assert torch.equal(Targets(classes=(4,), top_k=2).choose(SCORES), torch.tensor(classes))


def test_top_k_is_capped_by_the_number_of_classes():
    classes, _, rank = _select(Targets(top_k=9))
    assert classes == [[3, 1, 0, 4, 2], [0, 2, 4, 3, 1]]
    assert rank == [[1, 2, 3, 4, 5]] * 2


def test_per_image_classes_are_padded_with_the_images_first_class():
    targets = Targets(top_k=1, per_image={"a.png": (1,), "b.png": (2, 4)})
    classes, valid, rank = _select(targets, ["a.png", "b.png"])
    assert classes == [[3, 1, 3], [0, 2, 4]]  # a.png has one class fewer: padded with its first (3)
    assert valid == [[True, True, False], [True, True, True]]
    assert rank == [[1, 0, 0], [1, 0, 0]]
    classes, valid, _ = _select(targets, ["c.png", "a.png"])  # an image without classes of its own
    assert classes == [[3, 3], [0, 1]]
    assert valid == [[True, False], [True, True]]


@pytest.mark.parametrize(("head", "threshold"), [("softmax", 0.2), ("sigmoid", 0.9)])
def test_threshold_adds_every_class_at_least_that_probable(head, threshold):
    probs = Head(head).probabilities(SCORES)
    above = [[c for c in probs[i].argsort(descending=True).tolist() if probs[i, c] >= threshold] for i in range(2)]
    assert above[0] != above[1]  # the test needs images with different numbers of classes
    targets = Targets(top_k=0, threshold=threshold, head=Head(head))
    classes, valid, rank = _select(targets)
    width = max(map(len, above))
    for i in range(2):
        assert classes[i][: len(above[i])] == above[i]
        assert valid[i] == [True] * len(above[i]) + [False] * (width - len(above[i]))
        assert classes[i][len(above[i]) :] == [above[i][0]] * (width - len(above[i]))
    assert rank == [[0] * width] * 2


def test_an_image_with_nothing_to_explain_gets_one_padding_column():
    classes, valid, rank = _select(Targets(top_k=0, threshold=0.95))  # image 0: P(3) ≈ 0.93
    assert valid == [[False], [False]]
    assert rank == [[0], [0]]
    assert all(0 <= c < 5 for row in classes for c in row)
    classes, valid, _ = _select(Targets(top_k=0, threshold=0.9))  # image 0 has one, image 1 none
    assert classes[0][0] == 3
    assert valid[0][0]
    assert not any(valid[1])


def test_resolve_class_by_index_label_or_one_of_its_names():
    labels = ["tiger cat", "tabby, tabby cat", "crane", "crane", "espresso"]
    assert resolve_class("4", labels) == 4
    assert resolve_class(" 0 ", labels) == 0
    assert resolve_class("ESPRESSO", labels) == 4
    assert resolve_class("Tabby Cat", labels) == 1  # one of the comma-separated names
    assert resolve_class("tabby, tabby cat", labels) == 1  # the whole label
    for index in ("5", "-1"):
        with pytest.raises(TargetError, match=f"Class index {index} is out of range: this model has classes 0 to 4"):
            resolve_class(index, labels)


def test_an_ambiguous_name_lists_every_match_and_an_unknown_one_suggests():
    labels = ["tiger cat", "tabby, tabby cat", "crane", "crane", "espresso"]
    with pytest.raises(TargetError) as info:
        resolve_class("Crane", labels)
    assert str(info.value) == (
        "Class name 'Crane' is ambiguous: it matches 2 (crane); 3 (crane). Pass the index instead, e.g. --class 2."
    )
    with pytest.raises(TargetError, match=r"Unknown class 'espreso'\. Did you mean: 'espresso'\?"):
        resolve_class("espreso", labels)
    with pytest.raises(TargetError, match=r"^Unknown class 'zebra'\. Pass a class index"):
        resolve_class("zebra", labels)
