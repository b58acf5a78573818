"""vaelab.data: finding and loading MNIST and its kin, checksums, binarization."""

from __future__ import annotations

import dataclasses
import gzip
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from test_idx import idx_bytes
from vaelab import catalog
from vaelab.catalog import DatasetSpec, FileSum
from vaelab.data import (
    DATA_SIZE,
    MAX_IMAGE_SIDE,
    MNIST_FILES,
    THRESHOLD_BYTE,
    binarize,
    binarize_dynamic,
    binarize_threshold,
    bundled_dir,
    find_dataset,
    grey_levels,
    load_split,
    locate_files,
    sha256,
    verify_checksum,
)
from vaelab.errors import VaelabError
from vaelab.idx import read_bytes

NAMES = list(MNIST_FILES)
TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS = NAMES


# --- helpers ------------------------------------------------------------------
def write_dataset(folder: Path, n_train: int, n_test: int, *, seed: int = 0, gz: bool = True):
    """Random MNIST-format files in `folder`; returns the arrays written."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        for name, array in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
            data = idx_bytes(array)
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)
            written[name] = (array, data)
    return written


def write_folder(folder: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """The given images and labels as gzipped IDX files: splits = {'train': (images, labels), 't10k': ...}."""
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, (images, labels) in splits.items():
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    return folder


def spec_of(folder: Path, base: DatasetSpec, *, sha: bool = True, **changes) -> DatasetSpec:
    """`base` with the sizes (and, if `sha`, the SHA-256s) of the files in `folder`, as if they were genuine."""
    files = {}
    for name in NAMES:
        data = read_bytes(next(folder.glob(f"{name}*")))
        files[name] = FileSum(len(data), sha256(data) if sha else None)
    return dataclasses.replace(base, files=files, **changes)


def touch_all(folder: Path, spelling=lambda name: name) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in NAMES:
        path = folder / spelling(name)
        path.write_bytes(b"x")
        paths[name] = path
    return paths


@pytest.fixture(scope="module")
def bundled_test():
    return load_split("test")


# --- locate_files -----------------------------------------------------------------
@pytest.mark.parametrize(
    "subdir, spelling",
    [
        ("", lambda n: n),
        ("", lambda n: n + ".gz"),
        ("MNIST/raw", lambda n: n),
        ("MNIST/raw", lambda n: n + ".gz"),
        ("raw", lambda n: n + ".gz"),
        ("", lambda n: n.replace("-idx", ".idx")),
        ("", lambda n: n.replace("-idx", ".idx") + ".gz"),
    ],
    ids=["flat-raw", "flat-gz", "torchvision-raw", "torchvision-gz", "raw-gz", "dotted", "dotted-gz"],
)
def test_locate_files_layouts(tmp_path, subdir, spelling):
    expected = touch_all(tmp_path / subdir if subdir else tmp_path, spelling)
    assert locate_files(tmp_path) == expected
    assert locate_files(str(tmp_path)) == expected


def test_locate_files_dotted_spelling_exact_name(tmp_path):
    paths = touch_all(tmp_path, lambda n: n.replace("-idx", ".idx"))
    assert paths[TRAIN_IMAGES].name == "train-images.idx3-ubyte"
    assert locate_files(tmp_path)[TRAIN_IMAGES] == tmp_path / "train-images.idx3-ubyte"


def test_locate_files_mixed_gz_and_raw(tmp_path):
    touch_all(tmp_path)
    (tmp_path / TEST_LABELS).unlink()
    (tmp_path / f"{TEST_LABELS}.gz").write_bytes(b"x")
    found = locate_files(tmp_path)
    assert found[TEST_LABELS] == tmp_path / f"{TEST_LABELS}.gz"
    assert found[TRAIN_IMAGES] == tmp_path / TRAIN_IMAGES


def test_locate_files_missing_folder(tmp_path):
    with pytest.raises(VaelabError, match="does not exist") as info:
        locate_files(tmp_path / "absent")
    assert str(tmp_path / "absent") in str(info.value)


def test_locate_files_path_is_a_file(tmp_path):
    path = tmp_path / "file.gz"
    path.write_bytes(b"x")
    with pytest.raises(VaelabError, match="is a file, not a folder"):
        locate_files(path)


def test_locate_files_empty_folder(tmp_path):
    with pytest.raises(VaelabError, match="no complete MNIST") as info:
        locate_files(tmp_path)
    for name in NAMES:
        assert name in str(info.value)


@pytest.mark.parametrize("absent", NAMES)
def test_locate_files_three_of_four_names_the_missing_one(tmp_path, absent):
    touch_all(tmp_path / "MNIST" / "raw", lambda n: n + ".gz")
    (tmp_path / "MNIST" / "raw" / f"{absent}.gz").unlink()
    with pytest.raises(VaelabError, match=f"missing {absent} ") as info:
        locate_files(tmp_path)
    for name in NAMES:
        if name != absent:
            assert name not in str(info.value)


def test_locate_files_directory_with_file_name_is_not_a_file(tmp_path):
    touch_all(tmp_path)
    (tmp_path / TRAIN_LABELS).unlink()
    (tmp_path / TRAIN_LABELS).mkdir()
    with pytest.raises(VaelabError, match=f"missing {TRAIN_LABELS}"):
        locate_files(tmp_path)


# --- load_split on a synthetic dataset ----------------------------------------------
@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_load_split_synthetic(tmp_path, gz):
    written = write_dataset(tmp_path, 50, 20, gz=gz)
    for split, prefix, n in (("train", "train", 50), ("test", "t10k", 20)):
        s = load_split(split, tmp_path)
        assert s.images.shape == (n, 28, 28) and s.images.dtype == torch.uint8
        assert s.labels.shape == (n,) and s.labels.dtype == torch.int64
        images, image_bytes = written[f"{prefix}-images-idx3-ubyte"]
        labels, label_bytes = written[f"{prefix}-labels-idx1-ubyte"]
        np.testing.assert_array_equal(s.images.numpy(), images)
        np.testing.assert_array_equal(s.labels.numpy(), labels.astype(np.int64))
        # Checksums are those of the decompressed bytes, whatever the storage.
        assert s.files == {
            f"{prefix}-images-idx3-ubyte": sha256(image_bytes),
            f"{prefix}-labels-idx1-ubyte": sha256(label_bytes),
        }


def test_a_folders_two_copies_of_a_file_must_agree(tmp_path):
    written = write_dataset(tmp_path, 50, 20)  # the .gz files
    labels, label_bytes = written[TEST_LABELS]
    (tmp_path / TEST_LABELS).write_bytes(label_bytes)  # an uncompressed copy beside it, as torchvision leaves
    assert load_split("test", tmp_path).labels.tolist() == labels.astype(int).tolist()
    relabelled = idx_bytes((labels + 1) % 10)  # the user's corrected labels, uncompressed; the .gz is stale
    (tmp_path / TEST_LABELS).write_bytes(relabelled)
    with pytest.raises(VaelabError, match=rf"{TEST_LABELS}\.gz and {TEST_LABELS} beside it hold different "
                                          rf"{TEST_LABELS} data, and vaelab would read the \.gz one; remove the "
                                          "stale copy"):
        load_split("test", tmp_path)
    assert load_split("train", tmp_path).images.shape == (50, 28, 28)  # the train files have one copy each


def test_load_split_tensors_are_writable_copies(tmp_path):
    written = write_dataset(tmp_path, 5, 3)
    original = int(written[TEST_IMAGES][0][0, 0, 0])
    s = load_split("test", tmp_path)
    s.images[0, 0, 0] = original ^ 0xFF
    s.labels[0] = 99
    again = load_split("test", tmp_path)
    assert again.images[0, 0, 0] == original
    assert again.labels[0] == int(written[TEST_LABELS][0][0])


def test_load_split_count_mismatch(tmp_path):
    write_dataset(tmp_path, 50, 20)
    (tmp_path / f"{TRAIN_LABELS}.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(49, np.uint8))))
    with pytest.raises(VaelabError, match="has 50 images but .* has 49 labels"):
        load_split("train", tmp_path)
    assert len(load_split("test", tmp_path).images) == 20  # the other split is unaffected


def test_load_split_images_of_other_sizes_in_the_two_splits(tmp_path):
    write_dataset(tmp_path, 4, 4)
    (tmp_path / f"{TEST_IMAGES}.gz").write_bytes(gzip.compress(idx_bytes(np.zeros((4, 27, 28), np.uint8))))
    for split in ("test", "train"):
        with pytest.raises(VaelabError, match="27 x 28 pixels.*28 x 28|28 x 28 pixels.*27 x 28") as info:
            load_split(split, tmp_path)
        assert "must have one size" in str(info.value)


def test_load_split_images_not_3d(tmp_path):
    write_dataset(tmp_path, 4, 4)
    (tmp_path / f"{TEST_IMAGES}.gz").write_bytes(gzip.compress(idx_bytes(np.zeros((4, 784), np.uint8))))
    with pytest.raises(VaelabError, match=r"shape \(4, 784\); expected \(N, H, W\) images"):
        load_split("test", tmp_path)


def test_load_split_images_too_large(tmp_path):
    side = MAX_IMAGE_SIDE + 1
    write_folder(tmp_path, {"train": (np.zeros((1, 2, side), np.uint8), np.zeros(1, np.uint8)),
                            "t10k": (np.zeros((1, 2, side), np.uint8), np.zeros(1, np.uint8))})
    with pytest.raises(VaelabError, match=f"images of 2 x {side} pixels; vaelab reads images of 1 to 512"):
        load_split("test", tmp_path)


def test_named_dataset_images_must_be_28_by_28(tmp_path, monkeypatch):
    write_folder(tmp_path, {"train": (np.zeros((2, 12, 12), np.uint8), np.zeros(2, np.uint8)),
                            "t10k": (np.zeros((2, 12, 12), np.uint8), np.zeros(2, np.uint8))})
    monkeypatch.setitem(catalog.DATASETS, "kmnist", spec_of(tmp_path, catalog.KMNIST, sha=False))
    with pytest.raises(VaelabError, match=r"\(2, 12, 12\); expected \(N, 28, 28\) images"):
        load_split("test", tmp_path, dataset="kmnist")


def test_load_split_labels_not_1d(tmp_path):
    write_dataset(tmp_path, 4, 4)
    (tmp_path / f"{TEST_LABELS}.gz").write_bytes(gzip.compress(idx_bytes(np.zeros((4, 1), np.uint8))))
    with pytest.raises(VaelabError, match=r"expected \(N,\) labels"):
        load_split("test", tmp_path)


def test_load_split_zero_images(tmp_path):
    write_dataset(tmp_path, 0, 3)
    with pytest.raises(VaelabError, match="holds no images"):
        load_split("train", tmp_path)


def test_load_split_damaged_file_names_it(tmp_path):
    write_dataset(tmp_path, 6, 6)
    path = tmp_path / f"{TEST_IMAGES}.gz"
    path.write_bytes(gzip.compress(read_bytes(path)[:-5]))
    with pytest.raises(VaelabError, match="truncated") as info:
        load_split("test", tmp_path)
    assert str(path) in str(info.value)


def test_load_split_unknown_split(tmp_path):
    with pytest.raises(VaelabError, match="unknown split 'valid'"):
        load_split("valid", tmp_path)


# --- the bundled MNIST ------------------------------------------------------------------
def test_bundled_files_present():
    assert sorted(p.name for p in bundled_dir().glob("*.gz")) == sorted(n + ".gz" for n in NAMES)


def test_load_bundled_test(bundled_test):
    s = bundled_test
    assert s.images.shape == (10000, 28, 28) and s.images.dtype == torch.uint8
    assert s.labels.shape == (10000,) and s.labels.dtype == torch.int64
    assert s.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    counts = torch.bincount(s.labels, minlength=10).tolist()
    assert counts == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert s.files == {n: MNIST_FILES[n][1] for n in (TEST_IMAGES, TEST_LABELS)}
    # Digits are white strokes on black: the corners are empty, some pixels saturate.
    assert s.images[:, 0, 0].max() == 0 and s.images.max() == 255


def test_load_bundled_train():
    s = load_split("train")
    assert s.images.shape == (60000, 28, 28) and s.images.dtype == torch.uint8
    assert s.labels.shape == (60000,) and s.labels.dtype == torch.int64
    assert s.labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    counts = torch.bincount(s.labels, minlength=10).tolist()
    assert counts == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert s.files == {n: MNIST_FILES[n][1] for n in (TRAIN_IMAGES, TRAIN_LABELS)}


def test_bundled_checksums_and_sizes_verify():
    for name, (size, digest) in MNIST_FILES.items():
        data = read_bytes(bundled_dir() / f"{name}.gz")
        assert len(data) == size
        assert sha256(data) == digest
        verify_checksum(name, data, "bundled")  # does not raise


def test_bundled_copy_is_checksum_verified(tmp_path, monkeypatch):
    """A tampered bundled copy is refused, whereas a user folder is only parsed."""
    fake = tmp_path / "bundled"
    shutil.copytree(bundled_dir(), fake)
    labels = bytearray(read_bytes(fake / f"{TEST_LABELS}.gz"))
    labels[-1] = (labels[-1] + 1) % 10
    (fake / f"{TEST_LABELS}.gz").write_bytes(gzip.compress(bytes(labels)))
    assert load_split("test", fake).labels[-1] == labels[-1]  # as a user folder: fine
    monkeypatch.setattr("vaelab.data.bundled_dir", lambda: fake)
    with pytest.raises(VaelabError, match="fails its checksum"):
        load_split("test")


# --- verify_checksum ---------------------------------------------------------------------
def test_verify_checksum_rejects_altered_bytes():
    data = bytearray(read_bytes(bundled_dir() / f"{TEST_LABELS}.gz"))
    verify_checksum(TEST_LABELS, bytes(data), "src")
    data[100] ^= 0x01
    with pytest.raises(VaelabError, match="some/source.gz fails its checksum") as info:
        verify_checksum(TEST_LABELS, bytes(data), "some/source.gz")
    assert MNIST_FILES[TEST_LABELS][1][:16] in str(info.value)
    assert sha256(bytes(data))[:16] in str(info.value)


def test_verify_checksum_rejects_the_wrong_file():
    data = read_bytes(bundled_dir() / f"{TEST_LABELS}.gz")
    with pytest.raises(VaelabError, match="checksum"):
        verify_checksum(TRAIN_LABELS, data, "x")


# --- find_dataset -------------------------------------------------------------------------
@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """The download cache, an empty folder of the test's ($VAELAB_DATA)."""
    monkeypatch.setenv("VAELAB_DATA", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_find_mnist_without_data_dir_is_the_bundled_copy(cache):
    assert find_dataset("mnist") == find_dataset() == bundled_dir()
    assert find_dataset("mnist", download=True) == bundled_dir()  # nothing to fetch
    assert not cache.exists()


def test_find_a_named_dataset_in_data_dir(tmp_path):
    write_dataset(tmp_path / "data", 3, 2)
    for name in catalog.DATASETS:
        assert find_dataset(name, tmp_path / "data") == tmp_path / "data"


@pytest.mark.parametrize("name, subdir", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST"),
                                          ("fashion-mnist", "fashion-mnist"), ("kmnist", "KMNIST"),
                                          ("kmnist", "raw")])
