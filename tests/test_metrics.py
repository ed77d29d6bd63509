"""camcli.evaluate.metrics: pure functions with known answers, or compared with their definitions computed
here (a naive deletion/insertion loop, Spearman's formula, a disk-dilated mask, torchvision's blur) or with
the library that defines them (Quantus's Complexity and Sparseness)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from camcli.evaluate import metrics as M


def test_iou_exclusive_boxes() -> None:
    assert M.iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert M.iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert M.iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0  # touching, x1 exclusive: no shared pixel
    np.testing.assert_allclose(M.iou_matrix([(0, 0, 2, 2), (0, 0, 4, 4)], [(0, 0, 2, 2)]), [[1.0], [0.25]])


def _blob(shape: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    heat = np.zeros(shape, np.float32)
    x0, y0, x1, y1 = box
    heat[y0:y1, x0:x1] = 1.0
    heat[(y0 + y1) // 2, (x0 + x1) // 2] = 2.0  # a peak inside
    return heat


def test_localization_box_and_protocol() -> None:
    gt = (40, 30, 60, 50)
    heat = _blob((100, 100), gt)
    heat[90:95, 0:2] = 0.5  # a smaller segment elsewhere is not the largest
    assert M.localization_box(heat) == gt
    assert M.localization_box(np.zeros((4, 4))) is None
    far = (0, 0, 10, 10)
    cases = [
        M.LocalizationCase({3: [gt]}, [3, 5, 1, 2, 4], {3: gt}),  # right class, right box
        M.LocalizationCase({3: [gt]}, [5, 3, 1, 2, 4], {5: gt, 3: gt}),  # top-1 class wrong; top-5 right
        M.LocalizationCase({3: [gt]}, [3, 5, 1, 2, 4], {3: far}),  # right class, box misses
        M.LocalizationCase({3: [gt]}, [5, 3, 1, 2, 4], {5: gt}),  # map of class 3 not explained: top-5 unknown
    ]
    assert [M.top_k_localization(c, 1) for c in cases] == [True, False, False, False]
    assert [M.top_k_localization(c, 5) for c in cases] == [True, True, False, None]
    assert M.localization_metrics(cases[:3]) == pytest.approx(
        {
            "top1_cls_error": 1 / 3,
            "top5_cls_error": 0.0,
            "top1_loc_error": 2 / 3,
            "top5_loc_error": 1 / 3,
            "gt_known_loc_accuracy": 2 / 3,
        }
    )
    # One undecidable image: no biased top-5 / GT-known figure, the others stand.
    assert M.localization_metrics(cases) == pytest.approx(
        {
            "top1_cls_error": 0.5,
            "top5_cls_error": 0.0,
            "top1_loc_error": 0.75,
            "top5_loc_error": None,
            "gt_known_loc_accuracy": None,
        }
    )


def test_pointing_game_tolerance_boxes_and_masks() -> None:
    box = [(40.0, 40.0, 60.0, 60.0)]  # pixels 40..59
    assert M.pointing_hit((59, 50), box)
    assert M.pointing_hit((74, 50), box)  # 15 px from pixel 59
    assert not M.pointing_hit((75, 50), box)  # 16 px
    assert M.pointing_hit((69, 69), box)
    assert not M.pointing_hit((70, 70), box)
    assert not M.pointing_hit(None, box)
    assert M.share([True, True, False]) == pytest.approx(2 / 3)
    assert M.share([True, None]) is None
    assert M.share([]) is None
    rng = np.random.default_rng(0)
    mask = np.zeros((60, 80), bool)
    mask[rng.integers(0, 60, 6), rng.integers(0, 80, 6)] = True
    ys, xs = np.nonzero(mask)
    for x, y in zip(rng.integers(0, 80, 200).tolist(), rng.integers(0, 60, 200).tolist(), strict=False):
        dilated = bool(np.any((xs - x) ** 2 + (ys - y) ** 2 <= 15**2))  # the mask dilated by a disk, at the point
        assert M.pointing_hit((x, y), (), mask) is dilated


def test_energy_pointing_game() -> None:
    region = M.region_mask((100, 100), [(40, 30, 60, 50)])
    assert region.sum() == 400
    assert M.energy_share(_blob((100, 100), (42, 32, 58, 48)), region) == 1.0
    assert M.energy_share(_blob((100, 100), (0, 0, 10, 10)), region) == 0.0
    half = np.zeros((100, 100))
    half[40, 50], half[0, 0] = 1.0, 3.0
    assert M.energy_share(half, region) == 0.25
    assert M.energy_share(np.zeros((5, 5)), np.ones((5, 5), bool)) is None
    mask = np.zeros((100, 100), bool)
    mask[0, 0] = True
    assert M.energy_share(half, M.region_mask((100, 100), [(40, 30, 60, 50)], [mask])) == 1.0


def _region_score(batch: torch.Tensor) -> torch.Tensor:
    """A toy 'probability': the mean of channel 0 over the top-left 4×4 block."""
    return batch[:, 0, :4, :4].mean(dim=(1, 2)).clamp(0, 1)


def test_deletion_insertion_known_curves() -> None:
    x = torch.zeros(3, 8, 8)
    x[:, :4, :4] = 1.0
    good = torch.zeros(8, 8)
    good[:4, :4] = 1.0
    curves = M.deletion_insertion(_region_score, x, good, steps=4, batch_size=3)
    np.testing.assert_allclose(curves.deletion, [1, 0, 0, 0, 0])  # the block goes first
    assert curves.deletion_auc == pytest.approx(0.5 / 4)
    blurred = float(_region_score(M.gaussian_blur(x)[None])[0])
    np.testing.assert_allclose(curves.insertion, [blurred, 1, 1, 1, 1], rtol=1e-6)
    assert curves.insertion_auc == pytest.approx((blurred / 2 + 3.5) / 4)
    bad = M.deletion_insertion(_region_score, x, 1 - good, steps=4)
    np.testing.assert_allclose(bad.deletion, [1, 1, 1, 1, 0])
    assert bad.deletion_auc == pytest.approx(3.5 / 4)
    assert bad.insertion_auc < curves.insertion_auc
    assert bad.deletion_auc > curves.deletion_auc
    flat = M.deletion_insertion(_region_score, x, torch.zeros(8, 8), steps=4)  # ties: flattened index order
    np.testing.assert_allclose(flat.deletion[:3], [1, 0.5, 0])  # rows 0-1 first, then rows 2-3


def _naive_curves(score, x: torch.Tensor, saliency: torch.Tensor, cls: int, steps: int) -> tuple[list, list]:
    """Deletion and insertion curves by the definition (Petsiuk et al. 2018), one image and one step at a
    time: pixels ranked by decreasing saliency (a stable sort: ties in flattened order); at step s the first
    ⌊s·HW/steps⌋ pixels are set to 0 (deletion) or copied from the image onto its blur (insertion, the blur
    from torchvision: kernel 11, sigma 5)."""
    from torchvision.transforms.functional import gaussian_blur  # type: ignore[import-untyped]

    _, height, width = x.shape
    order = np.argsort(-saliency.numpy().ravel(), kind="stable")
    blurred = gaussian_blur(x[None], [11, 11], [5.0, 5.0])[0]
    deletion, insertion = [], []
    for s in range(steps + 1):
        chosen = np.zeros(height * width, bool)
        chosen[order[: s * height * width // steps]] = True
        mask = torch.from_numpy(chosen.reshape(height, width))
        deletion.append(float(score(torch.where(mask, 0.0, x)[None], torch.tensor([cls]))[0]))
        insertion.append(float(score(torch.where(mask, x, blurred)[None], torch.tensor([cls]))[0]))
    return deletion, insertion


def test_deletion_insertion_many_equals_the_definition() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 3, 12, 10)
    maps = torch.rand(3, 12, 10)
    maps[1] = (maps[1] * 4).floor()  # many ties: the stable order decides
    weights = torch.randn(4, 3 * 12 * 10)

    def score(batch: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        logits = batch.reshape(len(batch), -1) @ weights.T  # every pixel counts, each differently
        return logits.softmax(dim=1).gather(1, classes[:, None])[:, 0]

    classes = torch.tensor([0, 3, 1])
    many = M.deletion_insertion_many(score, x, maps, classes, steps=7, batch_size=5)
    assert len(many) == 3
    for i in range(3):
        deletion, insertion = _naive_curves(score, x[i], maps[i], int(classes[i]), steps=7)
        assert len(many[i].deletion) == len(many[i].insertion) == 8
        np.testing.assert_allclose(many[i].deletion, deletion, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(many[i].insertion, insertion, rtol=1e-5, atol=1e-6)  # the two blurs: 1e-5
        assert many[i].deletion_auc == pytest.approx(np.trapezoid(deletion, dx=1 / 7), rel=1e-5)
        assert many[i].insertion_auc == pytest.approx(np.trapezoid(insertion, dx=1 / 7), rel=1e-5)
    one = M.deletion_insertion(lambda b: score(b, torch.full((len(b),), 3)), x[1], maps[1], steps=7)
    np.testing.assert_allclose(one.deletion, many[1].deletion, rtol=1e-5, atol=1e-7)


def test_gaussian_blur_matches_torchvision() -> None:
    from torchvision.transforms.functional import gaussian_blur  # type: ignore[import-untyped]

    img = torch.rand(2, 3, 20, 17)
    torch.testing.assert_close(M.gaussian_blur(img), gaussian_blur(img, [11, 11], [5.0, 5.0]), atol=1e-5, rtol=0)


def test_average_drop_and_increase_in_confidence() -> None:
    assert M.average_drop([0.8, 0.5], [0.4, 0.6]) == pytest.approx(25.0)  # (0.5 + 0) / 2 · 100
    assert M.increase_in_confidence([0.8, 0.5], [0.4, 0.6]) == pytest.approx(50.0)
    assert M.average_drop([], []) is None
    x = torch.zeros(1, 3, 2, 2)  # normalized with mean 0.5, std 0.5: grey pixels (0.5)
    maps = torch.tensor([[[1.0, 0.0], [0.5, 0.0]]])
    masked = M.masked_by_map(x, maps, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    torch.testing.assert_close(masked[0, 1], torch.tensor([[0.0, -1.0], [-0.5, -1.0]]))  # black where map = 0
    scores = M.class_scores(lambda b, c: b.mean(dim=(1, 2, 3)) + c, torch.zeros(5, 3, 2, 2), torch.arange(5), 2)
    np.testing.assert_allclose(scores, [0, 1, 2, 3, 4])


def test_spearman_against_formula_and_ties() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.random(50), rng.random(50)
    d = np.argsort(np.argsort(a)) - np.argsort(np.argsort(b))
    assert M.spearman(a, b) == pytest.approx(1 - 6 * np.sum(d**2) / (50 * (50**2 - 1)))
    # ranks with ties: a → [1, 2.5, 2.5, 4]; ρ = 4.5 / √(4.5 · 5) = 3 / √10
    assert M.spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(3 / math.sqrt(10))
    np.testing.assert_array_equal(M.rankdata([[3, 1], [3, 3]]), [3, 1, 3, 3])
    assert M.spearman(np.ones(4), [1, 2, 3, 4]) is None
    assert M.spearman(a, a**3) == pytest.approx(1.0)  # any increasing transform


def test_mask_iou() -> None:
    a, b = np.zeros((10, 10)), np.zeros((10, 10))
    a[0:4, 0:5], b[0:4, 2:7] = 1.0, 1.0
    a[0, 2] = 10.0  # only this pixel reaches 15% of a's max
    assert M.mask_iou(a, b) == pytest.approx(1 / 20)
    assert M.mask_iou(a, b, threshold=0.05) == pytest.approx(12 / 28)
    assert M.mask_iou(np.zeros(3), np.zeros(3)) is None


def _quantus(metric: str, heat: np.ndarray) -> float:
    """Quantus's metric of one map (its own preprocessing: |a|, normalized by its max)."""
    import quantus

    x = np.zeros((1, 3, *heat.shape), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Quantus announces its settings
        found = getattr(quantus, metric)(disable_warnings=True, display_progressbar=False)(
            model=None, x_batch=x, y_batch=np.zeros(1, int), a_batch=heat[None, None].copy()
        )
    return float(found[0])


def test_complexity_and_sparseness_equal_quantus() -> None:
    rng = np.random.default_rng(7)
    maps = [
        rng.random((24, 20)).astype(np.float32) - 0.3,  # signed: both take |a|
        np.kron(rng.random((3, 5)), np.ones((8, 4))).astype(np.float32),  # blocky, many ties
        np.pad(np.ones((2, 2), np.float32), ((11, 11), (9, 9))),  # concentrated
    ]
    entropies, ginis = M.complexity(np.stack(maps)), M.sparseness(np.stack(maps))
    for heat, entropy, gini in zip(maps, entropies, ginis, strict=True):
        assert entropy == pytest.approx(_quantus("Complexity", heat), abs=1e-4)
        assert gini == pytest.approx(_quantus("Sparseness", heat), abs=1e-4)
    assert entropies[2] == pytest.approx(math.log(4), abs=1e-6)  # four equal pixels
    assert ginis[2] > 0.98 > 0.5 > ginis[0]
    assert M.complexity(np.zeros((2, 4, 4))) == [None, None]  # no evidence: nothing to measure
    assert M.sparseness(np.zeros((4, 4))) == [None]


def test_arcc_parts_equal_pytorch_grad_cam() -> None:
    """ARCC's Complexity (L1 per pixel) and the Pearson coherency of pytorch_grad_cam.metrics.arcc, and its
    harmonic mean with the ROAD term (2 × combined, clipped to [0, 1])."""
    from pytorch_grad_cam.metrics.arcc import Complexity, batch_pearson_coherency

    rng = np.random.default_rng(8)
    maps = rng.random((3, 24, 20)).astype(np.float32)
    maps[2] = np.kron(rng.random((3, 5)), np.ones((8, 4)))  # blocky
    np.testing.assert_allclose(M.arcc_complexity(maps), Complexity()(maps), atol=1e-6, rtol=0)
    assert M.arcc_complexity(np.ones((1, 4, 4))) == [1.0]
    others = (maps + rng.random(maps.shape).astype(np.float32)) / 2
    reference = (batch_pearson_coherency(others, maps) + 1) / 2
    for a, b, expected in zip(others, maps, reference, strict=True):
        assert M.coherency(a, b) == pytest.approx(float(expected), abs=1e-6)
    assert M.coherency(maps[0], 1 - maps[0]) == pytest.approx(0.0, abs=1e-6)
    assert M.coherency(np.zeros((4, 4)), maps[0, :4, :4]) == 0.5  # a constant map: ρ = 0, as the reference
    assert [M.arcc_road(r) for r in (-0.2, 0.25, 0.7)] == [0.0, 0.5, 1.0]
    assert M.arcc(0.5, 1.0, 0.25) == pytest.approx(3 / (1 + 2 + 2), rel=1e-6)  # terms 1, 0.5, 0.5
    assert M.arcc(0.1, 0.9, -0.1) < 1e-7  # any part at 0 sinks it
    assert M.drop_in_confidence([-0.2, 0.1, -0.4]) == pytest.approx(0.2)
    assert M.drop_in_confidence([]) is None
    x = torch.ones(1, 3, 2, 2)
    torch.testing.assert_close(
        M.multiplied_by_map(x, torch.tensor([[[1.0, 0.0], [0.5, 0.0]]]))[0, 2], torch.tensor([[1.0, 0.0], [0.5, 0.0]])
    )
