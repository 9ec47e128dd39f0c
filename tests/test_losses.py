import numpy as np
import pytest
import torch

from farnetlib.heatmaps import GaussianHeatmapEncoder
from farnetlib.losses import AdaptiveWingLoss, CoarseToFineLoss, EWCLoss, build_loss
from farnetlib.model import FARNetOutput


def test_ewc_equals_independent_numpy_computation():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(2, 3, 8, 9, generator=g)
    target = torch.rand(2, 3, 8, 9, generator=g)
    p, t = pred.numpy().astype(np.float64), target.numpy().astype(np.float64)
    expected = np.mean(np.power(40.0, t) * (p - t) ** 2)
    assert EWCLoss()(pred, target).item() == pytest.approx(expected, rel=1e-5)
    assert EWCLoss(base=7, reduction="sum")(pred, target).item() == pytest.approx(
        np.sum(np.power(7.0, t) * (p - t) ** 2), rel=1e-5)


def test_ewc_with_base_one_is_mse():
    pred, target = torch.randn(1, 2, 5, 5), torch.rand(1, 2, 5, 5)
    assert EWCLoss(base=1)(pred, target).item() == pytest.approx(build_loss("mse")(pred, target).item())


def test_ewc_weighs_errors_near_centres_more_than_mse():
    target = GaussianHeatmapEncoder(sigma=2).encode(torch.tensor([[10.0, 10.0]]), (21, 21))[None]
    near = target.clone()
    near[..., 9:12, 9:12] -= 0.3  # error at the peak
    far = target.clone()
    far[..., 0:3, 0:3] -= 0.3  # same error far away
    ewc, mse = EWCLoss(), build_loss("mse")
    assert mse(near, target).item() == pytest.approx(mse(far, target).item())
    assert ewc(near, target).item() > 10 * ewc(far, target).item()
    assert ewc(near, target).item() > mse(near, target).item()


def test_adaptive_wing_is_continuous_at_theta_and_zero_at_zero():
    loss = AdaptiveWingLoss(reduction="none")
    y = torch.full((1, 1, 1, 3), 0.4)
    pred = y + torch.tensor([0.5 - 1e-6, 0.5 + 1e-6, 0.0])
    out = loss(pred, y).flatten()
    assert out[0].item() == pytest.approx(out[1].item(), abs=1e-4)
    assert out[2].item() == pytest.approx(0.0, abs=1e-7)


def test_coarse_to_fine_sums_weighted_outputs():
    c, f = torch.rand(1, 2, 4, 4), torch.rand(1, 2, 8, 8)
    tc, tf = torch.rand(1, 2, 4, 4), torch.rand(1, 2, 8, 8)
    crit = CoarseToFineLoss(EWCLoss(), coarse_weight=0.5, fine_weight=2.0)
    out = crit(FARNetOutput(c, f), tc, tf)
    assert out["loss"].item() == pytest.approx(0.5 * EWCLoss()(c, tc).item() + 2.0 * EWCLoss()(f, tf).item(), rel=1e-6)


def test_bad_loss_name_and_parameters():
    with pytest.raises(ValueError, match="ewc.*mse"):
        build_loss("huber")
    with pytest.raises(ValueError, match="base"):
        EWCLoss(base=0.5)
    with pytest.raises(ValueError, match="reduction"):
        EWCLoss(reduction="max")(torch.zeros(1), torch.zeros(1))
