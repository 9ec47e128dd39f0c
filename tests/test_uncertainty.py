"""Bootstrap intervals, paired comparisons and conformal radii against cases with known answers."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from farnetlib.uncertainty import (conformal_radii, coverage, errors_matrix, format_interval, metric_intervals,
                                   paired_comparison, per_landmark_intervals)


def test_the_bootstrap_interval_of_the_mre_matches_the_normal_theory_one():
    rng = np.random.default_rng(1)
    n, sd = 400, 0.8
    per_image = rng.normal(1.5, sd, size=n)
    errors = np.repeat(per_image[:, None], 3, axis=1)  # landmarks of an image move together
    table = metric_intervals(errors, radii=[2.0], resamples=4000)
    half = table.loc["mre", "upper"] - table.loc["mre", "lower"]
    expected = 2 * 1.96 * per_image.std(ddof=1) / np.sqrt(n)  # images, not the 3n landmarks, are the sample
    assert half == pytest.approx(expected, rel=0.1)
    assert table.loc["mre", "lower"] < table.loc["mre", "value"] < table.loc["mre", "upper"]
    assert set(table.index) == {"mre", "sd", "sdr_2"} and table.attrs["n_images"] == n


@pytest.mark.parametrize("missing", [False, True])
def test_the_vectorised_bootstrap_draws_are_summarize_of_each_resample(missing):
    """metric_intervals summarises all resamples at once (in blocks): the same numbers as calling
    metrics.summarize on each resampled set of images, missing landmarks left out as there."""
    from farnetlib.metrics import summarize
    from farnetlib.uncertainty import RESAMPLES, SEED

    rng = np.random.default_rng(3)
    errors = rng.gamma(2.0, 0.7, size=(40, 6))
    if missing:
        errors[rng.random(errors.shape) < 0.15] = np.nan
    radii = [1.0, 2.0, 4.0]
    table = metric_intervals(errors, radii)
    names = ["mre", "sd", "sdr_1", "sdr_2", "sdr_4"]
    loop = np.array([[summarize(errors[i], radii)[m] for m in names]
                     for i in np.random.default_rng(SEED).integers(0, len(errors), size=(RESAMPLES, len(errors)))])
    lo, hi = np.percentile(loop, [2.5, 97.5], axis=0)
    np.testing.assert_allclose(table.loc[names, "lower"], lo, rtol=0, atol=1e-12)
    np.testing.assert_allclose(table.loc[names, "upper"], hi, rtol=0, atol=1e-12)
    assert table.loc["sdr_4", "upper"] > table.loc["sdr_1", "upper"]  # not one column repeated


def test_intervals_are_seeded_and_per_landmark_rows_cover_each_landmark():
    errors = np.random.default_rng(2).gamma(2.0, 0.7, size=(50, 4))
    a = per_landmark_intervals(errors, names=list("abcd"), seed=7)
    b = per_landmark_intervals(errors, names=list("abcd"), seed=7)
    pd.testing.assert_frame_equal(a, b)
    assert (a["lower"] <= a["mre"]).all() and (a["mre"] <= a["upper"]).all()
    assert format_interval(1.5712, 1.4371, 1.7104) == "1.57 [1.44, 1.71]"


def test_the_paired_comparison_of_constructed_runs_gives_the_exact_values():
    a = np.tile(np.arange(1.0, 11.0)[:, None], (1, 2))  # 10 images, per-image MRE 1..10
    b = a - 0.5  # B better by 0.5 mm on every image
    result = paired_comparison(a, b)
    assert result.difference == pytest.approx(-0.5) and result.lower == pytest.approx(-0.5)
    assert result.upper == pytest.approx(-0.5) and result.n_images == 10
    # all 10 differences of one sign: the exact two-sided signed-rank p is 2 / 2^10
    assert result.wilcoxon_p == pytest.approx(2 / 2 ** 10)
    c = a.copy()
    c[:, :] += np.array([0.3, -0.1, 0.2, -0.4, 0.5, -0.6, 0.7, -0.8, 0.9, -1.0])[:, None]
    mixed = paired_comparison(a, c)
    assert mixed.wilcoxon_p == pytest.approx(stats.wilcoxon(c.mean(1) - a.mean(1)).pvalue)
    assert mixed.lower < 0 < mixed.upper  # no difference beyond the noise
    with pytest.raises(ValueError, match="same images"):
        paired_comparison(a, a[:5])


def test_split_conformal_radii_cover_one_minus_alpha_over_many_simulated_splits():
    rng = np.random.default_rng(3)
    alpha, covered = 0.1, []
    for _ in range(400):
        scale = np.array([0.5, 1.0, 3.0])  # three landmarks of different difficulty
        val = rng.rayleigh(scale, size=(40, 3))
        test = rng.rayleigh(scale, size=(100, 3))
        covered.append(coverage(test, conformal_radii(val, alpha)).loc["all", "coverage_%"])
    assert np.mean(covered) == pytest.approx(100 * (1 - alpha), abs=2.0)


def test_peak_scaled_radii_are_smaller_where_the_heatmap_is_confident():
    rng = np.random.default_rng(4)
    peaks = rng.uniform(0.2, 1.0, size=(2000, 1))
    errors = rng.rayleigh(0.5 / peaks)  # a low peak goes with a large error
    val, test = slice(0, 1000), slice(1000, None)
    q = conformal_radii(errors[val], 0.1, val_peaks=peaks[val])
    table = coverage(errors[test], q, peaks=peaks[test])
    assert table.loc["all", "coverage_%"] == pytest.approx(90, abs=3)
    radius = q[0] / peaks[test, 0]
    assert radius[peaks[test, 0] > 0.8].mean() < radius[peaks[test, 0] < 0.4].mean()
    assert conformal_radii(errors[:5], 0.1)[0] == np.inf  # 5 images cannot give a 90 % guarantee


def test_errors_matrix_reads_a_split_of_a_predictions_table():
    rows = [{"split": s, "id": i, "landmark": k, "error_mm": float(10 * int(i) + k)}
            for s in ("val", "test1") for i in ("002", "001") for k in (1, 2)]
    ids, e = errors_matrix(pd.DataFrame(rows), "test1")
    assert ids == ["001", "002"] and e.tolist() == [[11.0, 12.0], [21.0, 22.0]]
    with pytest.raises(ValueError, match="no predictions for split 'test2'"):
        errors_matrix(pd.DataFrame(rows), "test2")


def test_ablation_paired_tests_compare_each_arm_with_the_reference_on_the_same_images():
    from farnetlib.ablation import paired_tests

    def run(name, offset):
        rows = [{"split": "test1", "id": f"{i:03d}", "landmark": k, "error_mm": 1.0 + 0.1 * i + offset}
                for i in range(12) for k in (1, 2)]
        return {"name": name, "predictions": pd.DataFrame(rows), "metrics": {"splits": {"test1": {"unit": "mm"}}}}

    table = paired_tests([run("ref", 0.0), run("worse", 0.25), run("same", 0.0)], "ref", "test1")
    assert table.loc["worse", "difference"] == pytest.approx(0.25)
    assert table.loc["worse", "wilcoxon_p"] == pytest.approx(2 / 2 ** 12)
    assert table.loc["same", "difference"] == 0 and table.loc["same", "wilcoxon_p"] == 1.0
    with pytest.raises(ValueError, match="no run named"):
        paired_tests([run("a", 0)], "ref", "test1")


def test_predict_writes_each_landmarks_conformal_radius(tmp_path):
    """`farnet predict` adds the 90 % split-conformal radius per landmark, from the run's validation errors."""
    from PIL import Image

    from helpers import TINY_SYNTHETIC, tiny

    from farnetlib.data import Synthetic
    from farnetlib.engine import train
    from farnetlib.folder_prediction import predict_folder

    run_dir = train(tiny(tmp_path, run_name="r", epochs=1, val_count=9,
                         dataset_options={**TINY_SYNTHETIC, "train": 14}), progress=False)
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(Synthetic(1, 5, (96, 80), seed=5).read_image(0)).save(images / "new.png")
    table = predict_folder(run_dir, images, tmp_path / "out", progress=False)
    val = pd.read_csv(run_dir / "predictions.csv", dtype={"id": str})
    _, errors = errors_matrix(val, "val", "error_px")
    expected = np.sort(errors, axis=0)[8]  # n = 9, alpha 0.1: rank ceil(10 x 0.9) = 9
    np.testing.assert_allclose(table.sort_values("landmark")["radius_px"].to_numpy(), expected)
    assert table.attrs["radii"] == {"coverage": 0.9, "validation_images": 9, "method": "split conformal"}
    written = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert "radius_px" in written and (tmp_path / "out" / "overlays" / "new.png.png").is_file()
    assert "radius_px" not in predict_folder(run_dir, images, tmp_path / "none", progress=False, coverage=None,
                                             overlays=False)


def test_conformal_radii_and_coverage_leave_missing_labels_out():
    rng = np.random.default_rng(3)
    val = rng.gamma(2.0, 1.0, (40, 3))
    holey = val.copy()
    holey[:9, 1] = np.nan  # landmark 2 labelled on 31 of 40 images
    radii = conformal_radii(holey, alpha=0.1)
    assert radii[0] == conformal_radii(val[:, [0]], alpha=0.1)[0]
    assert radii[1] == conformal_radii(val[9:, [1]], alpha=0.1)[0]  # the rank from its own 31 labels
    assert np.array_equal(conformal_radii(val, alpha=0.1), conformal_radii(val.copy(), alpha=0.1))
    test = np.array([[0.5, np.nan, 9.0], [9.0, 0.1, 0.1]])
    table = coverage(test, np.array([1.0, 1.0, 1.0]))
    assert table.loc["2", "coverage_%"] == 100.0  # one labelled error, inside; the missing one not a miss
    assert table.loc["all", "coverage_%"] == pytest.approx(100 * 3 / 5)
    assert np.isinf(conformal_radii(np.full((5, 1), np.nan), alpha=0.1)).all()
