import numpy as np
import pytest

from farnetlib.data.spacing import spacing_from_reference
from farnetlib.metrics import per_landmark_table, radial_errors, sdr, summarize


def test_three_four_five_triangle_is_five_px_and_half_mm():
    gt = np.zeros((1, 1, 2))
    pred = np.array([[[3.0, 4.0]]])
    assert radial_errors(pred, gt)[0, 0] == pytest.approx(5.0)
    assert radial_errors(pred, gt, spacing=0.1)[0, 0] == pytest.approx(0.5)


def test_per_axis_and_per_image_spacing():
    gt = np.zeros((2, 1, 2))
    pred = np.array([[[3.0, 4.0]], [[3.0, 4.0]]])
    e = radial_errors(pred, gt, spacing=(0.2, 0.1))
    assert e[0, 0] == pytest.approx(np.hypot(0.6, 0.4))
    e = radial_errors(pred, gt, spacing=np.array([[0.1], [1.0]]))
    np.testing.assert_allclose(e[:, 0], [0.5, 5.0])
    with pytest.raises(ValueError, match=r"\(2, 1\)"):
        radial_errors(pred, gt, spacing=np.array([0.1, 1.0, 2.0]))


def test_sdr_includes_the_boundary_radius():
    errors = np.array([[2.0, 2.0001, 1.0, 4.0]])
    rates = sdr(errors, radii=(2.0, 4.0))
    assert rates[2.0] == pytest.approx(50.0)
    assert rates[4.0] == pytest.approx(100.0)


def test_summary_and_per_landmark_table():
    errors = np.array([[1.0, 3.0], [2.0, 5.0]])
    s = summarize(errors, radii=(2.0,))
    assert s["mre"] == pytest.approx(2.75)
    assert s["sd"] == pytest.approx(np.std([1, 3, 2, 5]))
    assert s["sdr_2"] == pytest.approx(50.0)
    table = per_landmark_table(errors, radii=(2.0, 4.0), names=["Sella", "Nasion"])
    assert list(table.index) == ["Sella", "Nasion", "all"]
    assert table.loc["Sella", "mre"] == pytest.approx(1.5)
    assert table.loc["Nasion", "sdr_4"] == pytest.approx(50.0)
    assert table.loc["all", "mre"] == pytest.approx(2.75)


def test_hand_spacing_from_the_50mm_pair():
    gt = np.zeros((1, 6, 2))
    gt[0, 1] = [100.0, 100.0]
    gt[0, 5] = [100.0, 600.0]  # 500 px apart
    np.testing.assert_allclose(spacing_from_reference(gt), [[0.1, 0.1]])
    gt[0, 0] = [0.0, 0.0]
    gt[0, 4] = [0.0, 250.0]
    np.testing.assert_allclose(spacing_from_reference(gt, pair=(0, 4)), [[0.2, 0.2]])


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="NaN.*image 0, landmark 1"):
        radial_errors(np.array([[[0, 0], [np.nan, 1]]]), np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="shapes differ"):
        radial_errors(np.zeros((1, 2, 2)), np.zeros((1, 3, 2)))
    with pytest.raises(ValueError, match=r"\(N, K, 2\)"):
        radial_errors(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="spacing"):
        radial_errors(np.zeros((1, 1, 2)), np.zeros((1, 1, 2)), spacing=-1)
    with pytest.raises(ValueError, match="coincide"):
        spacing_from_reference(np.zeros((1, 6, 2)))


def test_learning_curve_references_from_the_paper_and_reference_runs():
    """An overnight run's curve gets the paper's test MRE and the 60-minute protocol's reported
    validation MRE as lines; the paper's line only in mm; references of another dataset or fold are
    left to their own runs (the fold also read from old run folders' flat ``hand_fold``); one in
    another unit is refused."""
    from farnetlib.reporting import curve_references

    def run(dataset, unit, mre, name, fold=None):
        return {"name": name, "path": f"results/{name}", "metrics": {"splits": {"val": {"unit": unit, "mre": mre}}},
                "config": {"dataset": dataset, "dataset_options": {"fold": fold} if fold else {}}}

    overnight = run("isbi2015", "mm", 1.1, "overnight")
    refs = {"60-minute protocol": run("isbi2015", "mm", 1.241, "cpu"), "spine": run("aasce", "px", 40.0, "spine")}
    assert curve_references(overnight, ("test1", 1.12), refs) == {
        "paper, test1 (GPU, ImageNet weights)": 1.12, "60-minute protocol (validation, selected epoch)": 1.241}
    assert curve_references(run("aasce", "px", 30.0, "spine night"), ("test", 1.0), refs) == {
        "spine (validation, selected epoch)": 40.0}  # no paper line in px
    folds = {f"60 min, fold {k}": run("hand_xray", "mm", 1.0 + k / 10, f"h{k}", fold=k) for k in (1, 2, 3)}
    assert curve_references(run("hand_xray", "mm", 0.9, "night-fold2", fold=2), None, folds) == {
        "60 min, fold 2 (validation, selected epoch)": 1.2}
    legacy = {f"old, fold {k}": {**run("hand_xray", "mm", 2.0 + k / 10, f"o{k}"),
                                 "config": {"dataset": "hand_xray", "hand_fold": k}} for k in (1, 2, 3)}
    assert curve_references(run("hand_xray", "mm", 0.9, "night-fold3", fold=3), None, legacy) == {
        "old, fold 3 (validation, selected epoch)": 2.3}  # farnet <= 0.2 run folders: flat hand_fold
    with pytest.raises(ValueError, match="reference run 'px copy'.*reports px"):
        curve_references(overnight, None, {"px copy": run("isbi2015", "px", 12.0, "px")})


def test_learning_curve_shades_the_epochs_trained_below_full_size_and_zooms_past_them():
    """Progressive resizing: the half-size epochs' validation (run at full size) is tens of mm off, so
    the figure shades them, says so, and cuts the y axis at 3x the best epoch instead of at them."""
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from farnetlib.plots import learning_curve

    history = pd.DataFrame({"epoch": range(1, 7), "val_mre": [60.0, 30.0, 25.0, 2.0, 1.3, 1.2],
                            "epoch_seconds": [40.0] * 3 + [120.0] * 3, "train_size": ["96x80"] * 3 + ["192x160"] * 3})
    fig = learning_curve(history, references={"paper": 1.12})
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert any(label.startswith("trained at 96x80 (validation at full size") for label in labels)
    assert all(ax.get_ylim()[1] == pytest.approx(3.6) for ax in fig.axes[:2])
    plain = learning_curve(history.assign(train_size="192x160"))
    assert not any("trained at" in label for label in plain.axes[0].get_legend_handles_labels()[1])
    assert plain.axes[0].get_ylim()[1] > 60
