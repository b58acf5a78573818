"""Datasets on disk: find, read and check the IDX files, and binarize the images.

`find_dataset` says which folder a dataset is read from: the bundled MNIST, a
--data-dir, a folder where a system package installs it (`DatasetSpec.search`)
or the download cache, fetching missing files first when asked. `load_split`
reads one split from there. The named datasets (`vaelab.catalog.DATASETS`) are
verified against their pinned sizes and checksums; a `folder` dataset (any IDX
files in --data-dir) only for structure, with images of any size up to
`MAX_IMAGE_SIDE` and class names from a text file. The files themselves are read
and decoded by `vaelab.idx`.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from vaelab import catalog
from vaelab.catalog import CLASS_FILE, DIGITS, FOLDER, MNIST, Classes, DatasetSpec
from vaelab.download import download_dataset
from vaelab.errors import VaelabError
from vaelab.idx import idx_shape, parse_idx, read_bytes

IMAGE_SIDE = 28  # MNIST's images, and those of every named dataset, are 28 x 28
DATA_SIZE = IMAGE_SIDE * IMAGE_SIDE
MAX_IMAGE_SIDE = 512  # a folder dataset's images may be H x W with H, W up to this

# name (decompressed) -> (bytes, SHA-256 of the decompressed bytes); catalog.MNIST says the same
MNIST_FILES: dict[str, tuple[int, str]] = {name: (s.size, s.sha256) for name, s in MNIST.files.items()}
SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# The article's transform: ToTensor (byte / 255), Normalize((0.1307,), (0.3081,)),
# then keep pixels > 0.5. Solving (b / 255 - 0.1307) / 0.3081 > 0.5 for the byte b
# gives b > 255 * (0.1307 + 0.5 * 0.3081) = 72.61, i.e. b >= 73.
MNIST_MEAN, MNIST_STD, ARTICLE_CUT = 0.1307, 0.3081, 0.5
THRESHOLD_BYTE = math.floor(255 * (MNIST_MEAN + ARTICLE_CUT * MNIST_STD)) + 1  # 73


@dataclass(frozen=True)
class Split:
    """One split of the dataset as it lies on disk: raw bytes, not yet binarized."""

    images: torch.Tensor  # (N, H, W) uint8; 28 x 28 for the named datasets
    labels: torch.Tensor  # (N,) int64
    files: dict[str, str]  # file name -> SHA-256 of its decompressed bytes
    classes: Classes = DIGITS  # what the labels mean


def bundled_dir() -> Path:
    """The copy of MNIST that ships inside the package."""
    return Path(str(resources.files("vaelab") / "datasets" / "mnist"))


def locate_files(data_dir: str | Path, dataset: str = "mnist") -> dict[str, Path]:
    """Paths of the four IDX files of `dataset` in `data_dir`: flat, or in NAME/raw/ (torchvision's) or raw/."""
    root = Path(data_dir).expanduser()
    named = catalog.DATASETS.get(dataset)
    title = named.title if named else "set of IDX files"
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        fix = f"the {title} files, or add --download to fetch them there" if named else "the four IDX files"
        raise VaelabError(f"data directory {root} {what}; point --data-dir at the folder holding {fix}")
    best = _most_files(root, dataset)
    if len(best) == len(MNIST_FILES):
        return best
    missing = ", ".join(name for name in MNIST_FILES if name not in best)
    subfolders = dict.fromkeys((named.torchvision, named.name) if named else ("MNIST",))
    where = f"{next(sub for sub in subfolders if sub)}/raw/" if named else "MNIST/raw/"
    if named is None:
        fix = "copy them there, or name a dataset with --dataset instead of folder"
    elif named.bundled:
        fix = "add --download to fetch them, or omit --data-dir to use the bundled copy"
    else:
        fix = f"add --download to fetch them, or omit --data-dir to use {named.title} where installed or downloaded"
    raise VaelabError(
        f"no complete {title} in {root}: missing {missing} (each may be .gz, directly in the "
        f"folder or in {where}); {fix}"
    )


def _most_files(root: Path, dataset: str) -> dict[str, Path]:
    """The IDX files of `dataset` in the first of `root`'s accepted layouts that holds all four (flat, NAME/raw/
    as torchvision writes it, raw/), else in the one that holds the most: name -> path."""
    named = catalog.DATASETS.get(dataset)
    subfolders = dict.fromkeys((named.torchvision, named.name) if named else ("MNIST",))
    best: dict[str, Path] = {}
    for folder in (root, *(root / sub / "raw" for sub in subfolders if sub), root / "raw"):
        found = {}
        for name in MNIST_FILES:  # every dataset's files have MNIST's names
            # Also accept the common 'train-images.idx3-ubyte' spelling.
            spellings = (name, name.replace("-idx", ".idx"))
            candidates = [folder / (s + ext) for s in spellings for ext in (".gz", "")]
            hit = next((c for c in candidates if c.is_file()), None)
            if hit is not None:
                found[name] = hit
        if len(found) == len(MNIST_FILES):
            return found
        best = max(best, found, key=len)
    return best


def find_dataset(dataset: str = "mnist", data_dir: str | Path | None = None, *, download: bool = False,
                 echo=print) -> Path:
    """The folder to read `dataset` from, fetching its missing files first if `download`.

    With `data_dir`, that folder (the files flat in it or in a layout `locate_files`
    accepts); `folder` needs one. Without, MNIST is the bundled copy and any other
    named dataset is looked for in its `search` folders, then in the download cache
    (`catalog.cache_dir`), where `download` puts it. `folder` with `download` fetches
    MNIST's missing files, as --download --data-dir DIR did before datasets had
    names. Files are checked only for presence here; `load_split` verifies them.
    """
    if dataset == FOLDER:
        if data_dir is None:
            raise VaelabError("--dataset folder needs --data-dir: the folder holding the four IDX files")
        root = Path(data_dir).expanduser()
        if download and not _complete(root, FOLDER):  # what --download --data-dir DIR meant before names: MNIST
            found = _most_files(root, FOLDER) if root.is_dir() else {}
            yours = {name: path for name, path in found.items()  # MNIST's own, e.g. from a cut-off download: fine
                     if sha256(read_bytes(path)) != MNIST.files[name].sha256}
            if yours:  # MNIST's files would be read beside these, or in their place: two datasets mixed, silently
                raise VaelabError(
                    f"{root} holds {len(yours)} IDX file{'s' if len(yours) > 1 else ''} that "
                    f"{'are' if len(yours) > 1 else 'is'} not MNIST's "
                    f"({', '.join(p.name for p in yours.values())}) but not all four; --download would fetch "
                    "MNIST's beside them and mix two datasets: add the missing files yourself, or give --download "
                    "a folder without IDX files of other data (or --dataset mnist, whose files are checked)")
            echo(f"{root} lacks IDX files: fetching MNIST's (--dataset names another dataset to fetch)")
            download_dataset(catalog.spec("mnist"), root, echo=echo)
        locate_files(root, FOLDER)
        return root
    spec = catalog.spec(dataset)
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        if download and not _complete(root, dataset):
            download_dataset(spec, root, echo=echo)
        locate_files(root, dataset)
        return root
    if spec.bundled:
        return bundled_dir()
    places = [*(Path(folder) for folder in spec.search), catalog.cache_dir(spec.name)]
    for place in places:
        if _complete(place, dataset):
            return place
    if download:
        download_dataset(spec, places[-1], echo=echo)
        locate_files(places[-1], dataset)
        return places[-1]
    raise VaelabError(f"{spec.title} is not in {' nor '.join(map(str, places))}; {spec.get}")


def _check_one_copy(path: Path, data: bytes) -> None:
    """For a folder of IDX files, where no checksum tells a stale copy from a new one: NAME.gz, which is read,
    and an uncompressed NAME beside it must hold the same bytes."""
    other = path.with_suffix("") if path.suffix == ".gz" else None
    if other is None or not other.is_file() or read_bytes(other) == data:
        return
    raise VaelabError(f"{path} and {other.name} beside it hold different {path.with_suffix('').name} data, and "
                      f"vaelab would read the .gz one; remove the stale copy (or move it out of {path.parent})")


def _complete(folder: Path, dataset: str) -> bool:
    """Whether `folder` holds all four files of `dataset`."""
    try:
        locate_files(folder, dataset)
    except VaelabError:
        return False
    return True


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify_checksum(name: str, data: bytes, source: Path | str, spec: DatasetSpec = MNIST, *,
                    bundled: bool = False) -> None:
    """Fail unless `data` is the genuine file `name` of `spec`: its SHA-256 where pinned, else its size."""
    genuine = spec.files[name]
    elsewhere = f"give --data-dir a folder of the genuine {spec.title} files"
    if bundled:
        fix = "the copy bundled with vaelab is damaged: reinstall vaelab"
    else:
        fix = (f"delete it and fetch it again (`vaelab train --dataset {spec.name} --download`), {elsewhere}, or "
               f"train with --dataset folder for IDX files other than {spec.title}")
    if genuine.sha256 is not None:
        actual = sha256(data)
        if actual != genuine.sha256:
            other = next((o.title for o in catalog.DATASETS.values() if o.name != spec.name
                          and name in o.files and o.files[name].sha256 == actual), None)
            if other:  # a genuine file of another dataset: nothing to delete
                raise VaelabError(f"{source} is {other}'s file {name}, not {spec.title}'s; {elsewhere}")
            raise VaelabError(
                f"{source} fails its checksum (SHA-256 {actual[:16]}..., expected {genuine.sha256[:16]}...): "
                f"it is not the genuine {spec.title} file {name}; {fix}"
            )
    elif len(data) != genuine.size:
        raise VaelabError(
            f"{source} holds {len(data)} bytes, not the {genuine.size} of the genuine {spec.title} file {name}; "
            f"{fix}"
        )


def load_split(split: str, data_dir: str | Path | None = None, *, dataset: str | None = None,
               class_names: str | Path | None = None) -> Split:
    """Read one split ('train' or 'test') of `dataset` from `data_dir` or where `find_dataset` finds it.

    `dataset` unset means what it meant before datasets had names: the bundled
    MNIST without `data_dir`, any IDX files (`folder`) with one. Named datasets
    are verified against their pinned sizes and checksums, and have their own
    class names. A folder's files are only checked for structure; its classes are
    named by `class_names`, else by DATA_DIR/classes.txt if there, else numbered.
    Every file's checksum is returned so the run can record what it was trained on.
    """
    if split not in SPLITS:
        raise VaelabError(f"unknown split {split!r}; use 'train' or 'test'")
    dataset = dataset or ("mnist" if data_dir is None else FOLDER)
    spec = catalog.DATASETS.get(dataset)
    if spec is not None and class_names is not None:
        raise VaelabError(f"class_names names the classes of --dataset folder only; {dataset} has its own names")
    root = find_dataset(dataset, data_dir)
    paths = locate_files(root, dataset)
    image_name, label_name = SPLITS[split]
    arrays, files = {}, {}
    for name in (image_name, label_name):
        data = read_bytes(paths[name])
        if spec is not None:
            verify_checksum(name, data, paths[name], spec, bundled=spec.bundled and root == bundled_dir())
        else:  # no checksum to tell a stale copy: two copies of a file must agree
            _check_one_copy(paths[name], data)
        arrays[name] = parse_idx(data, name=str(paths[name]))
        files[name] = sha256(data)
    images, labels = arrays[image_name], arrays[label_name]
    _check_shapes(images, labels, paths, split, named=spec is not None)
    if spec is not None:
        classes = spec.classes
        if int(labels.max()) >= len(classes.names):
            raise VaelabError(
                f"{paths[label_name]} holds label {int(labels.max())}, but {spec.title} has {len(classes.names)} "
                f"classes: it is not the genuine {spec.title} file; delete it and fetch it again with --download"
            )
    else:  # numbered or named, the classes are those of both splits, so that train and test agree
        other = paths[SPLITS["test" if split == "train" else "train"][1]]
        top = max(int(labels.max()), int(parse_idx(read_bytes(other), name=str(other)).max(initial=0)))
        classes = folder_classes(root, paths[label_name].parent, class_names, top + 1, files)
    return Split(
        images=torch.from_numpy(images.copy()),
        labels=torch.from_numpy(labels.astype(np.int64)),
        files=files,
        classes=classes,
    )


def _check_shapes(images: np.ndarray, labels: np.ndarray, paths: dict[str, Path], split: str, *,
                  named: bool) -> None:
    """Fail unless `images` are (N, H, W) images of an allowed size, the same as the other split's, with N labels."""
    image_name, label_name = SPLITS[split]
    side = f"{IMAGE_SIDE}, {IMAGE_SIDE}" if named else "H, W"
    if images.ndim != 3 or (named and images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE)):
        raise VaelabError(f"{paths[image_name]} holds arrays of shape {images.shape}; expected (N, {side}) images")
    if not all(1 <= n <= MAX_IMAGE_SIDE for n in images.shape[1:]):
        raise VaelabError(
            f"{paths[image_name]} holds images of {images.shape[1]} x {images.shape[2]} pixels; vaelab reads "
            f"images of 1 to {MAX_IMAGE_SIDE} pixels a side"
        )
    if labels.ndim != 1:
        raise VaelabError(f"{paths[label_name]} holds shape {labels.shape}; expected (N,) labels")
    if len(images) != len(labels):
        raise VaelabError(
            f"{paths[image_name]} has {len(images)} images but {paths[label_name]} has "
            f"{len(labels)} labels; the two files must come from the same split"
        )
    if len(images) == 0:
        raise VaelabError(f"{paths[image_name]} holds no images")
    other = paths[SPLITS["test" if split == "train" else "train"][0]]
    shape = idx_shape(other)
    if shape is not None and len(shape) == 3 and shape[1:] != images.shape[1:]:
        raise VaelabError(
            f"{paths[image_name]} holds images of {images.shape[1]} x {images.shape[2]} pixels but {other} of "
            f"{shape[1]} x {shape[2]}; the training and test images must have one size"
        )


