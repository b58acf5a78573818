"""Run directories: self-describing, crash-safe checkpoints that load without executing code.

A run directory holds

    checkpoint.safetensors  weights, optimizer, RNG state, training position, config,
                            architecture name and arguments and per-epoch metrics, in one file
    config.json             the resolved training config, for people and `--config`
    metrics.jsonl           one JSON object per completed epoch
    eval.json               test-set scores, once `vaelab eval` has run

Every file is written by `vaelab.files.atomic_write`: to a temporary name,
flushed to disk and renamed over the old one, so a crash or Ctrl-C leaves either
the old or the new file, never half of one. The checkpoint is a safetensors
file: tensors plus string metadata, no pickle, so opening a run from a stranger
cannot run their code. Its SHA-256 covers the tensors and the metadata, and
every field read is checked (vaelab.checkpoint_checks), so a damaged or forged
file is one clear error.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from vaelab.checkpoint_checks import (
    OTHER_TENSORS,
    check,
    check_config,
    check_data,
    check_keys,
    check_metrics,
    check_model_args,
    check_position,
    checked_model_state,
    checked_optimizer_state,
    checked_rng_state,
    epoch_extras,
    show,
)
from vaelab.config import TrainConfig
from vaelab.errors import VaelabError
from vaelab.files import atomic_write, display, dumps, write_json
from vaelab.models import VAEModel, rebuild

CHECKPOINT = "checkpoint.safetensors"
CONFIG = "config.json"
METRICS = "metrics.jsonl"
EVAL = "eval.json"
FORMAT = "vaelab-checkpoint/2"  # its sha256 covers the tensors and every other metadata entry
FORMAT_1 = "vaelab-checkpoint/1"  # its sha256 covered the tensors only; still read
FIELDS = ("config", "model_args", "optimizer", "position", "metrics", "data")  # JSON-encoded metadata


@dataclass
class Position:
    """Where training stands: enough to continue exactly where it stopped."""

    epoch: int = 0  # epochs completed
    batch: int = 0  # batches done in the epoch under way; 0 at an epoch boundary
    step: int = 0  # optimizer steps in total
    elapsed: float = 0.0  # seconds spent training, all sessions together


@dataclass
class Checkpoint:
    """Everything `vaelab train` saves, as plain objects."""

    config: TrainConfig
    model_args: dict[str, Any]  # the architecture's name and constructor arguments (vaelab.models.named_args)
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any]
    rng_state: torch.Tensor  # the training generator's state (uint8)
    position: Position
    metrics: list[dict[str, Any]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    # Mid-epoch only: the epoch's permutation and its running sums.
    perm: torch.Tensor | None = None
    sums: torch.Tensor | None = None


@dataclass
class Run:
    """A trained run, loaded for use: the model in eval mode plus its records."""

    path: Path
    config: TrainConfig
    model: VAEModel  # its image_shape, latent_size and data_size describe the data it models
    epoch: int
    metrics: list[dict[str, Any]]
    data: dict[str, Any]
    step: int = 0  # optimizer steps behind these weights
    weights_sha256: str = ""  # digest of exactly these weights: scores and figures name it
    batch: int = 0  # batches into epoch `epoch` + 1 when stopped mid-epoch, else 0

    @property
    def where(self) -> str:
        """Where these weights stand, in words: "epoch 10", or "144 batches into epoch 1" mid-epoch."""
        return batches_into(self.batch, self.epoch + 1) if self.batch else f"epoch {self.epoch:,}"


def batches_into(batch: int, epoch: int) -> str:
    """A mid-epoch position in words: "1 batch into epoch 2", "144 batches into epoch 1"."""
    return f"{batch:,} batch{'' if batch == 1 else 'es'} into epoch {epoch:,}"


# --- writing --------------------------------------------------------------------
def save_checkpoint(path: Path, ckpt: Checkpoint) -> None:
    """Write the checkpoint, then the human-readable config and metrics beside it."""
    if not isinstance(ckpt.model_args.get("name"), str):  # a run must name its architecture to load again
        raise ValueError("model_args must name the architecture: save vaelab.models.named_args(model)")
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in ckpt.model_state.items()}
    optim_tensors, optim_meta = _split_optimizer_state(ckpt.optimizer_state)
    tensors.update(optim_tensors)
    tensors["rng.train"] = ckpt.rng_state.cpu()
    if ckpt.perm is not None:
        tensors["epoch.perm"] = ckpt.perm.cpu().contiguous()
        tensors["epoch.sums"] = ckpt.sums.cpu().contiguous()
    metadata = {
        "format": FORMAT,
        "config": dumps(ckpt.config.to_dict()),
        "model_args": dumps(ckpt.model_args),
        "optimizer": dumps(optim_meta),
        "position": dumps(asdict(ckpt.position)),
        "metrics": dumps(ckpt.metrics),
        "data": dumps(ckpt.data),
    }
    metadata["sha256"] = _digest(tensors, metadata)
    write_checkpoint(path, save_safetensors(tensors, metadata=metadata), ckpt)


def write_checkpoint(path: Path, raw: bytes, ckpt: Checkpoint) -> None:
    """Write `raw`, the bytes of the checkpoint `ckpt`, as the run's checkpoint, then its config and metrics."""
    atomic_write(path / CHECKPOINT, raw, root=path)
    write_json(path / CONFIG, ckpt.config.to_dict(), root=path)
    atomic_write(path / METRICS, "".join(dumps(m) + "\n" for m in ckpt.metrics).encode(), root=path)


