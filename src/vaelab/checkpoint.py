"""Run directories: self-describing, crash-safe checkpoints that load without executing code.

A run directory holds

    checkpoint.safetensors  weights, optimizer, RNG state, training position, config,
                            model arguments and per-epoch metrics, in one file
    config.json             the resolved training config, for people and `--config`
    metrics.jsonl           one JSON object per completed epoch
    eval.json               test-set scores, once `vaelab eval` has run

Every file is written by `vaelab.files.atomic_write`: to a temporary name,
flushed to disk and renamed over the old one, so a crash or Ctrl-C leaves either
the old or the new file, never half of one. The checkpoint is a safetensors file: tensors plus string metadata, no
pickle, so opening a run from a stranger cannot run their code.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from vaelab.config import TrainConfig
from vaelab.errors import VaelabError
from vaelab.files import atomic_write, display, dumps, write_json
from vaelab.model import VAE

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
    step: int = 0  # optimizer steps behind these weights
    weights_sha256: str = ""  # digest of exactly these weights: scores and figures name it


# --- writing --------------------------------------------------------------------
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
        "config": dumps(ckpt.config.to_dict()),
        "model_args": dumps(ckpt.model_args),
        "optimizer": dumps(optim_meta),
        "position": dumps(asdict(ckpt.position)),
        "metrics": dumps(ckpt.metrics),
        "data": dumps(ckpt.data),
    }
    metadata["sha256"] = _digest(tensors, metadata)
    atomic_write(path / CHECKPOINT, save_safetensors(tensors, metadata=metadata), root=path)
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
    except OSError as exc:
        raise _damaged(file, exc.strerror or exc) from None
    return read_checkpoint(raw, file)


def read_checkpoint(raw: bytes, file: str | Path = CHECKPOINT) -> Checkpoint:
    """The checkpoint in `raw`, the bytes of `file`: checked, or a one-line VaelabError if damaged."""
    try:
        return _parse(raw)
    except (SafetensorError, ValueError, TypeError) as exc:
        raise _damaged(Path(file), exc) from None


def load_run(path: str | Path, *, device: str | torch.device = "cpu") -> Run:
    """Load a trained run: `load_run("runs/demo").model` is ready to encode and decode."""
    ckpt = load_checkpoint(path)
    model = VAE(**ckpt.model_args)
    try:
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
        _check(name.startswith(("model.", "optimizer.")) or name in _OTHER_TENSORS, f"unexpected tensor {_show(name)}")
    meta = {key: _json(metadata, key) for key in FIELDS}
    config = _check_config(meta["config"])
    model_args = _check_model_args(meta["model_args"], config)
    with torch.device("meta"):  # names and shapes only: nothing is allocated
        model = VAE(**model_args)
    position, data = _check_position(meta["position"]), _check_data(meta["data"])
    _check_metrics(meta["metrics"], position)
    return Checkpoint(
        config=config,
        model_args=model_args,
        model_state=_model_state(tensors, {k: v.shape for k, v in model.state_dict().items()}),
        optimizer_state=_optimizer_state(tensors, meta["optimizer"], [p.shape for p in model.parameters()], config),
        rng_state=_rng_state(tensors),
        position=position,
        metrics=meta["metrics"],
        data=data,
        **_epoch_extras(tensors, position, data, config.batch_size),
    )


def _read_metadata(raw: bytes) -> dict[str, str]:
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + header_len].decode("utf-8"))
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    _check_keys(metadata, {"format", "sha256", *FIELDS}, "its metadata")
    _check(all(isinstance(v, str) for v in metadata.values()), "its metadata are not all strings")
    return metadata


def _check_digest(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    _check(metadata["format"] in (FORMAT, FORMAT_1), f"unknown format {_show(metadata['format'])}")
    covered = metadata if metadata["format"] == FORMAT else None
    _check(metadata["sha256"] == _digest(tensors, covered),
           f"its {'contents' if covered else 'tensors'} do not match their checksum")


def _json(metadata: dict[str, str], key: str) -> Any:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not a number vaelab writes")

    try:
        return json.loads(metadata[key], parse_constant=refuse)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"its {key} is not valid JSON: {exc}") from None


# --- checking what was read: each failure is a ValueError naming the field ---------
_OTHER_TENSORS = ("rng.train", "epoch.perm", "epoch.sums")
_OPTIMIZER_TENSOR = re.compile(r"optimizer\.(0|[1-9][0-9]{0,8})\.([a-z_]+)")
_NUMBERS = {"lr", "eps", "weight_decay", "alpha", "momentum", "dampening", "initial_lr"}
_FLAGS = {"amsgrad", "maximize", "capturable", "differentiable", "centered", "nesterov", "decoupled_weight_decay"}
_NEEDS = {"adam": {"lr", "betas", "eps", "weight_decay", "amsgrad"},
          "rmsprop": {"lr", "alpha", "eps", "weight_decay", "momentum", "centered"}}


def _check(ok: bool, reason: str) -> None:
    if not ok:
        raise ValueError(reason)


def _check_keys(found: Any, keys: set[str], what: str, optional: frozenset[str] = frozenset()) -> None:
    """`found` is a table of exactly `keys`, and perhaps some `optional` ones."""
    _check(isinstance(found, dict), f"{what} is not a table")
    missing, extra = sorted(keys - set(found)), sorted(set(found) - keys - optional)
    _check(not missing, f"{what} has no {missing[0] if missing else ''}")
    _check(not extra, f"{what} has an unexpected {_show(extra[0]) if extra else ''}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """A finite number that converts to a float (bools, NaN, 1e999 and 10**400 are not)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and abs(value) <= 1.7e308