def test_find_a_named_dataset_in_torchvision_layouts(tmp_path, name, subdir):
    expected = touch_all(tmp_path / subdir / ("" if subdir == "raw" else "raw"), lambda n: n + ".gz")
    assert find_dataset(name, tmp_path) == tmp_path
    assert locate_files(tmp_path, name) == expected


def test_torchvision_layout_of_another_dataset_is_not_taken(tmp_path):
    touch_all(tmp_path / "KMNIST" / "raw")
    with pytest.raises(VaelabError, match="no complete Fashion-MNIST in .*FashionMNIST/raw/.*add --download"):
        find_dataset("fashion-mnist", tmp_path)
    with pytest.raises(VaelabError, match="no complete set of IDX files in .*name a dataset with --dataset"):
        find_dataset("folder", tmp_path)


def test_find_searches_the_spec_folders_then_the_cache(tmp_path, cache, monkeypatch):
    first, second = tmp_path / "first", tmp_path / "second"
    fake = dataclasses.replace(catalog.FASHION_MNIST, search=(str(first), str(second)))
    monkeypatch.setitem(catalog.DATASETS, "fashion-mnist", fake)
    with pytest.raises(VaelabError) as info:
        find_dataset("fashion-mnist")
    message = str(info.value)
    assert message == (f"Fashion-MNIST is not in {first} nor {second} nor {cache / 'fashion-mnist'}; apt install "
                       "dataset-fashion-mnist, or add --download (about 30 MB from github.com)")
    write_dataset(cache / "fashion-mnist", 3, 2)
    assert find_dataset("fashion-mnist") == cache / "fashion-mnist"
    touch_all(second)
    (second / TEST_LABELS).unlink()  # an incomplete folder is passed over
    assert find_dataset("fashion-mnist") == cache / "fashion-mnist"
    touch_all(second)
    assert find_dataset("fashion-mnist") == second
    touch_all(first / "raw")  # the layouts of a --data-dir are accepted too
    assert find_dataset("fashion-mnist") == first
    assert find_dataset("fashion-mnist", download=True) == first  # found: nothing to fetch


