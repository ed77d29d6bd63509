"""camcli.evaluate.road: ROAD's noisy linear imputation and scores, against pytorch-grad-cam's
(``pytorch_grad_cam.metrics.road``, the authors' imputer) on the same maps, images, classes and noise."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from pytorch_grad_cam.metrics.road import (
    NoisyLinearImputer,
    ROADCombined,
    ROADLeastRelevantFirstAverage,
    ROADMostRelevantFirstAverage,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
from torch import nn

from camcli.evaluate.job import ROAD_PERCENTILES
from camcli.evaluate.road import SEED, impute, removal_masks, road


def _model() -> nn.Module:
    """A small random CNN whose probabilities move when a part of the image does (steep logits)."""
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveMaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32, 5),
    ).eval()
    with torch.no_grad():
        model[-1].weight.mul_(30)
    return model


def _map(height: int, width: int, seed: int) -> torch.Tensor:
    """A smooth map in [0, 1], as camcli scores them (a coarse map upsampled, min-max scaled)."""
    coarse = torch.rand(1, 1, 5, 4, generator=torch.Generator().manual_seed(seed))
    heat = nn.functional.interpolate(coarse, size=(height, width), mode="bilinear")[0, 0]
    return (heat - heat.min()) / (heat.max() - heat.min())


def _reference_imputation(x: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():  # scipy's sparse solver warns about numpy's __array_wrap__
        warnings.simplefilter("ignore", DeprecationWarning)
        return NoisyLinearImputer(noise=0.0)(x, (~removed).float())


def test_imputation_solves_the_reference_system():
    x = torch.randn(3, 23, 18, generator=torch.Generator().manual_seed(0))
    heat = _map(23, 18, 1)
    removed = removal_masks(heat, ROAD_PERCENTILES)
    speckled = torch.rand(23, 18, generator=torch.Generator().manual_seed(2)) > 0.3  # ragged, touching edges
    removed = torch.cat([removed, speckled[None], torch.ones(1, 23, 18, dtype=torch.bool)])
    found = impute(x[None].expand(len(removed), -1, -1, -1), removed)
    for mine, where in zip(found, removed, strict=True):
        torch.testing.assert_close(mine, _reference_imputation(x, where), atol=1e-4, rtol=0)
        assert torch.equal(mine[:, ~where], x[:, ~where])  # kept pixels untouched
    assert torch.equal(found[-1], torch.zeros_like(x))  # nothing kept: the reference's solution, 0

    nothing = impute(x[None], torch.zeros(1, 23, 18, dtype=torch.bool))
    assert torch.equal(nothing[0], x)


def test_removal_follows_the_reference_percentiles():
    heat = _map(20, 20, 4)
    masks = removal_masks(heat, (25.0, 75.0))
    values = heat.numpy()
    for i, p in enumerate((25.0, 75.0)):
        assert torch.equal(masks[i], torch.from_numpy(~((1 - values) < np.percentile(1 - values, p))))  # LeRF
        assert torch.equal(masks[2 + i], torch.from_numpy(~(values < np.percentile(values, p))))  # MoRF
    assert int(masks[3].sum()) == 100  # MoRF at 75: the top quarter


@pytest.mark.parametrize("percentiles", [ROAD_PERCENTILES, (30.0, 70.0)])
def test_road_equals_pytorch_grad_cam_with_the_same_noise(percentiles):
    model = _model()
    x = torch.randn(3, 32, 28, generator=torch.Generator().manual_seed(5))
    heat = _map(32, 28, 6)

    def score(batch: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.softmax(model(batch), dim=1).gather(1, classes[:, None])[:, 0]

    cams = heat.numpy()[None]
    listed = [float(p) for p in percentiles]
    for cls in (0, 3):
        mine = road(score, x, heat, cls, percentiles, batch_size=7)
        targets = [ClassifierOutputSoftmaxTarget(cls)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.manual_seed(SEED)
            combined = ROADCombined(listed)(x[None], cams, targets, model)[0]
            torch.manual_seed(SEED)  # the averages draw LeRF's noise first, as ROADCombined does
            lerf = ROADLeastRelevantFirstAverage(listed)(x[None], cams, targets, model)[0]
            morf = ROADMostRelevantFirstAverage(listed)(x[None], cams, targets, model)[0]
        assert mine.lerf == pytest.approx(float(lerf), abs=1e-4)
        assert mine.morf == pytest.approx(float(morf), abs=1e-4)
        assert mine.combined == pytest.approx(float(combined), abs=1e-4)
        assert max(abs(mine.lerf), abs(mine.morf)) > 0.01  # the comparison measures something


def test_road_reads_the_map_the_right_way_round():
    """A model that only sees the left half: a map on that half removes it first under MoRF."""

    class LeftHalf(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            evidence = 4 * x[:, :, :, :8].mean(dim=(1, 2, 3))
            return torch.stack([torch.zeros_like(evidence), evidence], dim=1)

    model = LeftHalf()
    x = torch.ones(3, 16, 16)
    heat = torch.zeros(16, 16)
    heat[:, :8] = torch.linspace(0.5, 1.0, 8)

    def score(batch: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        return torch.softmax(model(batch), dim=1).gather(1, classes[:, None])[:, 0]

    found = road(score, x, heat, 1)
    assert found.morf < -0.2 < found.combined  # removing the evidence first destroys the score
    assert abs(found.lerf) < 0.05  # removing the other half first barely changes it
