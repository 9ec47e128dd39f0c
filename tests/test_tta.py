"""Test-time augmentation: identity views change nothing, flips permute landmarks correctly."""
import pytest
import torch

from farnetlib.data import AASCESpine
from farnetlib.tta import TTA, tta_heatmaps


def left_right_model(x: torch.Tensor) -> torch.Tensor:
    """A stand-in with two 'landmarks': the image's left half and its right half."""
    w = x.shape[-1]
    left = (torch.arange(w) < w // 2).to(x.dtype)
    return torch.stack([x[:, 0] * left, x[:, 0] * (1 - left)], dim=1)


def test_the_identity_tta_equals_the_plain_prediction_exactly():
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(tta_heatmaps(left_right_model, x, TTA()), left_right_model(x))


def test_a_flip_maps_the_landmark_permutation_back():
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    plain = left_right_model(x)
    # mirrored, the left-half landmark sees the right half: swapping them back restores the plain output
    assert torch.allclose(tta_heatmaps(left_right_model, x, TTA(flip_permutation=(1, 0))), plain)
    assert not torch.allclose(tta_heatmaps(left_right_model, x, TTA(flip_permutation=(0, 1))), plain)


def test_shifted_and_scaled_views_come_back_to_the_input_frame():
    h = w = 64
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    blob = torch.exp(-((xx - 30.3) ** 2 + (yy - 25.7) ** 2) / (2 * 4.0 ** 2))
    x = blob.expand(1, 3, h, w).clone()
    identity = lambda t: t[:, :1]  # noqa: E731 - heatmap = the image itself: equivariant by construction
    out = tta_heatmaps(identity, x, TTA(scales=(1.0, 1.5), shifts=((0, 0), (4, -4))))
    peak = out[0, 0].flatten().argmax()
    assert (int(peak % w), int(peak // w)) == (30, 26)
    assert TTA(scales=(1.0, 1.5), shifts=((0, 0), (4, -4)), flip_permutation=(0,)).views == 8


def test_the_spine_flip_swaps_left_and_right_corners_of_each_vertebra():
    perm = AASCESpine.flip_permutation
    names = AASCESpine.landmark_names
    assert sorted(perm) == list(range(68)) and all(perm[perm[k]] == k for k in range(68))
    assert names[perm[0]] == "v1-top-right" and names[perm[3]] == "v1-bottom-left" and names[perm[67]] == "v17-bottom-left"


def test_tta_validation_none_is_the_runs_own_validation(tmp_path):
    """The 'none' setting reproduces the run's validation numbers; every setting gets one row."""
    import json

    from helpers import tiny

    from farnetlib.engine import train
    from farnetlib.tta import tta_validation

    run_dir = train(tiny(tmp_path, run_name="r", epochs=1), progress=False)
    table = tta_validation(run_dir)
    val = json.loads((run_dir / "metrics.json").read_text())["splits"]["val"]
    assert list(table.index) == ["none", "scales", "shifts", "scales+shifts"]  # synthetic: no mirror twin
    assert table.loc["none", "val_mre"] == pytest.approx(val["mre"], rel=1e-9)
    assert table.loc["scales+shifts", "views"] == 15
