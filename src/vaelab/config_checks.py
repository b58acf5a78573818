"""A TrainConfig's fields checked, one by one and together: the rules and the messages that name them.

Every message names the field, its flag, what it takes and what was given, in
one line, so a config file or a command line is fixed in one go.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from typing import Any

from vaelab.errors import VaelabError

MAX_SEED = 2**63 - 1  # torch generators take 64-bit seeds; JSON readers keep 63 bits exactly
# Upper limits of the sizes a user can type. Whether a network of the sizes allowed
# fits in memory is checked again when training starts (vaelab.training).
LIMITS = {"latent_size": 10_000, "lower_latent_size": 10_000, "hidden_size": 100_000, "upper_hidden_size": 100_000,
          "epochs": 1_000_000, "batch_size": 1_000_000,
          "samples": 5_000, "channels": 4_096, "validation": 10_000_000}
MAX_LAYERS = 16  # hidden layers, or convolutions, a model may have


def flag(name: str) -> str:
    """The command-line flag of a config field."""
    return "--" + name.replace("_", "-")


def check_types(config: Any) -> None:
    """Each field of a TrainConfig of the type it declares (JSON's lists made tuples, ints made floats where
    a float is wanted), else an error naming the field, its flag and what it takes."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        allowed = typing.get_args(hints[f.name]) if typing.get_origin(hints[f.name]) is not tuple else ()
        allowed = allowed or (hints[f.name],)
        if value is None and type(None) in allowed:
            continue
        if float in allowed and isinstance(value, int) and not isinstance(value, bool):
            object.__setattr__(config, f.name, float(value))  # 1 is a fine learning rate
            continue
        if isinstance(value, list) and any(typing.get_origin(t) is tuple for t in allowed):
            value = tuple(value)
            object.__setattr__(config, f.name, value)  # JSON and TOML give lists
        if not any(_is_a(value, t) for t in allowed if t is not type(None)):
            raise VaelabError(f"{f.name} ({flag(f.name)}) must be {' or '.join(_type_name(t) for t in allowed)}, "
                              f"got {shown(value)}")


def _is_a(value: Any, kind: Any) -> bool:
    """isinstance, for the field types a config has: int (never bool), float, str, bool, tuple[int, ...]."""
    if typing.get_origin(kind) is tuple:
        return isinstance(value, tuple) and all(_is_a(v, typing.get_args(kind)[0]) for v in value)
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))


TYPE_NAMES = {int: "a whole number", float: "a number", str: "a string", bool: "true or false",
              type(None): "left out (its default)"}


def _type_name(kind: Any) -> str:
    """A field's type as a config file writes it (TOML or JSON), not as Python names it."""
    if typing.get_origin(kind) is tuple:
        return "a list of whole numbers such as [512, 256]"
    return TYPE_NAMES.get(kind, kind.__name__)


def shown(value: Any) -> str:
    """A value as a config file (TOML or JSON) writes it: true, null, [512, 256], "0.01" (a string)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"the string {json.dumps(value)}"
    if isinstance(value, tuple | list):
        return "[" + ", ".join(shown(v) for v in value) + "]"
    return repr(value)


def check_values(c: Any) -> None:
    """Each field of a TrainConfig within its bounds and meaningful with the others, else an error naming
    the field, its flag, the rule and the value given."""
    def fail(name: str, rule: str) -> None:
        raise VaelabError(f"{name} ({flag(name)}) {rule}, got {getattr(c, name)!r}")

    for name in ("latent_size", "epochs", "batch_size"):
        if getattr(c, name) < 1:
            fail(name, "must be at least 1")
    for name in ("hidden_size", "upper_hidden_size"):
        if isinstance(getattr(c, name), int) and getattr(c, name) < 1:
            fail(name, "must be at least 1 (or unset for its default)")
    if c.lower_latent_size is not None and c.lower_latent_size < 1:
        fail("lower_latent_size", "must be at least 1 (or unset for 2 x latent size)")
    for name in ("lower_latent_size", "upper_hidden_size"):
        if getattr(c, name) is not None and c.model != "mlp2":
            fail(name, f"sets the upper layers of --model mlp2 only (the model is {c.model})")
    for name in ("hidden_size", "upper_hidden_size", "channels"):
        widths = getattr(c, name)
        if isinstance(widths, tuple) and (len(widths) > MAX_LAYERS or any(w < 1 for w in widths)):
            fail(name, f"must list at most {MAX_LAYERS} widths, each at least 1")
    if not 1 <= len(c.channels) <= 4:
        fail("channels", "must list 1 to 4 widths, one per stride-2 convolution")
    if c.validation < 0:
        fail("validation", "must be 0 (none) or a number of training images to hold out")
    for name, limit in LIMITS.items():
        value = getattr(c, name)
        if any(v > limit for v in (value if isinstance(value, tuple) else [value]) if v is not None):
            fail(name, f"must be at most {limit:,}" + (" each" if isinstance(value, tuple) else ""))
    if c.channels != (32, 64) and c.model != "conv":
        fail("channels", f"sets the convolutions of --model conv only (the model is {c.model})")
    if c.class_names is not None and c.dataset != "folder":
        fail("class_names", f"names the classes of --dataset folder only; {c.dataset} has its own names")
    if c.dataset == "folder" and c.data_dir is None:
        fail("dataset", "folder needs --data-dir: the folder holding the four IDX files")
    if c.samples < 1:
        fail("samples", "must be at least 1")
    if not (math.isfinite(c.beta) and c.beta >= 0):
        fail("beta", "must be a finite number, 0 or more")
    if c.beta != 1.0 and c.objective != "beta":
        fail("beta", f"weights the KL only with --objective beta (the objective is {c.objective})")
    if not (math.isfinite(c.lr) and c.lr > 0):
        fail("lr", "must be a positive finite number such as 0.001")
    for name in ("adam_beta1", "adam_beta2"):
        if not 0 <= getattr(c, name) < 1:
            fail(name, "must be at least 0 and below 1")
    if not (math.isfinite(c.adam_eps) and c.adam_eps > 0):
        fail("adam_eps", "must be a positive finite number such as 1e-8")
    if c.optimizer != "adam":
        for name, default in (("adam_beta1", 0.9), ("adam_beta2", 0.999), ("adam_eps", 1e-8)):
            if getattr(c, name) != default:
                fail(name, f"sets Adam only (the optimizer is {c.optimizer}); leave it unset or use --optimizer adam")
    if c.model == "conv" and (c.init != "pytorch" or c.output_bias != "init"):
        name = "init" if c.init != "pytorch" else "output_bias"
        fail(name, f"is defined for --model mlp and mlp2 only (the model is {c.model}); leave it unset")
    if c.validation_split != "random" and c.validation == 0:
        fail("validation_split", "chooses the images --validation holds out; give --validation N too")
    if not 0 <= c.seed <= MAX_SEED:
        fail("seed", f"must be an integer from 0 to {MAX_SEED}")
    for f in dataclasses.fields(c):
        choices = f.metadata["choices"]
        if choices and getattr(c, f.name) not in choices:
            fail(f.name, f"must be one of {', '.join(choices)}")
