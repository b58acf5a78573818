"""Checking a checkpoint's fields after reading it: each failure is a ValueError naming the field.

A checksum proves only that whoever wrote the file also computed it, and anyone
can; so every field is checked against the others (the tensors against the
model arguments, the optimizer against the config). vaelab.checkpoint turns a
ValueError from here into its one-line "damaged" error.
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch

from vaelab.config import IWAE_STAGES, TrainConfig, stage_epochs
from vaelab.errors import VaelabError
from vaelab.models import args_for, check_args

OTHER_TENSORS = ("rng.train", "epoch.perm", "epoch.sums")
_OPTIMIZER_TENSOR = re.compile(r"optimizer\.(0|[1-9][0-9]{0,8})\.([a-z_]+)")
_NUMBERS = {"lr", "eps", "weight_decay", "alpha", "momentum", "dampening", "initial_lr"}
_FLAGS = {"amsgrad", "maximize", "capturable", "differentiable", "centered", "nesterov", "decoupled_weight_decay"}
_NEEDS = {"adam": {"lr", "betas", "eps", "weight_decay", "amsgrad"},
          "rmsprop": {"lr", "alpha", "eps", "weight_decay", "momentum", "centered"}}


def check(ok: bool, reason: str) -> None:
    if not ok:
        raise ValueError(reason)


def check_keys(found: Any, keys: set[str], what: str, optional: frozenset[str] = frozenset()) -> None:
    """`found` is a table of exactly `keys`, and perhaps some `optional` ones."""
    check(isinstance(found, dict), f"{what} is not a table")
    missing, extra = sorted(keys - set(found)), sorted(set(found) - keys - optional)
    check(not missing, f"{what} has no {missing[0] if missing else ''}")
    check(not extra, f"{what} has an unexpected {show(extra[0]) if extra else ''}")


def show(value: Any) -> str:
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


def check_metrics(rows: Any, epochs: int) -> None:
    """One row per completed epoch, numbered 1, 2, …, holding the numbers the log and the curves read."""
    check(isinstance(rows, list) and all(isinstance(m, dict) for m in rows), "its metrics are not a list of tables")
    check(len(rows) == epochs, f"it holds {len(rows)} rows of metrics for {epochs} epochs")
    for i, row in enumerate(rows, start=1):
        check(row.get("epoch") == i and _is_int(row["epoch"]),
               f"its metrics row {i} is numbered {show(row.get('epoch'))}")
        for key in _METRIC_NUMBERS:
            check(_is_number(row.get(key)), f"its metrics row {i} has {key} {show(row.get(key))}")
        for key in _METRIC_OPTIONAL:
            check(row.get(key) is None or _is_number(row[key]), f"its metrics row {i} has {key} {show(row[key])}")
        machine = row.get("machine", "")  # the machine that trained the epoch, in words (absent in older runs)
        check(isinstance(machine, str) and len(machine) <= 200 and machine.isprintable(),
              f"its metrics row {i} has machine {show(machine)}")


def check_config(values: Any) -> TrainConfig:
    check(isinstance(values, dict), "its config is not a table")
    try:
        return TrainConfig.from_dict(values, source="config")
    except VaelabError as exc:
        raise ValueError(f"config: {str(exc).removeprefix('config: ')}") from None


def check_model_args(args: Any, config: TrainConfig) -> dict[str, Any]:
    """The architecture's name and constructor arguments (vaelab.models), each as the config says.

    Before architectures had names, model_args were data_size, latent_size and hidden_size (None or
    missing: 2 x latent) of the article's perceptrons; those read as the mlp model on 28 x 28 images.
    """
    check(isinstance(args, dict), "its model_args is not a table")
    if "name" not in args and "data_size" in args:
        args = _named(args)
    check("name" in args, "its model_args has no name")
    name = args["name"]
    named = {"name": name, **check_args(name, {k: v for k, v in args.items() if k != "name"}, "its model_args")}
    expected = {"name": config.model, **args_for(config, named["image_shape"])}
    for key, value in expected.items():
        check(named[key] == value, f"its model_args {key} {show(named[key])} does not match its config's {show(value)}")
    return named


def _named(args: dict[str, Any]) -> dict[str, Any]:
    """Model arguments written before architectures had names, as the mlp model's."""
    check_keys(args, {"data_size", "latent_size"}, "its model_args", optional=frozenset({"hidden_size"}))
    for key, value in args.items():
        if not (key == "hidden_size" and value is None):
            check(_is_int(value) and 0 < value < 2**31,
                   f"its model_args {key} is {show(value)}, not a positive integer")
    check(args["data_size"] == 784, f"its model_args data_size is {args['data_size']}, but a run written before "
                                    "architectures had names models 784 pixels (28 x 28)")
    hidden = args.get("hidden_size") or 2 * args["latent_size"]
    return {"name": "mlp", "image_shape": [28, 28], "latent_size": args["latent_size"], "hidden": [hidden, hidden],
            "activation": "relu", "variance": "softplus"}


