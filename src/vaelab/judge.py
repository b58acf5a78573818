"""An independent judge of generated images: a small convolutional classifier and the Fréchet distance.

The judge sees images as vaelab's models do, black and white (threshold binarization,
byte >= 73). Two numbers come from it. Its accuracy on images generated for each
class says whether "a 6" comes out as a 6. The Fréchet distance between its features
(the 128 activations before the class logits) of generated and of real images says
how far the generated set is from the real one as a whole: FID's formula (Heusel et
al. 2017), with this judge's features in place of Inception's. Real test images
against real training images give the floor that sampling alone leaves.

A judge file is safetensors: the weights plus JSON metadata (dataset, checksums of
the files it was trained on, architecture, test accuracy, the command that made it).
Loading it never executes code, and a damaged file is a one-line VaelabError.
Trained judges ship in `vaelab/judges/` (its README says how each was made).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn
from torch.nn import functional as F

from vaelab.data import binarize_threshold, load_split
from vaelab.device import resolve_device
from vaelab.errors import VaelabError
from vaelab.files import atomic_write, display, dumps
from vaelab.resources import ThreadTuner

FORMAT = "vaelab-judge/1"
SHIPPED = "judges"  # folder of the package holding the trained judges, DATASET.safetensors
MAX_FILE = 1 << 26  # 64 MiB: a judge is under 2 MB; never read a planted giant


@dataclass(frozen=True)
class JudgeArgs:
    """The judge's architecture: everything needed to rebuild it from its file."""

    image_shape: tuple[int, int] = (28, 28)  # (H, W) of the images it classifies
    n_classes: int = 10  # outputs: one logit per class
    channels: tuple[int, int] = (32, 64)  # of its two 3 x 3 convolutions, each followed by 2 x 2 max-pooling
    features: int = 128  # width of the dense layer whose activations are the Fréchet features


class Judge(nn.Module):
    """conv 3x3 -> pool -> conv 3x3 -> pool -> dense `features` (the Fréchet features) -> class logits."""

    def __init__(self, args: JudgeArgs):
        super().__init__()
        self.args = args
        c1, c2 = args.channels
        h, w = args.image_shape
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.dense = nn.Linear(c2 * (h // 4) * (w // 4), args.features)
        self.dropout = nn.Dropout(0.5)
        self.out = nn.Linear(args.features, args.n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Binary images (B, H*W) -> features (B, F), non-negative (after ReLU)."""
        h = x.reshape(-1, 1, *self.args.image_shape)  # (B, 1, H, W)
        h = F.max_pool2d(F.relu(self.conv1(h)), 2)  # (B, C1, H/2, W/2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)  # (B, C2, H/4, W/4)
        return F.relu(self.dense(h.flatten(1)))  # (B, F)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (B, n_classes)."""
        return self.out(self.dropout(self.features(x)))


@dataclass
class LoadedJudge:
    """A judge ready to use, with what its file says about it."""

    model: Judge
    info: dict[str, Any]  # dataset, classes, data_sha256, test_accuracy, command, ...
    sha256: str  # of the file's bytes
    name: str  # how to show it: the shipped name (e.g. "mnist") or the file's path


# --- the metric ---------------------------------------------------------------------
def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, cov1) and N(mu2, cov2): FID's formula (Heusel et al. 2017, eq. 6).

    d^2 = |mu1 - mu2|^2 + Tr(cov1 + cov2 - 2 (cov1 cov2)^(1/2)). The trace of the square root is
    computed as Tr((s1 cov2 s1)^(1/2)) with s1 = cov1^(1/2): the same eigenvalues, but of a symmetric
    positive semi-definite matrix, so eigh gives them stably (sqrtm of the non-symmetric product can
    return complex noise); round-off below zero is clipped. In float64.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape or cov1.shape != (len(mu1), len(mu1)):
        raise ValueError(f"shapes differ: means {mu1.shape}, {mu2.shape}; covariances {cov1.shape}, {cov2.shape}")
    s1 = _psd_sqrt(cov1)
    middle = s1 @ cov2 @ s1
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * tr_sqrt, 0.0))