def test_find_kmnist_not_downloaded_names_the_fix(cache):
    with pytest.raises(VaelabError) as info:
        find_dataset("kmnist")
    assert str(info.value) == (f"Kuzushiji-MNIST is not in {cache / 'kmnist'}; "
                               "add --download (about 20 MB from codh.rois.ac.jp)")


def test_find_a_folder_dataset(tmp_path):
    write_dataset(tmp_path / "raw", 3, 2)
    assert find_dataset("folder", tmp_path) == tmp_path
    with pytest.raises(VaelabError, match="--dataset folder needs --data-dir"):
        find_dataset("folder")
    with pytest.raises(VaelabError, match="data directory .*absent does not exist; point --data-dir at the folder "
                                          "holding the four IDX files$"):
        find_dataset("folder", tmp_path / "absent")


def test_download_into_a_complete_folder_fetches_nothing(tmp_path, monkeypatch):
    monkeypatch.setitem(catalog.DATASETS, "mnist", dataclasses.replace(catalog.MNIST, mirrors=("https://127.0.0.1:1/",)))
    write_dataset(tmp_path, 3, 2)
    assert find_dataset("folder", tmp_path, download=True) == tmp_path
    assert find_dataset("mnist", tmp_path, download=True) == tmp_path


def test_find_an_unknown_dataset():
    with pytest.raises(VaelabError, match="unknown dataset 'cifar10'"):
        find_dataset("cifar10")
    with pytest.raises(VaelabError, match="unknown dataset 'cifar10'"):
        load_split("test", dataset="cifar10")