def checked_model_state(tensors: dict[str, torch.Tensor], shapes: dict[str, torch.Size]) -> dict[str, torch.Tensor]:
    """Exactly the model's tensors, float32, in the shapes its arguments give."""
    state = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    for name in sorted(set(state) | set(shapes)):
        check(name in state, f"tensor 'model.{name}' is missing")
        check(name in shapes, f"unexpected tensor {show('model.' + name)}")
        check(state[name].dtype == torch.float32 and state[name].shape == shapes[name],
               f"tensor 'model.{name}' is {_describe(state[name])}; its model_args make it float32 "
               f"{list(shapes[name])}")
    return {name: state[name] for name in shapes}


def checked_optimizer_state(tensors: dict[str, torch.Tensor], meta: Any, shapes: list[torch.Size],
                     config: TrainConfig) -> dict[str, Any]:
    """One param group over all parameters, and per parameter the state the config's optimizer keeps."""
    check_keys(meta, {"param_groups", "scalars"}, "its optimizer")
    group = _param_group(meta["param_groups"], len(shapes), config)
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            match = _OPTIMIZER_TENSOR.fullmatch(name)
            check(match is not None and int(match[1]) < len(shapes), f"unexpected tensor {show(name)}")
            state.setdefault(int(match[1]), {})[match[2]] = value
    check(meta["scalars"] == {}, "its optimizer has non-tensor state, which PyTorch 2 does not keep")
    needed = _state_keys(config.optimizer, group)
    for index, entry in sorted(state.items()):
        _check_param_state(index, entry, shapes[index], needed)
    return {"state": state, "param_groups": [group]}


def _param_group(groups: Any, n: int, config: TrainConfig) -> dict[str, Any]:
    check(isinstance(groups, list) and len(groups) == 1 and isinstance(groups[0], dict),
           "its optimizer does not have one param group")
    group, needed = groups[0], _NEEDS[config.optimizer]
    params = group.get("params")
    check(isinstance(params, list) and all(map(_is_int, params)) and params == list(range(n)),
           f"its optimizer's params are not the model's {n} parameters")
    check(needed <= set(group), f"its optimizer lacks {', '.join(sorted(needed - set(group)))}, which "
                                 f"{config.optimizer} needs")
    for key, value in group.items():
        check(key == "params" or _hyperparameter_ok(key, value), f"its optimizer's {show(key)} is {show(value)}")
    lrs = schedule_lrs(config)
    check(group["lr"] in lrs, f"its optimizer's lr {group['lr']} is not its config's lr "
                               f"{' or '.join(map(str, sorted(lrs, reverse=True)))}")
    if config.optimizer == "adam":
        betas = [config.adam_beta1, config.adam_beta2]
        check(list(group["betas"]) == betas, f"its optimizer's betas {group['betas']} are not its config's {betas}")
        check(group["eps"] == config.adam_eps, f"its optimizer's eps {group['eps']} is not its config's "
                                               f"adam_eps {config.adam_eps}")
    return group