def _psd_sqrt(cov: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric positive semi-definite matrix (negative round-off clipped)."""
    values, vectors = np.linalg.eigh((cov + cov.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def feature_statistics(features: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (F,) and unbiased covariance (F, F) of features (N, F), in float64."""
    f = np.asarray(features.detach().cpu() if torch.is_tensor(features) else features, np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"feature statistics need at least 2 feature vectors (N, F), got shape {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False)


@torch.inference_mode()
def classify(judge: Judge, x: torch.Tensor, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted classes (N,) and features (N, F) of binary images x (N, H*W), batched, on the judge's device."""
    judge.eval()
    device = next(judge.parameters()).device
    preds, feats = [], []
    threads = ThreadTuner(device)  # 30,000 images for a score: the cores others leave free, the same numbers
    try:
        for i in range(0, len(x), batch_size):
            threads.adjust()
            f = judge.features(x[i:i + batch_size].to(device, torch.float32))
            preds.append(judge.out(f).argmax(1).cpu())
            feats.append(f.cpu())
    finally:
        threads.restore()
    return torch.cat(preds), torch.cat(feats)


def accuracy(predicted: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of predictions equal to the labels."""
    return (predicted == labels.cpu()).double().mean().item()


def per_class_accuracy(predicted: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """{label: accuracy on the images of that label}, labels as strings (JSON keys), for the labels present."""
    labels = labels.cpu()
    return {str(int(c)): accuracy(predicted[labels == c], labels[labels == c]) for c in labels.unique(sorted=True)}


# --- training -----------------------------------------------------------------------
def train_judge(dataset: str = "mnist", *, data_dir: str | None = None, epochs: int = 5, seed: int = 0,
                batch_size: int = 128, lr: float = 1e-3, args: JudgeArgs | None = None, device: str = "cpu",
                n_train: int | None = None, command: str = "", echo: Callable[[str], Any] = print) -> LoadedJudge:
    """Train a judge on the training set of `dataset`, binarized at byte >= 73; report test accuracy per epoch.

    Adam at `lr`, halved after every epoch past the first half; seeded initialisation, dropout and
    shuffling, so the same seed on the same machine gives the same judge. `n_train` uses only the
    first images (for tests).
    """
    if epochs < 1:
        raise VaelabError(f"--epochs must be at least 1, got {epochs}")
    train, test = (load_split(s, data_dir, dataset=dataset) for s in ("train", "test"))
    dev = resolve_device(device)  # on CUDA, deterministic cuDNN kernels: the same judge from the same seed
    n = len(train.labels) if n_train is None else min(n_train, len(train.labels))
    x, y = binarize_threshold(train.images[:n]).to(dev), train.labels[:n].to(dev)
    x_test, y_test = binarize_threshold(test.images), test.labels
    n_classes = int(max(train.labels.max(), test.labels.max())) + 1
    args = args or JudgeArgs()
    args = JudgeArgs(image_shape=tuple(train.images.shape[1:]), n_classes=n_classes, channels=tuple(args.channels),
                     features=args.features)
    if min(args.image_shape) < 4:
        raise VaelabError(f"the judge needs images of at least 4 x 4 pixels, got {args.image_shape}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Judge(args)
    model.to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator(dev).manual_seed(seed)
    history = []
    start = time.perf_counter()
    echo(f"training a judge on {dev.type}: {n} {dataset} images, {epochs} epochs")
    for epoch in range(1, epochs + 1):
        model.train()
        if epoch > (epochs + 1) // 2:
            for group in optimizer.param_groups:
                group["lr"] /= 2
        order = torch.randperm(n, generator=generator, device=dev)
        total = torch.zeros((), device=dev)
        with torch.random.fork_rng(devices=[]):  # dropout draws from a stream of its own, seeded per epoch
            torch.manual_seed(seed * 1000 + epoch)
            for i in range(0, n, batch_size):
                index = order[i:i + batch_size]
                loss = F.cross_entropy(model(shift(x[index], args.image_shape, generator)), y[index], reduction="sum")
                optimizer.zero_grad(set_to_none=True)
                (loss / len(index)).backward()
                optimizer.step()
                total += loss.detach()
        predicted, _ = classify(model, x_test)
        test_acc = accuracy(predicted, y_test)
        history.append({"epoch": epoch, "loss": total.item() / n, "test_accuracy": test_acc})
        echo(f"  epoch {epoch:2d}  loss {total.item() / n:.4f}  test accuracy {100 * test_acc:.2f}%  "
             f"({time.perf_counter() - start:.0f} s)")
    info = {
        "dataset": dataset,
        "classes": train.classes.to_dict(),
        "data_sha256": {**train.files, **test.files},
        "n_train": n,
        "n_test": len(y_test),
        "test_accuracy": history[-1]["test_accuracy"],
        "epochs": epochs,
        "seed": seed,
        "batch_size": batch_size,
        "lr": lr,
        "history": history,
        "binarization": "threshold",
        "command": command,
        "torch": torch.__version__,
    }
    return LoadedJudge(model=model.cpu().eval(), info=info, sha256="", name=dataset)


MAX_SHIFT = 2  # pixels: digits are centred with a 4-pixel empty border, so shifts keep them whole


def shift(x: torch.Tensor, image_shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """The batch x (B, H*W) moved by one random (dy, dx) in [-2, 2]^2: the judge learns shapes, not places."""
    dy, dx = torch.randint(-MAX_SHIFT, MAX_SHIFT + 1, (2,), generator=generator, device=generator.device).tolist()
    return x.reshape(-1, *image_shape).roll((dy, dx), dims=(1, 2)).reshape(len(x), -1)


# --- files --------------------------------------------------------------------------
def save_judge(judge: LoadedJudge, path: str | Path) -> Path:
    """Write the judge to `path` as safetensors: weights plus JSON metadata (architecture and `info`)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in judge.model.state_dict().items()}
    metadata = {"format": FORMAT, "args": dumps(asdict(judge.model.args)), "info": dumps(judge.info)}
    metadata["sha256"] = _digest(tensors, metadata)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(Path(path), save_safetensors(tensors, metadata=metadata))


def shipped_path(dataset: str) -> Path | None:
    """The judge shipped for `dataset` (vaelab/judges/DATASET.safetensors), or None if there is none."""
    path = Path(str(resources.files("vaelab") / SHIPPED / f"{dataset}.safetensors"))
    return path if path.is_file() else None


def load_judge(path: str | Path, *, name: str | None = None) -> LoadedJudge:
    """Read a judge file; a missing or damaged one is a one-line VaelabError. Nothing in it is executed."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_FILE:
            raise ValueError(f"it is larger than {MAX_FILE >> 20} MiB")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise VaelabError(f"judge file {display(path)} does not exist; train one with "
                          f"`vaelab judge train --dataset NAME --out {display(path)}`") from None
    except OSError as exc:
        raise VaelabError(f"cannot read judge file {display(path)} ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise _damaged(path, exc) from None
    if name is None and not _says_judge(raw):  # a checkpoint, a config, a picture given as --judge: no judge at all
        raise VaelabError(f"{display(path)} is not a vaelab judge file (its header names no judge format); give "
                          "--judge a file that `vaelab judge train --out FILE` wrote, or leave --judge out for the "
                          "judge shipped for the run's dataset")
    try:
        model, info = _parse(raw)
    except (SafetensorError, ValueError, TypeError, KeyError, RuntimeError, RecursionError) as exc:
        raise _damaged(path, exc) from None
    return LoadedJudge(model=model, info=info, sha256=hashlib.sha256(raw).hexdigest(),
                       name=name if name is not None else display(path))


def _damaged(path: Path, reason: object) -> VaelabError:
    reason = " ".join(str(reason).split())[:200]
    return VaelabError(f"judge file {display(path)} is damaged and cannot be read ({reason}); train it again with "
                       "`vaelab judge train` or reinstall vaelab for a shipped one")


def _says_judge(raw: bytes) -> bool:
    """Whether `raw` starts as a judge file does: a safetensors header (whole, or cut off) that names a judge
    format, this one or another version of it. Nothing else is read: the rest may be damaged."""
    size = int.from_bytes(raw[:8], "little")
    return len(raw) > 8 and size >= 2 and FORMAT.split("/")[0].encode() + b"/" in raw[8:8 + size]


def _parse(raw: bytes) -> tuple[Judge, dict[str, Any]]:
    tensors = load_safetensors(raw)
    header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")].decode("utf-8"))
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict) or set(metadata) != {"format", "args", "info", "sha256"}:
        raise ValueError("its metadata are not a judge's (format, args, info, sha256)")
    if metadata["format"] != FORMAT:
        raise ValueError(f"unknown format {str(metadata['format'])[:40]!r}")
    if metadata["sha256"] != _digest(tensors, metadata):
        raise ValueError("its contents do not match their checksum")
    values, info = _strict_json(metadata["args"]), _strict_json(metadata["info"])
    if not isinstance(values, dict) or set(values) != {f for f in JudgeArgs.__dataclass_fields__}:
        raise ValueError("its architecture arguments are not a judge's")
    args = JudgeArgs(image_shape=_ints(values["image_shape"], 2, "image_shape", 4, 512),
                     n_classes=_ints([values["n_classes"]], 1, "n_classes", 2, 1000)[0],
                     channels=_ints(values["channels"], 2, "channels", 1, 1024),
                     features=_ints([values["features"]], 1, "features", 2, 4096)[0])
    if not isinstance(info, dict) or not isinstance(info.get("test_accuracy"), float | int):
        raise ValueError("its info does not record a test accuracy")
    with torch.device("meta"):  # names and shapes only: nothing is allocated
        shapes = {k: v.shape for k, v in Judge(args).state_dict().items()}
    if {k: v.shape for k, v in tensors.items()} != shapes:
        raise ValueError("its tensors are not those of the architecture it names")
    if not all(v.dtype == torch.float32 and bool(torch.isfinite(v).all()) for v in tensors.values()):
        raise ValueError("its weights are not all finite float32 numbers")
    model = Judge(args)
    model.load_state_dict(tensors)
    return model.eval(), info


def _ints(value: Any, n: int, name: str, low: int, high: int) -> tuple[int, ...]:
    if not isinstance(value, list) or len(value) != n or not all(
            isinstance(v, int) and not isinstance(v, bool) and low <= v <= high for v in value):
        raise ValueError(f"its {name} is not {n} integer(s) between {low} and {high}")
    return tuple(value)


def _strict_json(text: str) -> Any:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not a number vaelab writes")

    return json.loads(text, parse_constant=refuse)


def _digest(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """SHA-256 of the tensors (names, dtypes, shapes, bytes) and of every metadata entry but `sha256`."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    for key in sorted(metadata):
        if key != "sha256":
            for text in (key, metadata[key]):
                data = text.encode()
                h.update(len(data).to_bytes(8, "little") + data)
    return h.hexdigest()


def describe(judge: LoadedJudge) -> str:
    """One line: which judge, trained on what, how accurate."""
    acc = judge.info.get("test_accuracy")
    shown = f"{100 * acc:.2f}%" if isinstance(acc, float | int) and math.isfinite(acc) else "unknown"
    return f"judge {judge.name} ({judge.info.get('dataset', '?')}, test accuracy {shown})"
