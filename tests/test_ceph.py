"""The cephalometric analysis (farnetlib.ceph): every measurement on constructed geometry with known
angles, both signs of every compound term, every class boundary, SCR, and the junior-vs-senior
reference on the real ISBI annotations."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from farnetlib import ceph
from farnetlib.ceph import ISBI2015_ANALYSIS as ISBI

S, N, OR, PO, A, B, POG, ME, GN, GO, LIT, UIT, PNS, ANS = 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 17, 18


def at(r: float, deg: float, origin=(0.0, 0.0)) -> tuple[float, float]:
    """A point at distance r from origin, at ``deg`` degrees measured from +x towards +y (image y down)."""
    return origin[0] + r * math.cos(math.radians(deg)), origin[1] + r * math.sin(math.radians(deg))


def face(**points) -> np.ndarray:
    """19 landmarks, all at distinct dummy places except those given (1-based name -> (x, y))."""
    pts = np.array([[100.0 + 37 * k, 900.0 + 11 * k] for k in range(19)])
    for key, xy in points.items():
        pts[int(key[1:]) - 1] = xy
    return pts


def value(pts: np.ndarray, name: str, coordinates: str = "float") -> float:
    return float(ceph.measure(pts, coordinates=coordinates)[name].iloc[0])


NX = (1000.0, 1000.0)


def test_sna_snb_anb_are_angles_at_nasion_and_anb_is_signed():
    # N->S points to -x (180 deg); A at 180 - 82 deg from +x, i.e. 82 deg from N->S; B at 78 deg
    pts = face(p1=at(700, 180, NX), p2=NX, p5=at(600, 180 - 82, NX), p6=at(900, 180 - 78, NX))
    assert value(pts, "SNA") == pytest.approx(82.0)
    assert value(pts, "SNB") == pytest.approx(78.0)
    assert value(pts, "ANB") == pytest.approx(4.0)
    swapped = face(p1=at(700, 180, NX), p2=NX, p5=at(600, 180 - 78, NX), p6=at(900, 180 - 82, NX))
    assert value(swapped, "ANB") == pytest.approx(-4.0)  # B ahead of A: negative, class III


@pytest.mark.parametrize("tilt, sign", [(5.0, 1), (-5.0, -1)])
def test_odi_adds_the_palatal_plane_angle_with_the_sign_of_its_cross_product(tilt, sign):
    # Me->Go vs B->A: 70 deg; Po->Or along +x, PNS->ANS tilted by `tilt` deg (positive: towards +y)
    me = (1500.0, 2000.0)
    b = (1400.0, 1500.0)
    pts = face(p8=me, p10=at(500, 180.0, me), p6=b, p5=at(300, 250.0, b),  # B->A at 250 deg: 70 from Me->Go
               p4=(600.0, 1100.0), p3=(1300.0, 1100.0), p17=(900.0, 1300.0), p18=at(400, tilt, (900.0, 1300.0)))
    assert value(pts, "ODI") == pytest.approx(70.0 + sign * 5.0)


@pytest.mark.parametrize("ab_deg, second", [(100.0, -10.0), (80.0, 10.0)])
@pytest.mark.parametrize("tilt, third", [(3.0, 3.0), (-3.0, -3.0)])
def test_apdi_signs_both_compound_terms(ab_deg, second, tilt, third):
    # Or->Po along -x; N->Pog at 90 deg (straight down): the first term is 90 deg
    n = (1400.0, 1000.0)
    pts = face(p3=(1300.0, 1100.0), p4=(600.0, 1100.0), p2=n, p7=at(900, 90.0, n),
               p5=(1450.0, 1500.0), p17=(900.0, 1300.0), p18=at(400, tilt, (900.0, 1300.0)))
    # A->B at ab_deg: the angle to N->Pog (90 deg) is |ab_deg - 90| = 10; the cross product of
    # (0, 1) x (cos, sin) is -cos: positive for ab_deg > 90, where the code negates the term
    pts[B - 1] = at(300, ab_deg, pts[A - 1])
    assert value(pts, "APDI") == pytest.approx(90.0 + second + third)


def test_fhi_is_posterior_over_anterior_face_height():
    pts = face(p1=(800.0, 1000.0), p10=(800.0, 1700.0), p2=(1400.0, 1000.0), p8=(1400.0, 2000.0))
    assert value(pts, "FHI") == pytest.approx(0.7)


def test_fma_is_the_challenge_angle_between_sn_and_go_gn():
    go = (900.0, 1800.0)
    pts = face(p1=(800.0, 1000.0), p2=(1400.0, 1000.0), p10=go, p9=at(600, 29.0, go))
    assert value(pts, "FMA") == pytest.approx(29.0)
    pts[ME - 1] = at(600, 45.0, go)  # the textbook FMA would read Me: the challenge's does not
    assert value(pts, "FMA") == pytest.approx(29.0)


@pytest.mark.parametrize("dx, mm, cls", [(30.0, 3.0, 1), (20.0, 2.0, 1), (45.0, 4.5, 1), (46.0, 4.6, 4), (19.0, 1.9, 3),
                                         (0.0, 0.0, 2), (-10.0, -1.0, 3)])
def test_mw_is_the_signed_incisal_distance_in_mm(dx, mm, cls):
    pts = face(p11=(1500.0, 1600.0), p12=(1500.0 + dx, 1600.0))
    row = ceph.measure(pts, coordinates="integer")
    assert row["MW"].iloc[0] == pytest.approx(mm)
    assert row["MW_class"].iloc[0] == cls


# the classes of each side of each range, as the challenge's angle.py assigns them
SIDES = {"ANB": (3, 2), "SNB": (2, 3), "SNA": (3, 2), "ODI": (3, 2), "APDI": (2, 3), "FHI": (3, 2), "FMA": (3, 2),
         "MW": (3, 4)}


@pytest.mark.parametrize("name", list(SIDES))
def test_every_boundary_belongs_to_the_normal_class_and_each_side_to_the_challenge_class(name):
    m = ISBI[name]
    below, above = SIDES[name]
    eps = 1e-9
    values = np.array([m.low - eps, m.low, (m.low + m.high) / 2, m.high, m.high + eps, np.nan])
    assert ceph.classify(values, m).tolist() == [below, 1, 1, 1, above, 0]


def test_coordinates_are_truncated_as_the_challenge_does_unless_float():
    pts = face(p11=(1500.9, 1600.0), p12=(1520.6, 1600.0))
    assert value(pts, "MW", "integer") == pytest.approx(2.0)  # int(1520.6) - int(1500.9) = 20 px
    assert value(pts, "MW", "float") == pytest.approx(1.97)


def challenge_reference(points: np.ndarray) -> list[float]:
    """An independent loop-and-math re-statement of the challenge's arithmetic (0-based indices as
    there), to compare the vectorised implementation against on random faces."""
    p = [(int(x), int(y)) for x, y in points]
    vec = lambda i, j: (p[j][0] - p[i][0], p[j][1] - p[i][1])  # noqa: E731
    ang = lambda u, v: math.degrees(math.acos((u[0] * v[0] + u[1] * v[1]) / (math.hypot(*u) * math.hypot(*v))))  # noqa: E731
    cross = lambda u, v: u[0] * v[1] - u[1] * v[0]  # noqa: E731
    sna, snb = ang(vec(1, 0), vec(1, 4)), ang(vec(1, 0), vec(1, 5))
    t = ang(vec(3, 2), vec(16, 17)) * (-1 if cross(vec(3, 2), vec(16, 17)) < 0 else 1)
    odi = ang(vec(7, 9), vec(5, 4)) + t
    u = ang(vec(1, 6), vec(4, 5)) * (-1 if cross(vec(1, 6), vec(4, 5)) > 0 else 1)
    apdi = ang(vec(2, 3), vec(1, 6)) + u + t
    fhi = math.hypot(*vec(0, 9)) / math.hypot(*vec(1, 7))
    fma = ang(vec(0, 1), vec(9, 8))
    mw = math.hypot(*vec(10, 11)) / 10 * (-1 if p[11][0] < p[10][0] else 1)
    return [sna - snb, snb, sna, odi, apdi, fhi, fma, mw]


def test_matches_a_plain_restatement_of_the_challenge_code_on_random_faces():
    rng = np.random.default_rng(0)
    faces = rng.uniform(200, 1800, size=(200, 19, 2))
    table = ceph.measure(faces)
    expected = np.array([challenge_reference(f) for f in faces])
    np.testing.assert_allclose(table[ISBI.names].to_numpy(), expected, rtol=0, atol=1e-9)


def test_coincident_points_give_nan_and_class_zero_not_an_error():
    pts = face(p11=(1500.0, 1600.0), p12=(1500.0, 1600.0), p1=(800.0, 1000.0), p2=(800.0, 1000.0))
    row = ceph.measure(pts).iloc[0]
    assert math.isnan(row["SNA"]) and row["SNA_class"] == 0
    assert row["MW_class"] == 2  # 0 mm is a value (edge to edge), not a failure


def test_scr_is_the_mean_per_class_recall_over_classes_present_in_the_truth():
    truth = np.array([1, 1, 1, 1, 2, 2, 3, 3])
    pred = np.array([1, 1, 1, 2, 2, 1, 3, 3])
    assert ceph.scr(truth, pred, [1, 2, 3]) == pytest.approx(100 * (0.75 + 0.5 + 1.0) / 3)
    # class 4 never occurs in the truth: left out of the mean, not counted as 0
    assert ceph.scr(truth, pred, [1, 2, 3, 4]) == pytest.approx(100 * (0.75 + 0.5 + 1.0) / 3)
    table = ceph.confusion(truth, pred, [1, 2, 3])
    assert table.to_numpy().tolist() == [[3, 1, 0], [1, 1, 0], [0, 0, 2]]


def test_score_of_perfect_predictions_is_100_and_intervals_bracket_the_value():
    rng = np.random.default_rng(1)
    faces = rng.uniform(200, 1800, size=(40, 19, 2))
    s = ceph.score(faces, faces, intervals=True)
    assert (s.table["scr_%"] == 100).all() and (s.table.loc[ISBI.names, "mae"] == 0).all()
    noisy = ceph.score(faces + rng.normal(0, 30, faces.shape), faces, intervals=True)
    t = noisy.table
    assert (t["scr_lower"] <= t["scr_%"] + 1e-9).all() and (t["scr_%"] <= t["scr_upper"] + 1e-9).all()
    assert t.loc["mean", "scr_%"] == pytest.approx(t.loc[ISBI.names, "scr_%"].mean())


def test_an_analysis_is_data_a_json_file_round_trips_and_bad_files_name_themselves(tmp_path):
    path = tmp_path / "isbi.json"
    path.write_text(json.dumps(ISBI.to_dict()))
    assert ceph.load_analysis(path) == ISBI
    # a clinic's own: SN to the mandibular plane (Go-Me), Steiner's SN-GoGn style, without code
    own = {"name": "clinic", "num_landmarks": 19, "measurements": [
        {"name": "SN-GoMe", "kind": "angles", "unit": "deg", "low": 27, "high": 37, "below": 3, "above": 2,
         "terms": [{"a": [1, 2], "b": [10, 8]}], "class_names": {"1": "normal", "2": "high", "3": "low"}}]}
    (tmp_path / "clinic.json").write_text(json.dumps(own))
    analysis = ceph.get_analysis(str(tmp_path / "clinic.json"))
    go = (900.0, 1800.0)
    pts = face(p1=(800.0, 1000.0), p2=(1400.0, 1000.0), p10=go, p8=at(600, 33.0, go))
    row = ceph.measure(pts, analysis, coordinates="float").iloc[0]
    assert row["SN-GoMe"] == pytest.approx(33.0) and row["SN-GoMe_class"] == 1
    (tmp_path / "bad.json").write_text(json.dumps({**own, "measurements": [{**own["measurements"][0], "terms": [
        {"a": [1, 2], "b": [10, 20]}]}]}))
    with pytest.raises(ValueError, match=r"bad.json.*landmarks \[20\] outside 1..19"):
        ceph.load_analysis(tmp_path / "bad.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="broken.json"):
        ceph.load_analysis(tmp_path / "broken.json")
    with pytest.raises(ValueError, match="unknown cephalometric analysis 'steiner'"):
        ceph.get_analysis("steiner")


def test_clinical_metrics_from_a_predictions_table():
    rng = np.random.default_rng(2)
    truth = rng.uniform(200, 1800, size=(6, 19, 2))
    ids = [f"{i:03d}" for i in range(6)]
    rows = [{"id": i, "landmark": k + 1, "pred_x": truth[n, k, 0], "pred_y": truth[n, k, 1]}
            for n, i in enumerate(ids) for k in range(19)]
    preds = pd.DataFrame(rows).sample(frac=1, random_state=0)  # order must not matter
    m = ceph.clinical_metrics(preds, truth[::-1], ids[::-1], "senior", junior=truth, senior=truth)
    assert m["mean_scr_%"] == 100 and m["class_ground_truth"] == "senior" and m["n_images"] == 6
    assert m["junior_vs_senior"]["mean_scr_%"] == 100
    with pytest.raises(ValueError, match="no ground-truth landmarks for images"):
        ceph.clinical_metrics(preds, truth[:3], ids[:3], "senior")


def test_junior_against_senior_on_test1_is_the_human_reference(isbi_root):
    from farnetlib.data import open_dataset

    src = open_dataset("isbi2015", isbi_root, "test1")
    s = ceph.score(src.doctor_landmarks["junior"], src.doctor_landmarks["senior"], ids=src.ids)
    t = s.table
    assert 70 < t.loc["mean", "scr_%"] < 80  # "about 75 %" (Test1, 150 images)
    assert t.loc["MW", "scr_%"] > t.loc["FHI", "scr_%"] and t.loc["MW", "scr_%"] > t.loc["ANB", "scr_%"]
    assert "2: 3 " in t.loc["FHI", "truth_counts"] + " "  # FHI class 2: 3 of 150 images
    assert int(s.confusions["FHI"].to_numpy().sum()) == 150


# --- where the analysis shows up: evaluation, farnet predict, the Predictor ---------------------------

@pytest.fixture(scope="module")
def ceph_run(tmp_path_factory):
    """A tiny finished run on a generic CSV dataset of 19 landmarks whose dataset.json names the
    ISBI analysis (and a fixed spacing), as a clinic's own cephalograms would."""
    from helpers import tiny

    from farnetlib.data.convert import write_demo_dataset
    from farnetlib.engine import train

    tmp = tmp_path_factory.mktemp("ceph")
    root = tmp / "cephs"
    write_demo_dataset(root, 12, 19, (96, 80), splits=["train"] * 9 + ["test"] * 3)
    info = json.loads((root / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps({**info, "analysis": "isbi2015", "spacing": 0.5}))
    cfg = tiny(tmp, dataset="csv", root=str(root), run_name="ceph", epochs=1, val_count=3)
    return train(cfg, progress=False), root


def test_evaluation_adds_the_clinical_block(ceph_run):
    run_dir, _ = ceph_run
    splits = json.loads((run_dir / "metrics.json").read_text())["splits"]
    for split in ("val", "test"):
        block = splits[split]["clinical"]
        assert block["analysis"] == "isbi2015" and block["class_ground_truth"] == "labelled"
        assert block["n_images"] == splits[split]["n_images"]
        assert 0 <= block["mean_scr_%"] <= 100 and "junior_vs_senior" not in block  # one rater only


def test_farnet_predict_writes_measurements_and_draws_the_planes(ceph_run, tmp_path):
    import subprocess
    import sys

    run_dir, root = ceph_run
    out = tmp_path / "pred"
    proc = subprocess.run([sys.executable, "-m", "farnetlib.engine.cli", "predict", str(run_dir), str(root / "images"),
                           "--out", str(out), "--backend", "torch"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(out / "measurements.csv", dtype={"image": str})
    images = sorted(p.name for p in (root / "images").iterdir())
    assert sorted(table["image"]) == images
    assert list(table.columns[1:]) == [c for n in ISBI.names for c in (n, f"{n}_class")]
    assert set(table["ANB_class"]) <= {0, 1, 2, 3}
    assert len(list((out / "overlays").glob("*.png"))) == len(images)
    preds = pd.read_csv(out / "predictions.csv", dtype={"image": str})
    first = preds[preds["image"] == images[0]].sort_values("landmark")[["x", "y"]].to_numpy()
    expected = ceph.measure(first, spacing_mm=0.5, coordinates="float")
    np.testing.assert_allclose(table.iloc[0][ISBI.names].to_numpy(float), expected[ISBI.names].iloc[0].to_numpy(float),
                               rtol=1e-6, equal_nan=True)


def test_the_predictor_gives_measurements_where_the_run_has_an_analysis(ceph_run, tiny_run):
    from farnetlib.inference import Predictor

    run_dir, root = ceph_run
    image = sorted((root / "images").iterdir())[0]
    p = Predictor.from_run(run_dir, backend="torch")
    table = p.predict(image)
    row = table.attrs["measurements"]
    assert list(row) == [c for n in ISBI.names for c in (n, f"{n}_class")]
    np.testing.assert_allclose([row[n] for n in ISBI.names],
                               ceph.measure(table[["x", "y"]].to_numpy(), spacing_mm=0.5, coordinates="float")[ISBI.names]
                               .to_numpy(float)[0], equal_nan=True)
    assert "x_mm" in table  # the dataset.json spacing is the fixed spacing
    plain = Predictor.from_run(tiny_run, backend="torch")  # synthetic: no analysis
    assert plain.analysis is None and "measurements" not in plain.predict(image).attrs
    with pytest.raises(ValueError, match="no cephalometric analysis"):
        plain.measure(np.zeros((1, 5, 2)))
