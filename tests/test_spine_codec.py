"""The ordered spine decoder (farnetlib.spine_codec) on synthetic spines whose answer is known:
straight, strongly curved, and one whose top vertebra lies outside the image."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from farnetlib.heatmaps import GaussianHeatmapEncoder, QuadraticDecoder, build_decoder
from farnetlib.spine import vertebra_mixups
from farnetlib.spine_codec import OrderedSpineDecoder, ordered_assignment

H, W, V = 256, 96, 17


def spine(curve: float = 0.0) -> np.ndarray:
    """``(68, 2)`` corners (x, y) of 17 vertebrae in heatmap pixels, top to bottom, corners TL, TR,
    BL, BR; ``curve``: the lateral amplitude (px) of an S-shaped spine, each vertebra tilted along it."""
    pts = []
    for v in range(V):
        cy = 20 + 13 * v
        t = (cy - 20) / (13 * (V - 1))
        cx = W / 2 + curve * np.sin(2 * np.pi * t)
        slope = curve * 2 * np.pi * np.cos(2 * np.pi * t) / (13 * (V - 1))  # dx/dy of the centre line
        angle = np.arctan(slope)
        rot = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
        for dx, dy in ((-10, -4), (10, -4), (-10, 4), (10, 4)):
            pts.append(np.array([cx, cy]) + rot @ np.array([dx, dy]))
    return np.array(pts)


def heatmaps(points: np.ndarray, confused: dict[int, float] | None = None, absent: tuple[int, ...] = ()) -> torch.Tensor:
    """68 channels with a unit Gaussian at each corner. ``confused``: vertebra v -> the height of its
    channels' response at its own corners, while they fire at full height on the vertebra below (the
    network's miscount); ``absent``: vertebrae outside the image, whose channels fire at 0.4 on the
    vertebra below only."""
    enc = GaussianHeatmapEncoder(2.0)
    own = enc.encode(points, (H, W))
    maps = own.clone()
    quads = points.reshape(V, 4, 2)
    for v, height in (confused or {}).items():
        below = enc.encode(quads[v + 1], (H, W))
        maps[4 * v:4 * v + 4] = torch.maximum(height * own[4 * v:4 * v + 4], below)
    for v in absent:
        maps[4 * v:4 * v + 4] = 0.4 * enc.encode(quads[v + 1], (H, W))
    return maps[None]


MIXED = {3: 0.6, 8: 0.5, 12: 0.7}  # three vertebrae whose channels fire harder on the vertebra below


@pytest.mark.parametrize("curve", [0.0, 30.0])  # straight, and an S curve 30 px to each side (tilts up to 40 deg)
@pytest.mark.parametrize("mode", ["assign", "peaks"])
def test_ordered_decoding_undoes_the_miscount_that_per_channel_decoding_makes(curve, mode):
    truth = spine(curve)
    maps = heatmaps(truth, MIXED)
    plain, _ = QuadraticDecoder().decode(maps)
    assert vertebra_mixups(plain.numpy() * 10, truth[None] * 10).sum() == 4 * len(MIXED)  # at 10x: > 50 px off
    pts, peak = OrderedSpineDecoder(mode=mode).decode(maps)
    np.testing.assert_allclose(pts[0].numpy(), truth, atol=0.02)
    assert peak.shape == (1, 68) and (peak[0] > 0.4).all()


def test_a_vertebra_outside_the_image_keeps_its_own_peak_and_the_others_are_exact():
    truth = spine(15.0)
    maps = heatmaps(truth, {8: 0.6}, absent=(0,))  # T1 is above the image: its channels echo T2 weakly
    pts, _ = OrderedSpineDecoder().decode(maps)
    own, _ = QuadraticDecoder().decode(maps)
    np.testing.assert_allclose(pts[0, 4:].numpy(), truth[4:], atol=0.02)  # T2 ... L5 in their place
    np.testing.assert_allclose(pts[0, :4].numpy(), own[0, :4].numpy())  # T1: no candidate of its own
    # identity from order alone cannot tell which 16 of 17 slots the 16 vertebrae fill: it keeps every own peak
    peaks, _ = OrderedSpineDecoder(mode="peaks").decode(maps)
    np.testing.assert_allclose(peaks[0].numpy(), own[0].numpy())


def test_ordered_assignment_is_increasing_and_maximal():
    scores = np.array([[0.9, 0.8, 0.0], [0.0, 1.0, 0.2], [0.0, 0.9, 0.3]])
    assert ordered_assignment(scores).tolist() == [0, 1, 2]
    # two slots want candidate 1: the order forces one of them elsewhere or unassigned
    assert ordered_assignment(np.array([[0.1, 1.0], [0.0, 1.0]])).tolist() == [0, 1]
    assert ordered_assignment(np.array([[0.0, 1.0], [0.0, 1.0]])).tolist() in ([1, -1], [-1, 1])
    assert ordered_assignment(np.zeros((3, 0))).tolist() == [-1, -1, -1]


def test_the_decoder_is_a_named_decoder_and_refuses_other_layouts():
    assert build_decoder("spine_ordered").name == "spine_ordered"
    with pytest.raises(ValueError, match="vertebrae x 4 corners"):
        OrderedSpineDecoder().decode(torch.zeros(1, 19, 32, 32))
    with pytest.raises(ValueError, match="mode"):
        OrderedSpineDecoder(mode="sorted")


def test_mixups_are_counted_as_the_issue_defines_them():
    truth = spine()[None] * 10  # vertebrae 130 px apart
    pred = truth.copy()
    pred[0, 8:12] = truth[0, 12:16]  # vertebra 3's corners on vertebra 4
    pred[0, 20] += 60.0  # 60 px off sideways, nearer its own vertebra: not a mix-up
    mixed = vertebra_mixups(pred, truth)
    assert mixed[0].tolist() == [k in range(8, 12) for k in range(68)]


@pytest.mark.parametrize("targets", ["landmarks", "spine_corners"])
def test_farnet_predict_on_spines_writes_cobb_angles_and_draws_the_end_vertebrae(tmp_path, monkeypatch, targets):
    """predict_folder with an AASCE run whose heatmaps are known (a stand-in backend; 68 per-landmark
    channels decoded in order, or the 4 corner-type channels of targets 'spine_corners'): the angles in
    cobb_angles.csv are those of the true corners, with each curve's end vertebrae named."""
    from farnetlib.spine_codec import corner_type_targets

    from PIL import Image

    from farnetlib import folder_prediction as folder
    from farnetlib.inference import Predictor, Preprocess
    from farnetlib.spine import cobb_angles_with_ends

    truth = spine(20.0)

    class KnownHeatmaps:
        name, precision = "known", "fp32"

        def __call__(self, batch):
            maps = heatmaps(truth) if targets == "landmarks" else corner_type_targets(heatmaps(truth))
            return maps.numpy().repeat(len(batch), axis=0)

    pre = Preprocess(input_size=(H, W), num_landmarks=68, landmark_names=[str(k) for k in range(68)],
                     decoder="spine_ordered" if targets == "landmarks" else "spine_corners", targets=targets,
                     dataset="aasce")
    monkeypatch.setattr(Predictor, "from_run", classmethod(lambda cls, *a, **k: Predictor(KnownHeatmaps(), pre)))
    images = tmp_path / "spines"
    images.mkdir()
    Image.fromarray(np.full((H, W), 90, np.uint8)).save(images / "s1.png")
    out = tmp_path / "out"
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "best.pt").write_bytes(b"")  # predict checks the run exists; never read here
    folder.predict_folder(tmp_path / "run", images, out, coverage=None)
    import pandas as pd

    table = pd.read_csv(out / "cobb_angles.csv")
    decoded = pd.read_csv(out / "predictions.csv").sort_values("landmark")[["x", "y"]].to_numpy()
    np.testing.assert_allclose(decoded, truth, atol=0.05)  # the ordered decoder found every corner
    angles, ends = cobb_angles_with_ends(decoded, H)
    np.testing.assert_allclose(table[["PT", "MT", "TL"]].to_numpy()[0], angles, atol=1e-6)
    names = [f"T{k}" for k in range(1, 13)] + [f"L{k}" for k in range(1, 6)]
    assert table["PT_ends"][0] == f"{names[ends[0][0]]}-{names[ends[0][1]]}"
    assert (out / "overlays" / "s1.png.png").is_file()


