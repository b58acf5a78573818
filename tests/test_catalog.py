"""vaelab.catalog: the named datasets, their class names, class files and the download cache."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vaelab import catalog
from vaelab.catalog import (
    DATASETS,
    DIGITS,
    FASHION_MNIST,
    FOLDER,
    KMNIST,
    MNIST,
    NAMES,
    Classes,
    cache_dir,
    classes_of_run,
    numbered,
    read_class_file,
    spec,
)
from vaelab.config import DATASETS as CONFIG_DATASETS
from vaelab.errors import VaelabError

IDX_NAMES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


# --- the specs ----------------------------------------------------------------------
def test_names_are_the_config_choices():
    assert NAMES == CONFIG_DATASETS == ("mnist", "fashion-mnist", "kmnist", FOLDER)
    assert FOLDER not in DATASETS


@pytest.mark.parametrize("name", list(DATASETS))
def test_every_spec_is_complete(name):
    s = spec(name)
    assert s.name == name and s.title
    assert list(s.files) == IDX_NAMES
    sizes = {n: f.size for n, f in s.files.items()}
    assert sizes == {"train-images-idx3-ubyte": 16 + 60_000 * 784, "train-labels-idx1-ubyte": 8 + 60_000,
                     "t10k-images-idx3-ubyte": 16 + 10_000 * 784, "t10k-labels-idx1-ubyte": 8 + 10_000}
    for f in s.files.values():  # something stronger than a size for every file
        assert f.sha256 is not None or f.gz_md5 is not None
        assert f.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", f.sha256)
        assert f.gz_md5 is None or re.fullmatch(r"[0-9a-f]{32}", f.gz_md5)
    assert s.mirrors and all(m.startswith("https://") and m.endswith("/") for m in s.mirrors)
    assert len(s.classes.names) == 10 and len(set(s.classes.names)) == 10
    assert s.torchvision and s.get


def test_only_mnist_is_bundled_and_only_fashion_mnist_installed_by_debian():
    assert [s.name for s in DATASETS.values() if s.bundled] == ["mnist"]
    assert FASHION_MNIST.search == ("/usr/share/datasets/fashion-mnist",)
    assert MNIST.search == KMNIST.search == ()


def test_the_fixes_named_when_a_dataset_is_missing():
    assert FASHION_MNIST.get.startswith("apt install dataset-fashion-mnist, or add --download")
    assert KMNIST.get == "add --download (about 20 MB from codh.rois.ac.jp)"


def test_kmnist_has_md5s_of_its_gz_files_only():
    assert all(f.sha256 is None and f.gz_md5 for f in KMNIST.files.values())
    assert KMNIST.files["t10k-labels-idx1-ubyte"].gz_md5 == "7320c461ea6c1c855c0b718fb2a4b134"


def test_spec_of_an_unknown_name():
    with pytest.raises(VaelabError, match="unknown dataset 'cifar'; choose one of mnist, fashion-mnist, kmnist"):
        spec("cifar")
    with pytest.raises(VaelabError, match="--data-dir"):
        spec(FOLDER)  # a place, not a dataset


# --- class names --------------------------------------------------------------------
def test_fashion_mnist_names_are_the_ten_official_ones():
    assert FASHION_MNIST.classes.names == ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                                           "Shirt", "Sneaker", "Bag", "Ankle boot")
    assert FASHION_MNIST.classes.word == "class" and not FASHION_MNIST.classes.digits


def test_kmnist_names_are_romanised_hiragana():
    assert KMNIST.classes.names == ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")


def test_mnist_classes_are_digits():
    assert MNIST.classes is DIGITS and DIGITS.digits
    assert DIGITS.names == tuple("0123456789")
    assert [DIGITS.name(d) for d in range(10)] == list("0123456789")


def test_name_of_a_label():
    fashion = FASHION_MNIST.classes
    assert fashion.name(0) == "T-shirt/top" and fashion.name(9) == "Ankle boot"
    assert fashion.name(10) == "10" and fashion.name(-1) == "-1"  # labels without a name show their number


@pytest.mark.parametrize(
    "text, label",
    [(3, 3), ("3", 3), (" 7 ", 7), ("Trouser", 1), ("trouser", 1), ("TROUSER", 1), ("ankle boot", 9),
     ("Ankle-Boot", 9), ("ankleboot", 9), ("T-shirt/top", 0), ("t shirt top", 0), ("tshirt", 0),
     ("shirt", 6), ("sneak", 7), ("bag", 8)],
)
def test_parse_a_number_or_a_name(text, label):
    assert FASHION_MNIST.classes.parse(text) == label


@pytest.mark.parametrize("text", ["10", 10, -1, "-1", "hat", "s", "", "Trousers"])
def test_parse_refuses_what_names_no_class(text):
    with pytest.raises(VaelabError, match="no class") as info:
        FASHION_MNIST.classes.parse(text)
    message = str(info.value)
    assert "0 (T-shirt/top), 1 (Trouser)" in message and "9 (Ankle boot)" in message and "\n" not in message


def test_parse_digits_and_kmnist():
    assert DIGITS.parse("0") == 0 and DIGITS.parse(9) == 9
    with pytest.raises(VaelabError, match=r"no digit '12' in this data; choose one of 0, 1, 2, .*, 9$"):
        DIGITS.parse("12")
    assert KMNIST.classes.parse("tsu") == 3 and KMNIST.classes.parse("WO") == 9 and KMNIST.classes.parse("t") == 3
    assert Classes(names=()).parse("42") == 42  # without names any number goes


def test_classes_round_trip_through_a_run():
    for classes in (DIGITS, FASHION_MNIST.classes, numbered(3), Classes(names=("cat", "dog"))):
        assert classes_of_run({"classes": classes.to_dict()}) == classes
    assert classes_of_run({}) == DIGITS  # runs from before datasets had names
    assert classes_of_run({"classes": "nonsense"}) == DIGITS


def test_numbered():
    assert numbered(3) == Classes(names=("0", "1", "2"))
    assert numbered(3).word == "class" and numbered(3).parse("2") == 2


# --- class files ---------------------------------------------------------------------
def test_read_class_file(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("# my three shapes\ncircle\n\n  square  \ntriangle\n", encoding="utf-8")
    classes = read_class_file(path)
    assert classes == Classes(names=("circle", "square", "triangle"))
    assert read_class_file(str(path), n_labels=3) == classes
    assert read_class_file(path, n_labels=2) == classes  # more names than labels: classes absent from the data


def test_read_class_file_unicode(tmp_path):
    path = tmp_path / "names.txt"
    path.write_text("お\nき\n", encoding="utf-8")
    assert read_class_file(path).names == ("お", "き")


def test_read_class_file_missing_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / "classes.txt"
    with pytest.raises(VaelabError, match="does not exist") as info:
        read_class_file(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "content, expected",
    [(b"# only a comment\n\n", "names no classes"), (b"cat\ndog\ncat\n", "names a class twice"),
     (b"\xff\xfe\x00bad", "UTF-8"), (b"cat\ndog\n", "names 2 classes but the labels go up to 2")],
)
def test_read_class_file_refuses(tmp_path, content, expected):
    path = tmp_path / "classes.txt"
    path.write_bytes(content)
    with pytest.raises(VaelabError, match=expected) as info:
        read_class_file(path, n_labels=3)
    assert str(path) in str(info.value)


def test_read_class_file_that_is_a_folder(tmp_path):
    with pytest.raises(VaelabError, match="cannot read class names file"):
        read_class_file(tmp_path)


# --- the download cache ------------------------------------------------------------------
def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("VAELAB_DATA", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_dir("kmnist") == tmp_path / "home" / ".cache" / "vaelab" / "datasets" / "kmnist"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir("kmnist") == tmp_path / "xdg" / "vaelab" / "datasets" / "kmnist"
    monkeypatch.setenv("VAELAB_DATA", str(tmp_path / "data"))
    assert cache_dir("fashion-mnist") == tmp_path / "data" / "fashion-mnist"
    monkeypatch.setenv("VAELAB_DATA", "")  # set but empty: as if unset
    assert cache_dir("kmnist") == tmp_path / "xdg" / "vaelab" / "datasets" / "kmnist"


def test_cache_dir_expands_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("VAELAB_DATA", "~/datasets")
    assert cache_dir("kmnist") == tmp_path / "datasets" / "kmnist"
    assert isinstance(catalog.cache_dir("mnist"), Path)
