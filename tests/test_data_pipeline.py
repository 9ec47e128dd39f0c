import shutil

import numpy as np
import pytest
from scipy.ndimage import maximum_position

from farnetlib.data import Augment, ImageCache, LandmarkDataset, Synthetic, verify
from farnetlib.data.transforms import resize_sample, to_tensor


def test_augmentation_moves_landmarks_with_the_image():
    """Draw a bright dot at each landmark, transform, and find each dot within 1 px."""
    rng = np.random.default_rng(0)
    h, w = 160, 128
    pts = np.stack([rng.uniform(40, w - 40, 6), rng.uniform(40, h - 40, 6)], 1)
    aug = Augment(rotation_deg=15, scale=(0.85, 1.15), translate=0.08)
    for trial in range(5):
        m = aug.matrix((h, w), np.random.default_rng(trial))
        for k, (x, y) in enumerate(pts):
            img = np.zeros((h, w), np.float32)
            yy, xx = np.mgrid[0:h, 0:w]
            img += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.5 ** 2))  # a sub-pixel dot
            out, moved = aug.geometric(img, pts, m)
            r, c = maximum_position(out)
            assert abs(c - moved[k, 0]) <= 1.0 and abs(r - moved[k, 1]) <= 1.0


def test_intensity_augmentation_stays_in_range_and_changes_image():
    aug = Augment()
    img = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    out = aug.intensity(img, np.random.default_rng(1))
    assert out.min() >= 0 and out.max() <= 1 and not np.allclose(out, img)


def test_resize_maps_landmarks_per_axis():
    img = np.zeros((200, 100), np.uint8)
    img[150, 80] = 255
    small, pts = resize_sample(img, np.array([[80.0, 150.0]]), (100, 100))
    assert small.shape == (100, 100)
    np.testing.assert_allclose(pts, [[(80.5) * 1.0 - 0.5, 150.5 * 0.5 - 0.5]])


def test_to_tensor_normalisations():
    x = to_tensor(np.full((4, 4), 0.485, np.float32))
    assert x.shape == (3, 4, 4) and abs(x[0].mean().item()) < 1e-6
    ref = to_tensor(np.full((4, 4), 1.0, np.float32), intensity_range="0-255")
    assert ref[0, 0, 0].item() == pytest.approx((255 - 0.485) / 0.229, rel=1e-5)


def test_dataset_items_and_augmentation_is_reproducible():
    src = Synthetic(4, 5, (120, 100), seed=0)
    ds = LandmarkDataset(src, (64, 64), augment=Augment(), seed=3)
    a, b = ds[1], ds[1]
    assert a["image"].shape == (3, 64, 64) and a["landmarks"].shape == (5, 2)
    assert np.allclose(a["image"], b["image"])
    ds.set_epoch(1)
    assert not np.allclose(ds[1]["image"], a["image"])
    plain = LandmarkDataset(src, (64, 64))[1]
    expected = (src.landmarks[1] + 0.5) * [64 / 100, 64 / 120] - 0.5
    np.testing.assert_allclose(plain["landmarks"].numpy(), expected, atol=1e-4)
    with pytest.raises(ValueError, match="multiples of 32"):
        LandmarkDataset(src, (60, 64))


def test_clahe_raises_local_contrast_and_is_the_same_in_training_and_inference():
    from farnetlib.data.transforms import adjust_contrast, image_to_input, resize_image

    rng = np.random.default_rng(0)
    dim = (100 + 20 * rng.random((128, 96))).astype(np.uint8)  # a dull image: values 100..119
    dim[:, 48:] += 10
    out = adjust_contrast(dim, "clahe")
    assert out.dtype == np.uint8 and out.shape == dim.shape
    assert out.std() > 3 * dim.std() and out.max() - out.min() > 100
    assert adjust_contrast(dim, "none") is dim
    with pytest.raises(ValueError, match="contrast must be one of"):
        adjust_contrast(dim, "equalise")
    src = Synthetic(2, 5, (120, 100), seed=0)
    item = LandmarkDataset(src, (64, 64), contrast="clahe")[1]["image"]
    plain = LandmarkDataset(src, (64, 64))[1]["image"]
    assert not np.allclose(item, plain)
    np.testing.assert_array_equal(item.numpy(), image_to_input(src.read_image(1), (64, 64), contrast="clahe").numpy())
    np.testing.assert_array_equal(plain.numpy(), to_tensor(resize_image(src.read_image(1), (64, 64)) / np.float32(255)).numpy())
    with pytest.raises(ValueError, match="contrast must be one of"):
        LandmarkDataset(src, (64, 64), contrast="hist")


