"""Spine metrics (Cobb angles, SMAPE, normalised MSE) on hand-made spines and on the real labels."""
import numpy as np
import pytest

from farnetlib.data import AASCESpine, DatasetError
from farnetlib.spine import (angle_errors, cobb_angles, is_s_shaped, normalised_mse, per_vertebra_corner, smape,
                             vertebra_midlines)


def spine(tilts_deg, centres=None, width=40.0, height=20.0, gap=30.0):
    """17 rectangles (68 corners TL, TR, BL, BR) whose mid-lines are tilted by ``tilts_deg``."""
    pts = []
    for v, tilt in enumerate(tilts_deg):
        cx, cy = (centres[v] if centres is not None else (200.0, 100.0 + v * gap))
        a = np.radians(tilt)
        right, down = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
        c = np.array([cx, cy])
        for sy in (-1, 1):
            for sx in (-1, 1):
                pts.append(c + sx * width / 2 * right + sy * height / 2 * down)
    return np.array(pts)


def test_straight_spine_has_zero_angles():
    np.testing.assert_allclose(cobb_angles(spine([0.0] * 17), image_height=800), 0.0, atol=1e-6)


def test_one_tilted_vertebra_gives_its_angle():
    tilts = [0.0] * 17
    tilts[9] = 12.0
    angles = cobb_angles(spine(tilts), image_height=800)
    assert angles[0] == pytest.approx(12.0, abs=1e-4)  # the largest angle of the spine comes first
    np.testing.assert_allclose(vertebra_midlines(spine(tilts))[9], [40 * np.cos(np.radians(12)), 40 * np.sin(np.radians(12))])


def test_c_curve_is_not_s_and_uses_the_end_vertebrae():
    tilts = np.linspace(-15, 15, 17)  # a single curve: end vertebrae are the most tilted
    centres = [(200.0 + 40 * np.sin(np.pi * v / 16) + 2 * v, 100.0 + 30 * v) for v in range(17)]
    pts = spine(tilts, centres)
    assert not is_s_shaped(pts)
    a = cobb_angles(pts, image_height=800)
    assert a[0] == pytest.approx(30.0, abs=1e-4)
    assert a[1] == pytest.approx(0.0, abs=1e-4) and a[2] == pytest.approx(0.0, abs=1e-4)


def test_s_curve_is_detected():
    centres = [(200.0 + 40 * np.sin(2 * np.pi * v / 16) + 2 * v, 100.0 + 30 * v) for v in range(17)]
    tilts = [20 * np.cos(2 * np.pi * v / 16) for v in range(17)]
    pts = spine(tilts, centres)
    assert is_s_shaped(pts)
    a = cobb_angles(pts, image_height=1000)
    assert a[0] == pytest.approx(40.0, abs=1e-3) and np.all(a[1:] <= a[0] + 1e-9)


def test_smape_and_normalised_mse_by_hand():
    gt = np.array([[10.0, 20.0, 30.0], [0.0, 0.0, 0.0]])
    pred = np.array([[12.0, 20.0, 27.0], [0.0, 0.0, 0.0]])
    # image 1: (2 + 0 + 3) / (22 + 40 + 57) ; image 2: 0/0 counts as 0
    assert smape(pred, gt) == pytest.approx(100 * (5 / 119) / 2)
    gt_pts = np.zeros((1, 2, 2))
    pred_pts = np.array([[[10.0, 0.0], [0.0, 20.0]]])
    # x / 100 (width), y / 200 (height): squared errors 0.01, 0, 0, 0.01 -> mean 0.005
    assert normalised_mse(pred_pts, gt_pts, np.array([[200, 100]])) == pytest.approx(0.005)
    table = angle_errors(np.array([[1.0, 2, 3], [2, 3, 4], [3, 5, 6]]), np.array([[1.0, 2, 3], [2, 4, 4], [3, 5, 7]]))
    assert table["mae_deg"].tolist() == pytest.approx([0, 1 / 3, 1 / 3]) and "smape_%" in table.attrs
    assert per_vertebra_corner(np.arange(68.0)[None]).loc["v2", "top-left"] == 4.0


@pytest.mark.parametrize("split", ["training", "test"])
def test_cobb_angles_from_ground_truth_reproduce_angles_csv(aasce_root, split):
    """The challenge algorithm on the ground-truth landmarks must give the published angles."""
    source = AASCESpine(aasce_root, split, outside="keep")
    gt_angles = source.cobb_angles()
    ours = np.stack([cobb_angles(source.landmarks[i], source.image_hw(i)[0]) for i in range(len(source))])
    value = smape(ours, gt_angles.to_numpy())
    assert len(source) == {"training": 481, "test": 128}[split]
    assert value < 0.5, f"SMAPE of GT-derived angles vs angles.csv on {split}: {value:.3f} %"


def test_labels_outside_the_image_are_named_at_start_up(aasce_root):
    with pytest.raises(DatasetError, match=r"sunhl-1th-25-Jul-2016-49 A AP.*landmark 64.*outside='keep'"):
        AASCESpine(aasce_root, "training")
    source = AASCESpine(aasce_root, "training", outside="keep")
    hits = [o for o in source.outside_points if o["id"] == "sunhl-1th-25-Jul-2016-49 A AP"]
    assert any(o["landmark"] == 64 and o["y"] > o["height"] for o in hits)
    assert source.describe()["outside_points"] == len(source.outside_points) >= 1
    sample = source[source.ids.index("sunhl-1th-25-Jul-2016-49 A AP")]  # kept as annotated, not clipped
    assert sample.landmarks[63, 1] > sample.image.shape[0]


def test_each_cobb_angle_is_the_angle_between_its_two_end_vertebrae(aasce_root):
    from farnetlib.data import AASCESpine
    from farnetlib.spine import cobb_angles_with_ends, vertebra_midlines

    source = AASCESpine(aasce_root, "test")
    for i in range(0, len(source), 7):
        values, ends = cobb_angles_with_ends(source.landmarks[i], source.image_hw(i)[0])
        mid = vertebra_midlines(source.landmarks[i])
        for value, (a, b) in zip(values, ends):
            cos = mid[a] @ mid[b] / np.linalg.norm(mid[a]) / np.linalg.norm(mid[b])
            assert a <= b and value == pytest.approx(np.degrees(np.arccos(np.clip(round(cos, 8), -1, 1))), abs=1e-9)