# --- named datasets are verified ------------------------------------------------------------
def test_named_dataset_loads_with_its_classes(tmp_path, monkeypatch):
    written = write_dataset(tmp_path, 6, 4)
    monkeypatch.setitem(catalog.DATASETS, "fashion-mnist", spec_of(tmp_path, catalog.FASHION_MNIST))
    s = load_split("test", tmp_path, dataset="fashion-mnist")
    np.testing.assert_array_equal(s.images.numpy(), written[TEST_IMAGES][0])
    assert s.classes == catalog.FASHION_MNIST.classes
    assert s.files == {n: sha256(written[n][1]) for n in (TEST_IMAGES, TEST_LABELS)}


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_named_dataset_with_altered_file_is_refused(tmp_path, monkeypatch, name):
    write_dataset(tmp_path, 6, 4)
    if name != "mnist":
        monkeypatch.setitem(catalog.DATASETS, name, spec_of(tmp_path, catalog.DATASETS[name]))
    else:
        shutil.copytree(bundled_dir(), tmp_path, dirs_exist_ok=True)
        assert len(load_split("test", tmp_path, dataset="mnist").labels) == 10000  # a genuine copy in a --data-dir
    path = tmp_path / f"{TEST_LABELS}.gz"
    labels = bytearray(read_bytes(path))
    labels[-1] = (labels[-1] + 1) % 10  # still a valid IDX file of the right size
    path.write_bytes(gzip.compress(bytes(labels)))
    title = catalog.DATASETS[name].title
    with pytest.raises(VaelabError) as info:
        load_split("test", tmp_path, dataset=name)
    message = str(info.value)
    assert message.startswith(f"{path} fails its checksum (SHA-256 {sha256(bytes(labels))[:16]}...")
    assert f"it is not the genuine {title} file {TEST_LABELS}; delete it and fetch it again (`vaelab train " \
           f"--dataset {name} --download`), give --data-dir a folder of the genuine {title} files, or train with " \
           f"--dataset folder for IDX files other than {title}" in message and "\n" not in message
    assert load_split("test", tmp_path).labels[-1] == labels[-1]  # as a folder dataset: fine
    assert load_split("test", tmp_path, dataset="folder").labels[-1] == labels[-1]
    other = "kmnist" if name == "fashion-mnist" else "fashion-mnist"  # the file is another named dataset's
    monkeypatch.setitem(catalog.DATASETS, other, spec_of(tmp_path, catalog.DATASETS[other]))
    other_title = catalog.DATASETS[other].title
    with pytest.raises(VaelabError, match=f"^{path} is {other_title}'s file {TEST_LABELS}, not {title}'s; give "
                                          f"--data-dir a folder of the genuine {title} files$"):
        load_split("test", tmp_path, dataset=name)