# --- identity-free targets: one heatmap per corner type (config targets "spine_corners") ---------------

def test_corner_type_targets_round_trip_on_straight_and_curved_spines():
    from farnetlib.heatmaps import HeatmapCodec

    for curve in (0.0, 30.0):  # an S curve 30 px to each side, vertebrae tilted up to 40 degrees
        truth = spine(curve)
        codec = HeatmapCodec((H, W), (H, W), sigma=2.0, decoder="spine_corners", targets="spine_corners",
                             num_landmarks=68)
        maps = codec.encode(truth)
        assert maps.shape == (4, H, W)  # 4 corner types, 17 unit Gaussians each
        per_landmark = GaussianHeatmapEncoder(2.0).encode(truth, (H, W))
        assert torch.equal(maps[0], per_landmark[0::4].amax(0))  # top-left corners of every vertebra
        pts, peak = codec.decode(maps[None])
        np.testing.assert_allclose(pts[0].numpy(), truth, atol=0.02)
        assert (peak > 0.9).all()
        assert not vertebra_mixups(pts.numpy() * 10, truth[None] * 10).any()


def test_corner_type_decoding_orders_the_strongest_peaks_and_ignores_weaker_spurious_ones():
    from farnetlib.spine_codec import CornerTypeDecoder, corner_type_targets

    truth = spine(20.0)
    maps = corner_type_targets(GaussianHeatmapEncoder(2.0).encode(truth, (H, W)))
    above = truth[:4].copy()
    above[:, 1] -= 13  # a vertebra above T1 (C7) with a weak response: not one of the 17
    maps = torch.maximum(maps, 0.3 * GaussianHeatmapEncoder(2.0).encode(above, (H, W)))
    pts, _ = CornerTypeDecoder(vertebrae=17).decode(maps[None])
    np.testing.assert_allclose(pts[0].numpy(), truth, atol=0.02)


