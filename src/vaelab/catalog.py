"""The datasets vaelab knows by name, and the names of their classes.

A `DatasetSpec` says everything vaelab needs to find, fetch and check one
MNIST-format dataset: its four IDX files with their sizes and checksums, the
https mirrors it may be downloaded from, the folders it is looked for in, and
what its labels mean. Data never enter this module; `vaelab.data` reads them.

`folder` is not a dataset but a place: any folder with the four IDX files
(`--data-dir`), checked for structure only, its class names read from an
optional text file (`read_class_file`).

`cache_dir` says where `--download` puts a named dataset when no --data-dir is
given ($VAELAB_DATA, else the XDG cache folder).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vaelab.errors import VaelabError

CLASS_FILE = "classes.txt"  # in a --data-dir: one class name per line, in label order


@dataclass(frozen=True)
class FileSum:
    """One decompressed IDX file: its exact size and, where known, the SHA-256 of its bytes.

    `gz_md5` is the MD5 of the .gz a mirror serves, for datasets whose authors
    publish nothing stronger (KMNIST); downloads check it before decompressing.
    """

    size: int
    sha256: str | None = None
    gz_md5: str | None = None


@dataclass(frozen=True)
class Classes:
    """What a dataset's labels mean: `names[i]` is label i's name; `word` says what one is."""

    names: tuple[str, ...]
    word: str = "class"  # "digit" for MNIST: figures say "digit 3", else "class Trouser"

    @property
    def digits(self) -> bool:
        return self.word == "digit"

    def name(self, label: int) -> str:
        """How figures name label `label`: '3' for a digit, 'Trouser' for Fashion-MNIST."""
        return self.names[label] if 0 <= label < len(self.names) else str(label)

    def parse(self, text: str | int) -> int:
        """The label a user means by `text`: a number, or a name (any case; spaces, dashes and slashes ignored).

        A name may be shortened to any beginning that no other name shares: 'tshirt' is 'T-shirt/top'.
        """
        if isinstance(text, int) or str(text).strip().isdigit():
            label = int(text)
            if 0 <= label and (label < len(self.names) or not self.names):
                return label
        else:
            wanted = _simple(str(text))
            simple = [_simple(name) for name in self.names]
            if wanted in simple:
                return simple.index(wanted)
            starts = [label for label, name in enumerate(simple) if wanted and name.startswith(wanted)]
            if len(starts) == 1:
                return starts[0]
        known = ", ".join(f"{i} ({n})" if n != str(i) else n for i, n in enumerate(self.names))
        raise VaelabError(f"no {self.word} {text!r} in this data; choose one of {known}")

    def to_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "word": self.word}


def _simple(name: str) -> str:
    return "".join(ch for ch in name.casefold() if ch.isalnum())


DIGITS = Classes(names=tuple(str(d) for d in range(10)), word="digit")


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset by name: files, checksums, mirrors, where to look, and its classes."""

    name: str
    title: str  # for people: "Fashion-MNIST"
    classes: Classes
    files: dict[str, FileSum]  # decompressed IDX name -> size and checksums
    mirrors: tuple[str, ...] = ()  # https base URLs serving NAME.gz
    search: tuple[str, ...] = ()  # folders looked in when no --data-dir is given (besides the download cache)
    bundled: bool = False  # ships inside the package
    source: str = ""  # homepage and licence, for the README and error messages
    torchvision: str = ""  # torchvision's folder for it: a --data-dir may hold the files in TORCHVISION/raw/
    get: str = "add --download"  # how a user without the files gets them, ending the not-found error
    extra: dict[str, Any] = field(default_factory=dict)


def _sizes(n_train: int, n_test: int, side: int = 28) -> dict[str, int]:
    return {
        "train-images-idx3-ubyte": 16 + n_train * side * side,
        "train-labels-idx1-ubyte": 8 + n_train,
        "t10k-images-idx3-ubyte": 16 + n_test * side * side,
        "t10k-labels-idx1-ubyte": 8 + n_test,
    }


_SIZES = _sizes(60_000, 10_000)