def test_kmnist_is_verified_by_size_and_labels(tmp_path, monkeypatch):
    write_dataset(tmp_path, 6, 4)
    monkeypatch.setitem(catalog.DATASETS, "kmnist", spec_of(tmp_path, catalog.KMNIST, sha=False))
    assert load_split("test", tmp_path, dataset="kmnist").classes == catalog.KMNIST.classes
    path = tmp_path / f"{TEST_LABELS}.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.array([0, 1, 2, 10], np.uint8))))  # right size, label 10
    with pytest.raises(VaelabError, match=f"{path} holds label 10, but Kuzushiji-MNIST has 10 classes: it is not "
                                          "the genuine Kuzushiji-MNIST file; delete it and fetch it again"):
        load_split("test", tmp_path, dataset="kmnist")
    path.write_bytes(gzip.compress(idx_bytes(np.array([0, 1, 2], np.uint8))))
    with pytest.raises(VaelabError, match=f"{path} holds 11 bytes, not the 12 of the genuine Kuzushiji-MNIST file "
                                          f"{TEST_LABELS}; delete it and fetch it again"):
        load_split("test", tmp_path, dataset="kmnist")


def test_named_dataset_takes_no_class_names(tmp_path):
    with pytest.raises(VaelabError, match="class_names names the classes of --dataset folder only; kmnist"):
        load_split("test", tmp_path, dataset="kmnist", class_names=tmp_path / "classes.txt")