def _describe(t: torch.Tensor) -> str:
    return f"{str(t.dtype).removeprefix('torch.')} {list(t.shape)}"


_METRIC_NUMBERS = ("reg", "loglike", "lower_bound", "seconds", "elapsed")  # what the log and the curves read
_METRIC_OPTIONAL = ("test_elbo", "test_loglike", "test_kl")


def _check_metrics(rows: Any, position: Position) -> None:
    """One row per completed epoch, numbered 1, 2, …, holding the numbers the log and the curves read."""
    _check(isinstance(rows, list) and all(isinstance(m, dict) for m in rows), "its metrics are not a list of tables")
    _check(len(rows) == position.epoch, f"it holds {len(rows)} rows of metrics for {position.epoch} epochs")
    for i, row in enumerate(rows, start=1):
        _check(row.get("epoch") == i and _is_int(row["epoch"]),
               f"its metrics row {i} is numbered {_show(row.get('epoch'))}")
        for key in _METRIC_NUMBERS:
            _check(_is_number(row.get(key)), f"its metrics row {i} has {key} {_show(row.get(key))}")
        for key in _METRIC_OPTIONAL:
            _check(row.get(key) is None or _is_number(row[key]), f"its metrics row {i} has {key} {_show(row[key])}")


def _check_config(values: Any) -> TrainConfig:
    _check(isinstance(values, dict), "its config is not a table")
    try:
        return TrainConfig.from_dict(values, source="config")
    except VaelabError as exc:
        raise ValueError(f"config: {str(exc).removeprefix('config: ')}") from None


def _check_model_args(args: Any, config: TrainConfig) -> dict[str, Any]:
    """data_size, latent_size and hidden_size (None or missing: the VAE's 2 x latent), as the config says."""
    _check_keys(args, {"data_size", "latent_size"}, "its model_args", optional=frozenset({"hidden_size"}))
    for key, value in args.items():
        if not (key == "hidden_size" and value is None):
            _check(_is_int(value) and 0 < value < 2**31,
                   f"its model_args {key} is {_show(value)}, not a positive integer")
    hidden = args.get("hidden_size") or 2 * args["latent_size"]
    _check((args["latent_size"], hidden) == (config.latent_size, config.hidden),
           f"its model_args (latent {args['latent_size']}, hidden {hidden}) do not match its config "
           f"(latent {config.latent_size}, hidden {config.hidden})")
    return args


def _model_state(tensors: dict[str, torch.Tensor], shapes: dict[str, torch.Size]) -> dict[str, torch.Tensor]:
    """Exactly the model's tensors, float32, in the shapes its arguments give."""
    state = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    for name in sorted(set(state) | set(shapes)):
        _check(name in state, f"tensor 'model.{name}' is missing")
        _check(name in shapes, f"unexpected tensor {_show('model.' + name)}")
        _check(state[name].dtype == torch.float32 and state[name].shape == shapes[name],
               f"tensor 'model.{name}' is {_describe(state[name])}; its model_args make it float32 "
               f"{list(shapes[name])}")
    return {name: state[name] for name in shapes}


def _optimizer_state(tensors: dict[str, torch.Tensor], meta: Any, shapes: list[torch.Size],
                     config: TrainConfig) -> dict[str, Any]:
    """One param group over all parameters, and per parameter the state the config's optimizer keeps."""
    _check_keys(meta, {"param_groups", "scalars"}, "its optimizer")
    group = _param_group(meta["param_groups"], len(shapes), config)
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            match = _OPTIMIZER_TENSOR.fullmatch(name)
            _check(match is not None and int(match[1]) < len(shapes), f"unexpected tensor {_show(name)}")
            state.setdefault(int(match[1]), {})[match[2]] = value
    _check(meta["scalars"] == {}, "its optimizer has non-tensor state, which PyTorch 2 does not keep")
    needed = _state_keys(config.optimizer, group)
    for index, entry in sorted(state.items()):
        _check_param_state(index, entry, shapes[index], needed)
    return {"state": state, "param_groups": [group]}