def folder_classes(root: Path, files_dir: Path, class_names: str | Path | None, n_labels: int,
                   files: dict[str, str]) -> Classes:
    """A folder dataset's classes: from `class_names`, else a classes.txt in `root` or beside the files, else
    those of the named dataset whose genuine files these are (by their SHA-256s, `files`), else numbered."""
    if class_names is not None:
        return catalog.read_class_file(class_names, n_labels)
    for folder in dict.fromkeys((root, files_dir)):
        if (folder / CLASS_FILE).is_file():
            return catalog.read_class_file(folder / CLASS_FILE, n_labels)
    for spec in catalog.DATASETS.values():
        if all(spec.files[name].sha256 == digest for name, digest in files.items()):
            return spec.classes
    return catalog.numbered(n_labels)


# --- binarization -------------------------------------------------------------
def binarize_threshold(images: torch.Tensor) -> torch.Tensor:
    """The article's black-and-white images: 1.0 where byte >= 73, else 0.0. (N, 784)"""
    return (images.reshape(len(images), -1) >= THRESHOLD_BYTE).float()


def grey_levels(images: torch.Tensor) -> torch.Tensor:
    """Bytes scaled to [0, 1], the Bernoulli means of dynamic binarization. (N, 784)"""
    return images.reshape(len(images), -1).float() / 255.0


