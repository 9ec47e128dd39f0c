import shutil

import numpy as np
import pytest
import scipy.io

from farnetlib.data import AASCESpine, DatasetError, HandXray, ISBI2015, Synthetic, write_isbi_layout
from farnetlib.data.io import read_points_txt


def test_isbi_counts_and_known_landmark(isbi_root):
    train = ISBI2015(isbi_root, "train", annotation="senior")
    test1 = ISBI2015(isbi_root, "test1")
    assert len(train) == 150 and len(test1) == 150
    assert train.ids[0] == "001" and test1.ids[0] == "151"
    np.testing.assert_array_equal(train.landmarks[0, 0], [835, 996])
    sample = train[0]
    assert sample.image.shape == (2400, 1935) and sample.image.dtype == np.uint8
    assert sample.spacing == (0.1, 0.1)


def test_isbi_mean_ground_truth_is_the_average_of_both_files(isbi_root):
    mean = ISBI2015(isbi_root, "train", annotation="mean")
    for i in (0, 77, 149):
        senior = read_points_txt(isbi_root / "AnnotationsByMD/400_senior" / f"{mean.ids[i]}.txt", 19)
        junior = read_points_txt(isbi_root / "AnnotationsByMD/400_junior" / f"{mean.ids[i]}.txt", 19)
        np.testing.assert_allclose(mean.landmarks[i], (senior + junior) / 2)
    assert mean.describe()["ground_truth"] == "mean"


def test_isbi_test2_path_works_from_the_official_layout(tmp_path):
    """Test2 is not in ../shared: build an official-layout copy (BMP, extra lines) and read it."""
    from PIL import Image

    img_dir = tmp_path / "RawImage" / "Test2Data"
    img_dir.mkdir(parents=True)
    Image.fromarray(np.full((48, 40), 90, np.uint8)).save(img_dir / "301.bmp")
    for doc, off in (("senior", 0.0), ("junior", 2.0)):
        d = tmp_path / "AnnotationsByMD" / f"400_{doc}"
        d.mkdir(parents=True)
        lines = [f"{10 + i + off:.0f},{20 + off:.0f}" for i in range(19)] + ["2", "1", "3"]  # trailing lines
        (d / "301.txt").write_text("\n".join(lines) + "\n")
    ds = ISBI2015(tmp_path, "test2")
    assert ds.ids == ["301"]
    np.testing.assert_allclose(ds.landmarks[0, 0], [11, 21])
    assert ds[0].image.shape == (48, 40)


@pytest.mark.parametrize("content,match", [
    ("1,2\n" * 18, "18 lines, expected at least 19"),
    ("1,2\n" * 5 + "oops\n" + "1,2\n" * 13, r"001.txt:6: expected 'x,y', got 'oops'"),
    ("1,2\n" * 3 + "nan,4\n" + "1,2\n" * 15, r"001.txt:4: landmark is not finite"),
])
def test_isbi_bad_annotation_names_file_and_line(tmp_path, content, match):
    src = Synthetic(1, 19, (64, 64), seed=0)
    write_isbi_layout(tmp_path, {"train": src})
    (tmp_path / "AnnotationsByMD/400_senior/001.txt").write_text(content)
    with pytest.raises(DatasetError, match=match):
        ISBI2015(tmp_path, "train")