def test_disk_cache_is_reused_and_keyed_by_content(isbi_root, tmp_path):
    from farnetlib.data import ISBI2015

    src = ISBI2015(isbi_root, "train")
    cache = ImageCache(disk_dir=tmp_path / "cache")
    first = cache.get(src, 0, (96, 64))
    assert cache.misses == 1 and len(list((tmp_path / "cache").glob("*.npy"))) == 1
    fresh = ImageCache(disk_dir=tmp_path / "cache")
    np.testing.assert_array_equal(fresh.get(src, 0, (96, 64)), first)
    assert fresh.hits == 1 and fresh.misses == 0
    assert cache.get(src, 0, (96, 64)) is first  # memory hit



def test_cache_folder_from_the_environment_when_the_config_names_none(tmp_path, monkeypatch):
    """FARNET_CACHE_DIR is the disk folder of a cache built without one (the test session's is set by
    conftest); an explicit folder wins; unset or empty means memory only; a served copy equals a
    freshly resized one pixel for pixel."""
    from farnetlib.data import ISBI2015, write_isbi_layout
    from farnetlib.data.cache import CACHE_DIR_ENV
    from farnetlib.data.transforms import resize_image

    write_isbi_layout(tmp_path / "isbi", {"train": Synthetic(n=2, num_landmarks=19, image_size=(90, 70))})
    src = ISBI2015(tmp_path / "isbi", "train")
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "env"))
    first = ImageCache().get(src, 1, (48, 40))
    assert len(list((tmp_path / "env").glob("*_48x40.npy"))) == 1
    again = ImageCache()
    np.testing.assert_array_equal(again.get(src, 1, (48, 40)), first)
    assert again.hits == 1 and again.misses == 0
    np.testing.assert_array_equal(first, resize_image(src.read_image(1), (48, 40)))
    assert ImageCache(disk_dir=tmp_path / "own").disk_dir == tmp_path / "own"
    monkeypatch.setenv(CACHE_DIR_ENV, "")
    assert ImageCache().disk_dir is None
    monkeypatch.delenv(CACHE_DIR_ENV)
    assert ImageCache().disk_dir is None

def test_verify_real_isbi_copy_is_ok(isbi_root):
    report = verify(isbi_root, "isbi2015")
    assert report.ok, report.summary()
    assert report.checked == 900
    assert "absent" in report.splits["test2"]


def test_verify_catches_deleted_truncated_and_extra_files(isbi_root, tmp_path):
    copy = tmp_path / "isbi"
    shutil.copytree(isbi_root, copy)
    (copy / "RawImage/TrainingData/007.jpg").unlink()
    data = (copy / "RawImage/Test1Data/160.jpg").read_bytes()
    (copy / "RawImage/Test1Data/160.jpg").write_bytes(data[: len(data) // 3])
    (copy / "RawImage/TrainingData/999.jpg").write_bytes(data)
    ann = copy / "AnnotationsByMD/400_junior/020.txt"
    ann.write_text(ann.read_text().replace(",", ";", 1))
    report = verify(copy, "isbi2015")
    assert not report.ok
    assert report.missing == ["RawImage/TrainingData/007.jpg"]
    assert report.extra == ["RawImage/TrainingData/999.jpg"]
    assert any("160.jpg" in u for u in report.unreadable)
    assert any("020.txt:1" in u for u in report.unreadable)
    text = report.summary()
    assert "007.jpg" in text and "999.jpg" in text and "NOT OK" in text


def test_verify_hand_copy_counts_present_images_and_names_the_absent_ones(hand_root, tmp_path):
    """Our hand copy holds 138 of the 910 images of all.csv: the others are absent (no checksum in the
    manifest), not missing; a checksummed image that disappears is missing."""
    report = verify(hand_root, "hand_xray")
    assert report.ok, report.summary()
    assert report.images == (138, 910) and len(report.absent) == 910 - 138 and report.missing == []
    assert "images: 138 of 910 present" in report.summary() and "absent from this copy" in report.summary()
    copy = tmp_path / "hand"
    shutil.copytree(hand_root, copy, symlinks=True)
    (copy / "images" / "3143.jpg").unlink()
    broken = verify(copy, "hand_xray")
    assert not broken.ok and broken.missing == ["images/3143.jpg"] and broken.images == (137, 910)


def test_verify_full_aasce_copy_counts_every_image_and_the_label_outside(aasce_root):
    report = verify(aasce_root, "aasce")
    assert report.ok, report.summary()
    assert report.missing == [] and report.mismatching == [] and report.not_comparable == 0
    assert report.checked == 2 * 609 + 6  # image + label per image, 3 csv files per split
    assert [o.split(":")[0] for o in report.outside] == ["sunhl-1th-25-Jul-2016-49 A AP"]
    assert "landmarks outside their image: 1" in report.summary()