def schedule_lrs(config: TrainConfig) -> set[float]:
    """Every learning rate the config's schedule gives an epoch (one for a constant lr; one per stage else)."""
    if config.lr_schedule == "constant":
        return {config.lr}
    return {config.lr_at(stage_epochs(i) + 1) for i in range(IWAE_STAGES)}


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
    check(set(entry) == needed, f"the optimizer state of parameter {index} has {', '.join(sorted(entry))}, "
                                 f"not {', '.join(sorted(needed))}")
    for key, value in entry.items():
        if key == "step":
            check(value.dtype.is_floating_point and value.dim() == 0,
                   f"tensor 'optimizer.{index}.step' is {_describe(value)}, not a float scalar")
        else:
            check(value.dtype == torch.float32 and value.shape == shape,
                   f"tensor 'optimizer.{index}.{key}' is {_describe(value)}; its parameter is float32 {list(shape)}")


def checked_rng_state(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    state = tensors.get("rng.train")
    check(state is not None, "tensor 'rng.train' is missing")
    check(state.dtype == torch.uint8 and state.dim() == 1 and state.numel() > 0,
           f"tensor 'rng.train' is {_describe(state)}, not a generator's state (uint8, 1-D)")
    return state


def check_position(values: Any) -> dict[str, Any]:
    check_keys(values, {"epoch", "batch", "step", "elapsed"}, "its position")
    for key in ("epoch", "batch", "step"):
        check(_is_int(values[key]) and values[key] >= 0,
               f"its position {key} is {show(values[key])}, not a non-negative integer")
    check(_is_number(values["elapsed"]) and values["elapsed"] >= 0,
           f"its position elapsed is {show(values['elapsed'])}, not a number of seconds")
    return {**values, "elapsed": float(values["elapsed"])}


def check_data(values: Any) -> dict[str, Any]:
    """Provenance: free-form, but the file digests and image count are used, so they are checked."""
    check(isinstance(values, dict), "its data record is not a table")
    digests, n_train = values.get("sha256", {}), values.get("n_train", 1)
    check(isinstance(digests, dict) and all(isinstance(v, str) for v in digests.values()),
           "its data sha256 is not a table of file digests")
    check(_is_int(n_train) and n_train > 0, f"its data n_train is {show(n_train)}, not a positive integer")
    return values


def epoch_extras(tensors: dict[str, torch.Tensor], batch: int, data: dict[str, Any],
                 config: TrainConfig) -> dict[str, torch.Tensor | None]:
    """Mid-epoch (batch > 0), the epoch's order of images and its running sums; otherwise neither."""
    perm, sums = tensors.get("epoch.perm"), tensors.get("epoch.sums")
    if batch == 0:
        check(perm is None and sums is None,
               "it holds an unfinished epoch's order or sums, but its position is between epochs")
        return {"perm": None, "sums": None}
    check(perm is not None and sums is not None,
           f"its position is batch {batch} of an epoch, but the epoch's order or sums are missing")
    n = data.get("n_train", perm.numel())
    check(perm.dtype == torch.int64 and perm.dim() == 1 and perm.numel() == n
           and torch.equal(perm.sort().values, torch.arange(n)),
           f"tensor 'epoch.perm' is not an int64 permutation of the {n} training images")
    check(batch <= math.ceil(n / config.batch_size),
           f"its position batch {batch} is past the end of an epoch of {n} images")
    n_sums = 3 if config.logs_objective else 2  # -KL, log-likelihood and perhaps the objective's value
    check(sums.dtype in (torch.float32, torch.float64) and sums.shape == (n_sums,),
           f"tensor 'epoch.sums' is {_describe(sums)}, not {n_sums} float sums")
    return {"perm": perm, "sums": sums}