def weights_digest(model_state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a model's weights alone: what a score or a figure was computed from."""
    return _digest({f"model.{k}": v for k, v in model_state.items()})


def _digest(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> str:
    """SHA-256 of the tensors (names, dtypes, shapes, bytes), then of every metadata entry but `sha256`.

    Entries go in sorted and length-prefixed; format 1 hashed the tensors alone. (safetensors has no checksum.)
    """
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(_raw_bytes(t))
    for key in sorted(metadata or {}):
        if key != "sha256":
            for text in (key, metadata[key]):
                data = text.encode()
                h.update(len(data).to_bytes(8, "little") + data)
    return h.hexdigest()


def _raw_bytes(t: torch.Tensor) -> Any:
    """The tensor's bytes in memory order, as a buffer (no copy where numpy knows the dtype)."""
    t = t.detach().cpu().contiguous()
    try:
        return t.numpy()
    except TypeError:  # bfloat16 and other dtypes numpy lacks
        return t.reshape(-1).view(torch.uint8).numpy()


def _split_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors go to safetensors; scalars and hyperparameters go to JSON metadata."""
    tensors, scalars = {}, {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


# --- reading --------------------------------------------------------------------
def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a run's checkpoint, with a clear error if it is missing or damaged."""
    return read_checkpoint(checkpoint_bytes(path), Path(path) / CHECKPOINT)


def checkpoint_bytes(path: str | Path) -> bytes:
    """The bytes of the run's checkpoint file, read at once, whole (one state even while training writes
    the next: it replaces the file, never rewrites it); a clear error if the run or the file is missing."""
    path = Path(path)
    file = path / CHECKPOINT
    if not path.exists():
        raise VaelabError(f"no run at {path}; train one with `vaelab train --out {path}`")
    if not path.is_dir():
        raise VaelabError(f"{path} is a file, not a vaelab run; give the folder that `vaelab train --out` wrote")
    if not file.is_file():
        raise VaelabError(
            f"{path} is not a vaelab run (no {CHECKPOINT} in it); give the folder "
            "that `vaelab train --out` wrote"
        )
    try:
        return file.read_bytes()
    except OSError as exc:
        raise _damaged(file, exc.strerror or exc) from None


def read_checkpoint(raw: bytes, file: str | Path = CHECKPOINT) -> Checkpoint:
    """The checkpoint in `raw`, the bytes of `file`: checked, or a one-line VaelabError if damaged."""
    try:
        return _parse(raw)
    except (SafetensorError, ValueError, TypeError) as exc:
        raise _damaged(Path(file), exc) from None


def load_run(path: str | Path, *, device: str | torch.device = "cpu") -> Run:
    """Load a trained run: `load_run("runs/demo").model` is ready to encode and decode."""
    ckpt = load_checkpoint(path)
    try:
        model = rebuild(ckpt.model_args)
        model.load_state_dict(ckpt.model_state)
    except (RuntimeError, ValueError) as exc:  # load_checkpoint's checks make this unreachable; never a traceback
        raise _damaged(Path(path) / CHECKPOINT, exc) from None
    return Run(
        path=Path(path),
        config=ckpt.config,
        model=model.to(device).eval(),
        epoch=ckpt.position.epoch,
        metrics=ckpt.metrics,
        data=ckpt.data,
        step=ckpt.position.step,
        weights_sha256=weights_digest(ckpt.model_state),
        batch=ckpt.position.batch,
    )


def _damaged(file: Path, reason: object) -> VaelabError:
    reason = " ".join(str(reason).split())  # one line, whatever the cause said
    return VaelabError(f"{display(file)} is damaged and cannot be read ({reason}); restore it from a backup "
                       "or train the run again")


def _parse(raw: bytes) -> Checkpoint:
    """The checkpoint in `raw`, every field checked; a ValueError names the first thing wrong.

    A checksum proves only that the writer wrote this, and anyone can compute one: so every field is
    then checked against the rest (tensors against the model arguments, the optimizer against them).
    """
    tensors = load_safetensors(raw)
    metadata = _read_metadata(raw)
    _check_digest(tensors, metadata)
    for name in sorted(tensors):
        check(name.startswith(("model.", "optimizer.")) or name in OTHER_TENSORS, f"unexpected tensor {show(name)}")
    meta = {key: _json(metadata, key) for key in FIELDS}
    config = check_config(meta["config"])
    model_args = check_model_args(meta["model_args"], config)
    with torch.device("meta"):  # names and shapes only: nothing is allocated
        model = rebuild(model_args)
    position, data = Position(**check_position(meta["position"])), check_data(meta["data"])
    check_metrics(meta["metrics"], position.epoch)
    return Checkpoint(
        config=config,
        model_args=model_args,
        model_state=checked_model_state(tensors, {k: v.shape for k, v in model.state_dict().items()}),
        optimizer_state=checked_optimizer_state(tensors, meta["optimizer"], [p.shape for p in model.parameters()],
                                                config),
        rng_state=checked_rng_state(tensors),
        position=position,
        metrics=meta["metrics"],
        data=data,
        **epoch_extras(tensors, position.batch, data, config),
    )


def _read_metadata(raw: bytes) -> dict[str, str]:
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + header_len].decode("utf-8"))
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    check_keys(metadata, {"format", "sha256", *FIELDS}, "its metadata")
    check(all(isinstance(v, str) for v in metadata.values()), "its metadata are not all strings")
    return metadata


def _check_digest(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    check(metadata["format"] in (FORMAT, FORMAT_1), f"unknown format {show(metadata['format'])}")
    covered = metadata if metadata["format"] == FORMAT else None
    check(metadata["sha256"] == _digest(tensors, covered),
           f"its {'contents' if covered else 'tensors'} do not match their checksum")


def _json(metadata: dict[str, str], key: str) -> Any:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not a number vaelab writes")

    try:
        return json.loads(metadata[key], parse_constant=refuse)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"its {key} is not valid JSON: {exc}") from None