def test_isbi_landmark_outside_image_and_corrupt_image(tmp_path):
    src = Synthetic(2, 19, (64, 64), seed=0)
    write_isbi_layout(tmp_path, {"train": src})
    (tmp_path / "AnnotationsByMD/400_senior/002.txt").write_text("500,10\n" + "5,5\n" * 18)
    (tmp_path / "AnnotationsByMD/400_junior/002.txt").write_text("500,10\n" + "5,5\n" * 18)
    # every label is checked when the source is built: the error names the file, image and landmark
    with pytest.raises(DatasetError, match=r"002.txt \(image 002\): landmark 1 at \(500.0, 10.0\) outside the 64 x 64 image"):
        ISBI2015(tmp_path, "train")
    ds = ISBI2015(tmp_path, "train", outside="keep")  # kept as annotated, and listed
    assert [(o["id"], o["landmark"]) for o in ds.outside_points] == [("002", 1)]
    assert ds[1].landmarks[0, 0] == 500.0
    (tmp_path / "RawImage/TrainingData/001.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DatasetError, match="unreadable image .*001.png"):
        ds[0]


def test_isbi_missing_folder_and_bad_arguments(tmp_path):
    with pytest.raises(DatasetError, match="image folder not found"):
        ISBI2015(tmp_path, "train")
    with pytest.raises(ValueError, match="split"):
        ISBI2015(tmp_path, "val")
    with pytest.raises(ValueError, match="annotation"):
        ISBI2015(tmp_path, "train", annotation="both")


def test_hand_reader_reports_missing_images_and_reads_the_rest(hand_root):
    with pytest.raises(DatasetError, match=r"missing from .*images.*missing='skip'"):
        HandXray(hand_root, fold=1, split="train")
    present = {p.stem for p in (hand_root / "images").iterdir()}
    total = 0
    for split in ("train", "test"):
        ds = HandXray(hand_root, fold=1, split=split, missing="skip")
        assert set(ds.ids) <= present
        assert len(ds.ids) + len(ds.missing_ids) == ds.listed_count
        total += len(ds)
    # ../shared holds 138 of the images; 135 are in Payer's lists, fold 1: 99 train + 36 test
    assert total == 99 + 36
    sample = ds[0]
    assert sample.landmarks.shape == (37, 2)
    d = np.linalg.norm(sample.landmarks[1] - sample.landmarks[5])
    assert d * sample.spacing[0] == pytest.approx(50.0)
    gu2 = HandXray(hand_root, fold=1, split=split, missing="skip", scale_pair=(0, 4))
    d04 = np.linalg.norm(gu2.landmarks[0, 0] - gu2.landmarks[0, 4])
    assert d04 * gu2.spacing(0)[0] == pytest.approx(50.0)


def test_hand_csv_errors(tmp_path):
    (tmp_path / "setup" / "cv" / "set1").mkdir(parents=True)
    (tmp_path / "setup" / "all.csv").write_text("1," + ",".join(["5"] * 73) + "\n")
    (tmp_path / "setup" / "cv" / "set1" / "train.txt").write_text("1\n")
    with pytest.raises(DatasetError, match=r"all.csv:1: 73 values for id 1, expected 74"):
        HandXray(tmp_path)


def _write_spine_fixture(root, names, shapes, k=68, bad=None):
    from PIL import Image

    base = root / "boostnet_labeldata"
    rng = np.random.default_rng(0)
    for split in ("training", "test"):
        (base / "data" / split).mkdir(parents=True)
        (base / "labels" / split).mkdir(parents=True)
    for name, (h, w) in zip(names, shapes):
        Image.fromarray(rng.integers(0, 255, (h, w), dtype=np.uint8)).save(base / "data" / "training" / f"{name}.jpg")
        p2 = np.stack([rng.uniform(0, w - 1, k), rng.uniform(0, h - 1, k)], 1).astype(np.uint16)
        scipy.io.savemat(base / "labels" / "training" / f"{name}.jpg.mat", {"p2": p2 if name != bad else p2[:60]})
    return root


def test_spine_reader_on_fixtures_in_the_distributed_format(tmp_path):
    root = _write_spine_fixture(tmp_path, ["sunhl-1 A AP", "sunhl-2 B AP"], [(300, 120), (260, 100)])
    ds = AASCESpine(root, "training")
    assert ds.ids == ["sunhl-1 A AP", "sunhl-2 B AP"]
    s = ds[1]
    assert s.image.shape == (260, 100) and s.landmarks.shape == (68, 2) and s.spacing is None
    mat = scipy.io.loadmat(root / "boostnet_labeldata/labels/training/sunhl-2 B AP.jpg.mat")
    np.testing.assert_array_equal(s.landmarks, mat["p2"])
    assert AASCESpine(root / "boostnet_labeldata", "training").ids == ds.ids  # root may be either


def test_spine_reader_errors(tmp_path):
    root = _write_spine_fixture(tmp_path, ["a", "b"], [(200, 80)] * 2, bad="b")
    with pytest.raises(DatasetError, match=r"b.jpg.mat: 'p2' has shape \(60, 2\), expected \(68, 2\)"):
        AASCESpine(root, "training")
    (root / "boostnet_labeldata/data/training/a.jpg").unlink()
    scipy.io.savemat(root / "boostnet_labeldata/labels/training/b.jpg.mat", {"p2": np.ones((68, 2))})
    with pytest.raises(DatasetError, match="1 of 2 labelled images are missing"):
        AASCESpine(root, "training")
    assert AASCESpine(root, "training", missing="skip").ids == ["b"]


def test_spine_reader_on_real_labels(aasce_root):
    ds = AASCESpine(aasce_root, "training", outside="keep")  # all 481 images are present
    assert ds.labelled_count == 481 and len(ds) == 481 and ds.missing_ids == []
    s = ds[0]
    assert s.landmarks.shape == (68, 2)
    # corners: top edge above bottom edge for the first vertebra
    assert s.landmarks[[0, 1], 1].mean() < s.landmarks[[2, 3], 1].mean()


def test_synthetic_is_deterministic_and_seed_dependent():
    a, b, c = Synthetic(3, 19, (96, 64), seed=5), Synthetic(3, 19, (96, 64), seed=5), Synthetic(3, 19, (96, 64), seed=6)
    np.testing.assert_array_equal(a.landmarks, b.landmarks)
    np.testing.assert_array_equal(a[2].image, b[2].image)
    assert not np.allclose(a.landmarks, c.landmarks)
    assert a[0].image.dtype == np.uint8 and a[0].image.std() > 10


def test_synthetic_shapes_are_correlated_not_independent():
    """Landmark displacements from the mean shape are spatially correlated (a shape model)."""
    s = Synthetic(200, 19, (128, 128), seed=1)
    disp = (s.landmarks - s.landmarks.mean(0)).reshape(200, -1)
    corr = np.corrcoef(disp.T)
    off = corr[~np.eye(len(corr), dtype=bool)]
    assert np.abs(off).mean() > 0.2


def test_synthetic_roundtrip_through_the_isbi_layout(tmp_path):
    train, test = Synthetic(4, 19, (96, 64), seed=1), Synthetic(2, 19, (96, 64), seed=2)
    write_isbi_layout(tmp_path, {"train": train, "test1": test})
    back = ISBI2015(tmp_path, "train", pixel_spacing_mm=train.spacing(0)[0])
    np.testing.assert_allclose(back.landmarks, train.landmarks, atol=1e-3)  # mean of senior/junior
    np.testing.assert_array_equal(back[3].image, train[3].image)
    assert ISBI2015(tmp_path, "test1").ids == ["005", "006"]