def binarize_dynamic(grey: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A fresh Bernoulli sample of grey levels (Salakhutdinov & Murray 2008)."""
    return torch.bernoulli(grey, generator=generator)


def binarize(images: torch.Tensor, method: str, generator: torch.Generator) -> torch.Tensor:
    """Images as the model sees them, (N, 784) floats in {0, 1}, on the generator's device.

    'threshold' is deterministic; 'dynamic' draws one Bernoulli sample (used for the
    test set, which stays fixed while the training images are redrawn every batch).
    """
    images = images.to(generator.device)
    if method == "threshold":
        return binarize_threshold(images)
    if method == "dynamic":
        return binarize_dynamic(grey_levels(images), generator)
    raise VaelabError(f"unknown binarization {method!r}; use threshold or dynamic")


# --- provenance -------------------------------------------------------------------
class DataMismatchWarning(UserWarning):
    """Data read now differ from the files a run recorded when it was trained."""


def data_mismatches(recorded: dict[str, str], found: dict[str, str]) -> list[str]:
    """The files of `found` whose SHA-256 differs from the one `recorded`, described one each.

    Files a run did not record (runs of very old versions) are not compared.
    """
    return [
        f"{name}: recorded {recorded[name][:12]}…, found {digest[:12]}…"
        for name, digest in sorted(found.items())
        if name in recorded and recorded[name] != digest
    ]


def absolute_data_dir(data_dir: str | Path | None) -> str | None:
    """The absolute path a (possibly relative, possibly ~) --data-dir (or --class-names) meant, as the run
    stores it."""
    return None if data_dir is None else str(Path(os.path.abspath(Path(data_dir).expanduser())))
