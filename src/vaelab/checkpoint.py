"""Run directories: self-describing, crash-safe checkpoints that load without executing code.

A run directory holds

    checkpoint.safetensors  weights, optimizer, RNG state, training position, config,
                            model arguments and per-epoch metrics, in one file
    config.json             the resolved training config, for people and `--config`
    metrics.jsonl           one JSON object per completed epoch
    eval.json               test-set scores, once `vaelab eval` has run

Every file is written to a temporary name, flushed to disk and renamed over the
old one, so a crash or Ctrl-C leaves either the old or the new file, never half
of one. The checkpoint is a safetensors file: tensors plus string metadata, no
pickle, so opening a run from a stranger cannot run their code.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from vaelab.config import TrainConfig
from vaelab.errors import VaelabError
from vaelab.model import VAE

CHECKPOINT = "checkpoint.safetensors"
CONFIG = "config.json"
METRICS = "metrics.jsonl"
EVAL = "eval.json"
FORMAT = "vaelab-checkpoint/1"


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
    model_args: dict[str, int]
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
    model: VAE
    epoch: int
    metrics: list[dict[str, Any]]
    data: dict[str, Any]


# --- writing --------------------------------------------------------------------
def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that readers see the old or new file, never a mix.

    A failure (a full disk, a read-only folder) leaves the old file as it was and
    becomes a VaelabError naming the file.
    """
    try:
        _replace(path, data)
    except OSError as exc:
        raise VaelabError(
            f"cannot write {path}: {exc.strerror or exc}; the previous version of the file is intact. "
            "Free some space or fix the folder's permissions, then run the command again"
        ) from None


def _replace(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, (json.dumps(obj, indent=2) + "\n").encode())


def prepare_run_dir(path: str | Path) -> Path:
    """Make a fresh run directory, refusing to overwrite an existing run."""
    path = Path(path)
    if (path / CHECKPOINT).exists():
        raise VaelabError(
            f"{path} already holds a run; continue it with `vaelab train --resume {path} "
            "--epochs N`, or choose another --out"
        )
    if path.exists() and not path.is_dir():
        raise VaelabError(f"--out {path} is a file; give a folder path for the run")
    if path.is_dir() and any(path.iterdir()):
        raise VaelabError(
            f"--out {path} is a folder that is not empty and not a vaelab run; "
            "choose a new or empty folder so nothing in it is overwritten"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VaelabError(f"cannot create run directory {path}: {exc.strerror}") from None
    return path


def save_checkpoint(path: Path, ckpt: Checkpoint) -> None:
    """Write the checkpoint, then the human-readable config and metrics beside it."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in ckpt.model_state.items()}
    optim_tensors, optim_meta = _split_optimizer_state(ckpt.optimizer_state)
    tensors.update(optim_tensors)
    tensors["rng.train"] = ckpt.rng_state.cpu()
    if ckpt.perm is not None:
        tensors["epoch.perm"] = ckpt.perm.cpu().contiguous()
        tensors["epoch.sums"] = ckpt.sums.cpu().contiguous()
    metadata = {
        "format": FORMAT,
        "sha256": _digest(tensors),
        "config": json.dumps(ckpt.config.to_dict()),
        "model_args": json.dumps(ckpt.model_args),
        "optimizer": json.dumps(optim_meta),
        "position": json.dumps(asdict(ckpt.position)),
        "metrics": json.dumps(ckpt.metrics),
        "data": json.dumps(ckpt.data),
    }
    atomic_write(path / CHECKPOINT, save_safetensors(tensors, metadata=metadata))
    write_json(path / CONFIG, ckpt.config.to_dict())
    atomic_write(path / METRICS, "".join(json.dumps(m) + "\n" for m in ckpt.metrics).encode())


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes: safetensors itself has no checksum."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


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
    path = Path(path)
    file = path / CHECKPOINT
    if not path.exists():
        raise VaelabError(f"no run at {path}; train one with `vaelab train --out {path}`")
    if not file.is_file():
        raise VaelabError(
            f"{path} is not a vaelab run (no {CHECKPOINT} in it); give the folder "
            "that `vaelab train --out` wrote"
        )
    try:
        raw = file.read_bytes()
        tensors = load_safetensors(raw)
        metadata = _read_metadata(raw)
        if metadata.get("format") != FORMAT:
            raise ValueError(f"unknown format {metadata.get('format')!r}")
        if metadata.get("sha256") != _digest(tensors):
            raise ValueError("its tensors do not match their checksum")
        config = TrainConfig.from_dict(json.loads(metadata["config"]), source=str(file))
        optim_meta = json.loads(metadata["optimizer"])
        position = Position(**json.loads(metadata["position"]))
        model_args = json.loads(metadata["model_args"])
        metrics = json.loads(metadata["metrics"])
        data = json.loads(metadata["data"])
    except (SafetensorError, ValueError, KeyError, TypeError, OSError) as exc:
        raise VaelabError(
            f"{file} is damaged and cannot be read ({exc}); restore it from a backup "
            "or train the run again"
        ) from None
    model_state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    return Checkpoint(
        config=config,
        model_args=model_args,
        model_state=model_state,
        optimizer_state=_join_optimizer_state(tensors, optim_meta),
        rng_state=tensors["rng.train"],
        position=position,
        metrics=metrics,
        data=data,
        perm=tensors.get("epoch.perm"),
        sums=tensors.get("epoch.sums"),
    )


def _read_metadata(raw: bytes) -> dict[str, str]:
    header_len = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8 : 8 + header_len]).get("__metadata__", {})


def _join_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for index, scalars in meta["scalars"].items():
        state.setdefault(int(index), {}).update(scalars)
    return {"state": state, "param_groups": meta["param_groups"]}


def load_run(path: str | Path, *, device: str | torch.device = "cpu") -> Run:
    """Load a trained run: `load_run("runs/demo").model` is ready to encode and decode."""
    ckpt = load_checkpoint(path)
    model = VAE(**ckpt.model_args)
    model.load_state_dict(ckpt.model_state)
    return Run(
        path=Path(path),
        config=ckpt.config,
        model=model.to(device).eval(),
        epoch=ckpt.position.epoch,
        metrics=ckpt.metrics,
        data=ckpt.data,
    )