MNIST = DatasetSpec(
    name="mnist",
    title="MNIST",
    classes=DIGITS,
    files={
        "train-images-idx3-ubyte": FileSum(_SIZES["train-images-idx3-ubyte"],
                                           "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
        "train-labels-idx1-ubyte": FileSum(_SIZES["train-labels-idx1-ubyte"],
                                           "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
        "t10k-images-idx3-ubyte": FileSum(_SIZES["t10k-images-idx3-ubyte"],
                                          "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
        "t10k-labels-idx1-ubyte": FileSum(_SIZES["t10k-labels-idx1-ubyte"],
                                          "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
    },
    # torchvision's https mirror first, TensorFlow Datasets' second (Keras's tf-keras-datasets/
    # holds MNIST only as mnist.npz, and Fashion-MNIST under MNIST's file names).
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",
             "https://storage.googleapis.com/cvdf-datasets/mnist/"),
    bundled=True,
    source="http://yann.lecun.com/exdb/mnist/ (LeCun, Cortes & Burges), CC BY-SA 3.0",
    torchvision="MNIST",
    get="omit --data-dir to use the bundled copy, or add --download",
)

# SHA-256 of the decompressed files, as Debian's dataset-fashion-mnist package installs them
# (the .deb is itself SHA-256-checked by the Debian archive). Zalando's own .gz files decompress
# to the same bytes; their published MD5s are of the compressed files, which Debian recompressed.
FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    title="Fashion-MNIST",
    classes=Classes(names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                           "Sneaker", "Bag", "Ankle boot")),
    files={
        "train-images-idx3-ubyte": FileSum(_SIZES["train-images-idx3-ubyte"],
                                           "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        "train-labels-idx1-ubyte": FileSum(_SIZES["train-labels-idx1-ubyte"],
                                           "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        "t10k-images-idx3-ubyte": FileSum(_SIZES["t10k-images-idx3-ubyte"],
                                          "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        "t10k-labels-idx1-ubyte": FileSum(_SIZES["t10k-labels-idx1-ubyte"],
                                          "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
    },
    # Zalando's repository first, Keras's copy of the same files second.
    mirrors=("https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
             "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"),
    search=("/usr/share/datasets/fashion-mnist",),
    source="https://github.com/zalandoresearch/fashion-mnist (Xiao, Rasul & Vollgraf 2017), MIT licence; "
           "on Debian: apt install dataset-fashion-mnist",
    torchvision="FashionMNIST",
    get="apt install dataset-fashion-mnist, or add --download (about 30 MB from github.com)",
)

# KMNIST's authors publish no checksums of their own; these MD5s of the .gz files are the ones
# torchvision and others pin. Sizes are exact (60,000 + 10,000 images of 28 x 28).
KMNIST = DatasetSpec(
    name="kmnist",
    title="Kuzushiji-MNIST",
    classes=Classes(names=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")),
    files={
        "train-images-idx3-ubyte": FileSum(_SIZES["train-images-idx3-ubyte"],
                                           gz_md5="bdb82020997e1d708af4cf47b453dcf7"),
        "train-labels-idx1-ubyte": FileSum(_SIZES["train-labels-idx1-ubyte"],
                                           gz_md5="e144d726b3acfaa3e44228e80efcd344"),
        "t10k-images-idx3-ubyte": FileSum(_SIZES["t10k-images-idx3-ubyte"],
                                          gz_md5="5c965bf0a639b31b8f53240b1b52f4d7"),
        "t10k-labels-idx1-ubyte": FileSum(_SIZES["t10k-labels-idx1-ubyte"],
                                          gz_md5="7320c461ea6c1c855c0b718fb2a4b134"),
    },
    mirrors=("https://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
    source="https://github.com/rois-codh/kmnist (Clanuwat et al. 2018), CC BY-SA 4.0",
    torchvision="KMNIST",
    get="add --download (about 20 MB from codh.rois.ac.jp)",
)

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (MNIST, FASHION_MNIST, KMNIST)}
FOLDER = "folder"  # any folder of IDX files, given by --data-dir
NAMES = (*DATASETS, FOLDER)


def spec(name: str) -> DatasetSpec:
    """The dataset called `name`, with a one-line error listing the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise VaelabError(
            f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}, or give --data-dir DIR for "
            "any folder holding the four IDX files"
        ) from None


def read_class_file(path: str | Path, n_labels: int | None = None) -> Classes:
    """Class names from a text file: one per line, in label order; blank lines and # comments skipped."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise VaelabError(
            f"class names file {path} does not exist; write one name per line in label order, or leave "
            "class_names unset to number the classes"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise VaelabError(
            f"cannot read class names file {path} ({exc}); it must be UTF-8 text, one name per line"
        ) from None
    names = tuple(line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))
    if not names:
        raise VaelabError(f"class names file {path} names no classes; write one name per line in label order")
    if len(set(names)) != len(names):
        raise VaelabError(f"class names file {path} names a class twice; each line must be a different name")
    if n_labels is not None and len(names) < n_labels:
        raise VaelabError(
            f"class names file {path} names {len(names)} classes but the labels go up to {n_labels - 1}; "
            "give one name per label"
        )
    return Classes(names=names)


def cache_dir(name: str) -> Path:
    """Where --download puts dataset `name` when no --data-dir is given, and where it is looked for after.

    $VAELAB_DATA/NAME if set, else $XDG_CACHE_HOME/vaelab/datasets/NAME, else ~/.cache/vaelab/datasets/NAME.
    """
    if os.environ.get("VAELAB_DATA"):
        return Path(os.environ["VAELAB_DATA"]).expanduser() / name
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "vaelab" / "datasets" / name


def numbered(n: int) -> Classes:
    """Classes without names: labelled by their numbers."""
    return Classes(names=tuple(str(i) for i in range(n)))


def classes_of_run(info: dict[str, Any]) -> Classes:
    """The classes a run recorded in its data info; runs from before datasets had names are digits."""
    recorded = info.get("classes")
    if isinstance(recorded, dict) and isinstance(recorded.get("names"), list):
        return Classes(names=tuple(str(n) for n in recorded["names"]), word=str(recorded.get("word", "class")))
    return DIGITS