def _param_group(groups: Any, n: int, config: TrainConfig) -> dict[str, Any]:
    _check(isinstance(groups, list) and len(groups) == 1 and isinstance(groups[0], dict),
           "its optimizer does not have one param group")
    group, needed = groups[0], _NEEDS[config.optimizer]
    params = group.get("params")
    _check(isinstance(params, list) and all(map(_is_int, params)) and params == list(range(n)),
           f"its optimizer's params are not the model's {n} parameters")
    _check(needed <= set(group), f"its optimizer lacks {', '.join(sorted(needed - set(group)))}, which "
                                 f"{config.optimizer} needs")
    for key, value in group.items():
        _check(key == "params" or _hyperparameter_ok(key, value), f"its optimizer's {_show(key)} is {_show(value)}")
    _check(group["lr"] == config.lr, f"its optimizer's lr {group['lr']} is not its config's lr {config.lr}")
    return group


def _hyperparameter_ok(key: str, value: Any) -> bool:
    if key in _NUMBERS:
        return _is_number(value)
    if key == "betas":
        return isinstance(value, list) and len(value) == 2 and all(map(_is_number, value))
    if key in _FLAGS:
        return isinstance(value, bool)
    if key in ("foreach", "fused"):
        return value is None or isinstance(value, bool)
    return value is None or isinstance(value, str | bool) or _is_number(value)  # a newer PyTorch's setting


def _state_keys(optimizer: str, group: dict[str, Any]) -> set[str]:
    """The per-parameter state PyTorch keeps for this optimizer and these settings."""
    if optimizer == "adam":
        return {"step", "exp_avg", "exp_avg_sq"} | ({"max_exp_avg_sq"} if group["amsgrad"] else set())
    return ({"step", "square_avg"} | ({"grad_avg"} if group["centered"] else set())
            | ({"momentum_buffer"} if group["momentum"] > 0 else set()))


def _check_param_state(index: int, entry: dict[str, Any], shape: torch.Size, needed: set[str]) -> None:
    _check(set(entry) == needed, f"the optimizer state of parameter {index} has {', '.join(sorted(entry))}, "
                                 f"not {', '.join(sorted(needed))}")
    for key, value in entry.items():
        if key == "step":
            _check(value.dtype.is_floating_point and value.dim() == 0,
                   f"tensor 'optimizer.{index}.step' is {_describe(value)}, not a float scalar")
        else:
            _check(value.dtype == torch.float32 and value.shape == shape,
                   f"tensor 'optimizer.{index}.{key}' is {_describe(value)}; its parameter is float32 {list(shape)}")


def _rng_state(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    state = tensors.get("rng.train")
    _check(state is not None, "tensor 'rng.train' is missing")
    _check(state.dtype == torch.uint8 and state.dim() == 1 and state.numel() > 0,
           f"tensor 'rng.train' is {_describe(state)}, not a generator's state (uint8, 1-D)")
    return state


def _check_position(values: Any) -> Position:
    _check_keys(values, {"epoch", "batch", "step", "elapsed"}, "its position")
    for key in ("epoch", "batch", "step"):
        _check(_is_int(values[key]) and values[key] >= 0,
               f"its position {key} is {_show(values[key])}, not a non-negative integer")
    _check(_is_number(values["elapsed"]) and values["elapsed"] >= 0,
           f"its position elapsed is {_show(values['elapsed'])}, not a number of seconds")
    return Position(**{**values, "elapsed": float(values["elapsed"])})


def _check_data(values: Any) -> dict[str, Any]:
    """Provenance: free-form, but the file digests and image count are used, so they are checked."""
    _check(isinstance(values, dict), "its data record is not a table")
    digests, n_train = values.get("sha256", {}), values.get("n_train", 1)
    _check(isinstance(digests, dict) and all(isinstance(v, str) for v in digests.values()),
           "its data sha256 is not a table of file digests")
    _check(_is_int(n_train) and n_train > 0, f"its data n_train is {_show(n_train)}, not a positive integer")
    return values


def _epoch_extras(tensors: dict[str, torch.Tensor], position: Position, data: dict[str, Any],
                  batch_size: int) -> dict[str, torch.Tensor | None]:
    """Mid-epoch (batch > 0), the epoch's order of images and its running sums; otherwise neither."""
    perm, sums = tensors.get("epoch.perm"), tensors.get("epoch.sums")
    if position.batch == 0:
        _check(perm is None and sums is None,
               "it holds an unfinished epoch's order or sums, but its position is between epochs")
        return {"perm": None, "sums": None}
    _check(perm is not None and sums is not None,
           f"its position is batch {position.batch} of an epoch, but the epoch's order or sums are missing")
    n = data.get("n_train", perm.numel())
    _check(perm.dtype == torch.int64 and perm.dim() == 1 and perm.numel() == n
           and torch.equal(perm.sort().values, torch.arange(n)),
           f"tensor 'epoch.perm' is not an int64 permutation of the {n} training images")
    _check(position.batch <= math.ceil(n / batch_size),
           f"its position batch {position.batch} is past the end of an epoch of {n} images")
    _check(sums.dtype in (torch.float32, torch.float64) and sums.shape == (2,),
           f"tensor 'epoch.sums' is {_describe(sums)}, not two float sums")
    return {"perm": perm, "sums": sums}
