"""The architectures, chosen by name: a registry, its argument checks, and arguments from a config.

    from vaelab.models import args_for, build_model

    model = build_model(config.model, args_for(config, image_shape=(28, 28)))

Every model keeps the contract of vaelab.models.base.VAEModel. A checkpoint
stores `named_args(model)`, the name and the constructor arguments, and
`rebuild` makes the model again from them after checking each one, so a
damaged or forged file is a one-line ValueError, never a traceback.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from vaelab.config_checks import MAX_LAYERS
from vaelab.models.base import ACTIVATIONS, VARIANCES, VAEModel
from vaelab.models.conv import ConvVAE
from vaelab.models.mlp import MLPVAE
from vaelab.models.mlp2 import TwoLayerVAE

if TYPE_CHECKING:  # pragma: no cover
    from vaelab.config import TrainConfig

__all__ = ["MODELS", "ConvVAE", "MLPVAE", "TwoLayerVAE", "VAEModel", "arg_names", "args_for", "build_model",
           "check_args", "named_args", "rebuild"]

MODELS: dict[str, type[VAEModel]] = {"mlp": MLPVAE, "conv": ConvVAE, "mlp2": TwoLayerVAE}  # vaelab.config.MODELS
MAX_SIZE = 2**31 - 1  # any width or side beyond this is a forgery, not a model


def _is_size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_SIZE


def _sizes(low: int, high: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list | tuple) and low <= len(v) <= high and all(map(_is_size, v))


# Every argument any architecture takes: the test it must pass, and what it must be.
_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "image_shape": (_sizes(2, 2), "not a [height, width] of positive integers"),
    "latent_size": (_is_size, "not a positive integer"),
    "lower_latent_size": (_is_size, "not a positive integer"),
    "hidden": (_sizes(0, MAX_LAYERS), f"not a list of at most {MAX_LAYERS} positive widths"),
    "upper_hidden": (_sizes(0, MAX_LAYERS), f"not a list of at most {MAX_LAYERS} positive widths"),
    "activation": (lambda v: isinstance(v, str) and v in ACTIVATIONS, f"not one of {', '.join(ACTIVATIONS)}"),
    "variance": (lambda v: isinstance(v, str) and v in VARIANCES, f"not one of {', '.join(VARIANCES)}"),
    "channels": (_sizes(1, 4), "not a list of 1 to 4 positive widths"),
}


def arg_names(name: str) -> tuple[str, ...]:
    """The constructor arguments of architecture `name`, all of which a checkpoint stores."""
    return tuple(inspect.signature(MODELS[name]).parameters)


def check_args(name: Any, args: Any, what: str = "model args") -> dict[str, Any]:
    """`args` checked for architecture `name`, sequences as lists; else a one-line ValueError starting `what`."""
    if not (isinstance(name, str) and name in MODELS):
        raise ValueError(f"{what} name {_show(name)} is not an architecture vaelab knows ({', '.join(MODELS)})")
    if not isinstance(args, dict):
        raise ValueError(f"{what} is not a table")
    names = arg_names(name)
    missing, extra = [k for k in names if k not in args], sorted(set(args) - set(names), key=str)
    if missing:
        raise ValueError(f"{what} has no {missing[0]}, which the {name} model needs")
    if extra:
        raise ValueError(f"{what} has an unexpected {_show(extra[0])} for the {name} model")
    for key in names:
        ok, rule = _RULES[key]
        if not ok(args[key]):
            raise ValueError(f"{what} {key} is {_show(args[key])}, {rule}")
    checked = {k: list(args[k]) if isinstance(args[k], tuple | list) else args[k] for k in names}
    try:
        MODELS[name].check_shapes(checked)
    except ValueError as exc:
        raise ValueError(f"{what} {exc}") from None
    return checked


def build_model(name: Any, args: dict[str, Any]) -> VAEModel:
    """Architecture `name` built from `args`, each checked first (a one-line ValueError if one is wrong)."""
    checked = check_args(name, args)
    try:
        return MODELS[name](**checked)
    except (RuntimeError, OverflowError, TypeError) as exc:  # sizes whose product overflows, or out of memory
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"model args describe a network too large to build ({reason})") from None


def named_args(model: VAEModel) -> dict[str, Any]:
    """What a checkpoint stores to rebuild `model`: its architecture's name, then its constructor arguments."""
    return {"name": model.name, **model.args}


def rebuild(named: dict[str, Any]) -> VAEModel:
    """The inverse of `named_args`: the architecture it names, freshly initialised, its arguments checked first."""
    if not isinstance(named, dict):
        raise ValueError("model args is not a table")
    return build_model(named.get("name"), {k: v for k, v in named.items() if k != "name"})


def args_for(config: TrainConfig, image_shape: Sequence[int]) -> dict[str, Any]:
    """The constructor arguments of `config.model` for images of `image_shape` (H, W), from the config's fields."""
    values = {"image_shape": list(image_shape), "latent_size": config.latent_size,
              "lower_latent_size": config.lower_latent, "upper_hidden": list(config.upper_hidden_layers),
              "hidden": list(config.hidden_layers), "activation": config.activation, "variance": config.variance,
              "channels": list(config.channels)}
    return {key: values[key] for key in arg_names(config.model)}


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"