def test_named_dataset_found_in_the_cache_loads(tmp_path, cache, monkeypatch):
    write_dataset(cache / "kmnist", 6, 4)
    monkeypatch.setitem(catalog.DATASETS, "kmnist", spec_of(cache / "kmnist", catalog.KMNIST, sha=False))
    s = load_split("train", dataset="kmnist")
    assert s.images.shape == (6, 28, 28) and s.classes.names[3] == "tsu"


FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_debian_fashion_mnist_matches_the_pinned_checksums(cache):
    spec = catalog.FASHION_MNIST
    assert find_dataset("fashion-mnist") == FASHION
    for name, genuine in spec.files.items():
        data = read_bytes(FASHION / f"{name}.gz")
        assert len(data) == genuine.size and sha256(data) == genuine.sha256, name
    s = load_split("test", dataset="fashion-mnist")
    assert s.images.shape == (10000, 28, 28) and s.classes.names[9] == "Ankle boot"
    assert torch.bincount(s.labels).tolist() == [1000] * 10
    assert s.files == {n: spec.files[n].sha256 for n in (TEST_IMAGES, TEST_LABELS)}


# --- folder datasets: any size, classes from a file --------------------------------------------
def three_shapes(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """3 classes of 12 x 12 images: 9 training, 6 test, two of each class or more."""
    rng = np.random.default_rng(3)
    splits = {prefix: (rng.integers(0, 256, (n, 12, 12), dtype=np.uint8), np.arange(n, dtype=np.uint8) % 3)
              for prefix, n in (("train", 9), ("t10k", 6))}
    write_folder(folder, splits)
    return splits


def test_folder_of_12_by_12_images_with_a_class_file(tmp_path):
    splits = three_shapes(tmp_path)
    (tmp_path / "classes.txt").write_text("circle\nsquare\ntriangle\n")
    for split, prefix in (("train", "train"), ("test", "t10k")):
        s = load_split(split, tmp_path, dataset="folder")
        assert s.images.shape == (len(splits[prefix][0]), 12, 12)
        np.testing.assert_array_equal(s.images.numpy(), splits[prefix][0])
        np.testing.assert_array_equal(s.labels.numpy(), splits[prefix][1])
        assert s.classes == catalog.Classes(names=("circle", "square", "triangle"))
        assert s.classes.parse("square") == 1


def test_folder_class_file_beside_the_files(tmp_path):
    three_shapes(tmp_path / "raw")
    (tmp_path / "raw" / "classes.txt").write_text("a\nb\nc\n")
    assert load_split("test", tmp_path).classes.names == ("a", "b", "c")
    (tmp_path / "classes.txt").write_text("x\ny\nz\n")  # DATA_DIR's own comes first
    assert load_split("test", tmp_path).classes.names == ("x", "y", "z")


def test_folder_classes_given_override_classes_txt(tmp_path):
    three_shapes(tmp_path)
    (tmp_path / "classes.txt").write_text("circle\nsquare\ntriangle\n")
    names = tmp_path / "elsewhere.txt"
    names.write_text("# mine\nround\nfour corners\nthree corners\nunused\n")
    s = load_split("test", tmp_path, dataset="folder", class_names=names)
    assert s.classes.names == ("round", "four corners", "three corners", "unused")
    assert s.classes.parse("four-corners") == 1


def test_folder_class_names_missing_names_the_path(tmp_path):
    three_shapes(tmp_path)
    (tmp_path / "classes.txt").write_text("circle\nsquare\ntriangle\n")  # not a fallback for a file given
    missing = tmp_path / "typo.txt"
    with pytest.raises(VaelabError, match="does not exist") as info:
        load_split("test", tmp_path, dataset="folder", class_names=missing)
    assert f"class names file {missing} does not exist" in str(info.value)


def test_folder_with_more_labels_than_names(tmp_path):
    three_shapes(tmp_path)
    (tmp_path / "classes.txt").write_text("circle\nsquare\n")
    with pytest.raises(VaelabError, match="names 2 classes but the labels go up to 2; give one name per label"):
        load_split("train", tmp_path)


def test_folder_without_names_numbers_the_classes_of_both_splits(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (6, 5, 7), dtype=np.uint8)
    write_folder(tmp_path, {"train": (images[:4], np.array([0, 1, 4, 1], np.uint8)),
                            "t10k": (images[4:], np.array([0, 2], np.uint8))})
    train, test = load_split("train", tmp_path), load_split("test", tmp_path)
    assert train.classes == test.classes == catalog.numbered(5)
    assert train.images.shape == (4, 5, 7)


def test_folder_of_genuine_mnist_has_digits(tmp_path):
    shutil.copytree(bundled_dir(), tmp_path, dirs_exist_ok=True)
    assert load_split("test", tmp_path).classes == catalog.DIGITS  # recognised by its checksums
    (tmp_path / "classes.txt").write_text("zero\none\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nnine\n")
    assert load_split("test", tmp_path).classes.names[3] == "three"  # a class file still comes first


def test_bundled_split_has_digits(bundled_test):
    assert bundled_test.classes == catalog.DIGITS


# --- binarization -------------------------------------------------------------------------
def article_pipeline(byte_values: torch.Tensor) -> torch.Tensor:
    """torchvision's ToTensor + Normalize((0.1307,), (0.3081,)) in float32, then > 0.5."""
    x = byte_values.to(torch.float32).div(255)  # ToTensor on a uint8 image
    mean = torch.as_tensor((0.1307,), dtype=torch.float32)  # Normalize builds these
    std = torch.as_tensor((0.3081,), dtype=torch.float32)
    return (x.sub(mean).div(std)) > 0.5


def test_threshold_byte_is_73():
    assert THRESHOLD_BYTE == 73
    assert 255 * (0.1307 + 0.5 * 0.3081) == pytest.approx(72.61, abs=0.01)


def test_threshold_matches_article_float32_pipeline_for_every_byte():
    every = torch.arange(256, dtype=torch.uint8)
    article = article_pipeline(every)
    # Same answer when computed byte by byte with Python-scalar arithmetic.
    scalar = torch.stack(
        [((torch.tensor(b, dtype=torch.uint8).float() / 255 - 0.1307) / 0.3081) > 0.5 for b in range(256)]
    )
    assert torch.equal(article, scalar)
    ours = binarize_threshold(every.reshape(1, 256)).reshape(256)
    assert torch.equal(ours.bool(), article)
    assert article.sum().item() == 256 - 73
    assert not article[72] and article[73]


def test_binarize_threshold_shape_and_values():
    images = torch.zeros(3, 28, 28, dtype=torch.uint8)
    images[0, 0, 0] = 72
    images[0, 0, 1] = 73
    images[1, 27, 27] = 255
    images[2] = 100
    out = binarize_threshold(images)
    assert out.shape == (3, DATA_SIZE) and out.dtype == torch.float32
    assert set(out.unique().tolist()) == {0.0, 1.0}
    assert out[0, 0] == 0 and out[0, 1] == 1 and out[0].sum() == 1
    assert out[1, 783] == 1 and out[1].sum() == 1
    assert out[2].sum() == DATA_SIZE


def test_binarize_threshold_on_bundled_digit(bundled_test):
    out = binarize_threshold(bundled_test.images[:1])
    expected = (bundled_test.images[0].reshape(-1).int() >= 73).float()
    assert torch.equal(out[0], expected)
    assert 50 < out.sum().item() < 300  # a '7' covers some, not most, of the image


def test_grey_levels():
    images = torch.tensor([[0, 51, 255]], dtype=torch.uint8).repeat(2, 1)
    grey = grey_levels(images)
    assert grey.shape == (2, 3) and grey.dtype == torch.float32
    assert torch.allclose(grey[0], torch.tensor([0.0, 0.2, 1.0]))


def test_binarize_dynamic_reproducible_and_binary():
    grey = grey_levels(torch.arange(DATA_SIZE).remainder(256).to(torch.uint8).reshape(1, 28, 28))
    grey = grey.expand(64, DATA_SIZE)
    a = binarize_dynamic(grey, torch.Generator().manual_seed(5))
    b = binarize_dynamic(grey, torch.Generator().manual_seed(5))
    c = binarize_dynamic(grey, torch.Generator().manual_seed(6))
    assert a.shape == (64, DATA_SIZE) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert set(a.unique().tolist()) == {0.0, 1.0}
    gen = torch.Generator().manual_seed(5)
    first, second = binarize_dynamic(grey, gen), binarize_dynamic(grey, gen)
    assert not torch.equal(first, second)  # a fresh draw each call


def test_binarize_dynamic_mean_matches_grey_levels():
    draws = 20000
    bytes_ = torch.arange(DATA_SIZE).remainder(256).to(torch.uint8).reshape(1, 28, 28)
    p = grey_levels(bytes_)[0]
    samples = binarize_dynamic(p.expand(draws, DATA_SIZE), torch.Generator().manual_seed(0))
    mean = samples.double().mean(0)
    sigma = (p.double() * (1 - p.double()) / draws).sqrt()
    assert torch.all((mean - p.double()).abs() <= 5 * sigma + 1e-12)
    # Black and white pixels are never flipped.
    assert torch.all(samples[:, p == 0] == 0) and torch.all(samples[:, p == 1] == 1)
    assert 5 * sigma.max().item() < 0.02  # the tolerance is a real constraint


def test_binarize_dispatch():
    images = torch.from_numpy(np.random.default_rng(2).integers(0, 256, (6, 28, 28), dtype=np.uint8))
    gen = torch.Generator().manual_seed(1)
    assert torch.equal(binarize(images, "threshold", gen), binarize_threshold(images))
    dyn = binarize(images, "dynamic", torch.Generator().manual_seed(3))
    assert torch.equal(dyn, binarize_dynamic(grey_levels(images), torch.Generator().manual_seed(3)))
    assert dyn.shape == (6, DATA_SIZE)


def test_binarize_unknown_method():
    with pytest.raises(VaelabError, match="unknown binarization 'otsu'"):
        binarize(torch.zeros(1, 28, 28, dtype=torch.uint8), "otsu", torch.Generator())


def test_threshold_fraction_on_bundled_test_is_plausible(bundled_test):
    frac = binarize_threshold(bundled_test.images).mean().item()
    # About 15% of MNIST test pixels are ink (byte >= 73).
    assert 0.14 < frac < 0.17
    assert math.isclose(frac, (bundled_test.images >= 73).float().mean().item())