def test_a_top_vertebra_cut_by_the_border_is_found_and_a_missing_one_shows_as_zero_peaks():
    from farnetlib.spine_codec import CornerTypeDecoder, corner_type_targets

    truth = spine(15.0)
    cut = truth.copy()
    cut[:4, 1] = [-1.0, -3.0, -1.5, -2.0]  # T1's corners 1-3 px above the image: only their tails are inside
    maps = corner_type_targets(GaussianHeatmapEncoder(2.0).encode(cut, (H, W)))
    pts, peak = CornerTypeDecoder(vertebrae=17).decode(maps[None])
    np.testing.assert_allclose(pts[0, 4:].numpy(), truth[4:], atol=0.02)  # T2 ... L5 in their place
    assert (pts[0, :4, 1] == 0).all()  # T1 on the border, above its neighbour
    gone = truth.copy()
    gone[:4, 1] -= 200  # far above the image: 16 vertebrae to decode into 17 slots, filled top down
    maps = corner_type_targets(GaussianHeatmapEncoder(2.0).encode(gone, (H, W)))
    pts, peak = CornerTypeDecoder(vertebrae=17).decode(maps[None])
    np.testing.assert_allclose(pts[0, :64].numpy(), truth[4:], atol=0.02)
    assert (peak[0, 64:] == 0).all()  # the slot without a peak says so


def test_corner_type_targets_and_decoder_go_together():
    from farnetlib.engine import ConfigError, TrainConfig
    from farnetlib.heatmaps import HeatmapCodec

    with pytest.raises(ValueError, match="do not go together"):
        HeatmapCodec((H, W), (H, W), 2.0, decoder="quadratic", targets="spine_corners", num_landmarks=68)
    with pytest.raises(ValueError, match="number of landmarks"):
        build_decoder("spine_corners")
    with pytest.raises(ValueError, match=r"4 corner types"):
        build_decoder("spine_corners", 68).decode(torch.zeros(1, 68, 32, 32))
    with pytest.raises(ConfigError, match="'targets'.*set both or neither"):
        TrainConfig(targets="spine_corners")
    with pytest.raises(ConfigError, match="'decoder'"):
        TrainConfig(decoder="spine_corners")
    cfg = TrainConfig(dataset="aasce", root="x", targets="spine_corners", decoder="spine_corners")
    assert cfg.heatmap_channels(68) == 4
    with pytest.raises(ConfigError, match="vertebrae x 4 corner landmarks.*37"):
        cfg.heatmap_channels(37)
    # runs from before the field keep their folder names
    assert TrainConfig().default_run_name() == TrainConfig(targets="landmarks").default_run_name()


def test_training_on_corner_type_targets_predicts_every_landmark(tmp_path):
    """A tiny run (8 synthetic landmarks = 2 'vertebrae') trains a 4-channel FARNet, records the
    landmark count, and its validation, evaluation and Predictor return all 8 landmarks."""
    import pandas as pd
    from helpers import TINY_SYNTHETIC, tiny

    from farnetlib.engine import train
    from farnetlib.engine.evaluation import load_checkpoint
    from farnetlib.inference import Predictor

    cfg = tiny(tmp_path, run_name="corners", epochs=1, dataset_options={**TINY_SYNTHETIC, "landmarks": 8},
               targets="spine_corners", decoder="spine_corners")
    run = train(cfg, progress=False)
    model, _, state = load_checkpoint(run / "checkpoints" / "best.pt", "cpu")
    assert model.num_landmarks == 4 and state["num_landmarks"] == 8  # 4 heatmaps for 8 landmarks
    preds = pd.read_csv(run / "predictions.csv")
    assert sorted(preds["landmark"].unique()) == list(range(1, 9))
    assert set(preds["split"]) == {"val", "test"} and preds["error_px"].notna().all()
    image = (np.random.default_rng(0).random((96, 80)) * 255).astype(np.uint8)
    table = Predictor.from_run(run, backend="torch").predict(image)
    assert len(table) == 8
