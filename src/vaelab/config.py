"""Training configuration: one dataclass, the single source of truth.

Every field has a default (the article's value where it has one) and a one-line
reason. The same fields become the flags of `vaelab train` (`latent_size` ->
`--latent-size`), the keys of a `--config` file (TOML or JSON) and the
`config.json` saved in every run, so the three can never disagree.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from vaelab.config_checks import check_types, check_values
from vaelab.errors import VaelabError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

OPTIMIZERS = ("adam", "rmsprop")
BINARIZATIONS = ("threshold", "dynamic")
DEVICES = ("auto", "cpu", "cuda", "mps")
OBJECTIVES = ("elbo", "beta", "iwae")  # vaelab.objectives.OBJECTIVES
MODELS = ("mlp", "conv", "mlp2")  # vaelab.models.MODELS
ACTIVATIONS = ("relu", "tanh")
VARIANCES = ("softplus", "exp")
DATASETS = ("mnist", "fashion-mnist", "kmnist", "folder")  # vaelab.catalog.NAMES
LR_SCHEDULES = ("constant", "iwae", "iwae-paper")
INITS = ("pytorch", "iwae", "glorot")  # vaelab.models.init
OUTPUT_BIASES = ("init", "data_mean")
VALIDATION_SPLITS = ("random", "end")
ARTICLE_EPOCHS = 10  # epochs when neither --epochs nor a schedule says otherwise
IWAE_STAGES = 8  # Burda et al. (2015), section 5: stages i = 0 ... 7 of 3^i passes each


def _option(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Everything that defines a training run (the article's values by default)."""

    model: str = _option(
        "mlp",
        "mlp: the article's perceptrons; conv: two stride-2 convolutions each way, then the hidden layers; "
        "mlp2: two stochastic layers, x <-> h1 <-> z, perceptrons between them (Burda et al. 2015)",
        MODELS,
    )
    latent_size: int = _option(48, "dimension of the latent code z")
    hidden_size: int | tuple[int, ...] | None = _option(
        None, "hidden layers: one width for two layers like the article's, or a list such as 512,256 "
        "(conv: the dense layers after the convolutions); unset means two layers of 2 x latent size"
    )
    lower_latent_size: int | None = _option(
        None, "mlp2 only: units of the lower stochastic layer h1 (between x and z); unset: 2 x latent size"
    )
    upper_hidden_size: int | tuple[int, ...] | None = _option(
        None, "mlp2 only: hidden layers between h1 and z (each way), one width for two layers or a list; unset: "
        "two layers of the lower latent size"
    )
    activation: str = _option("relu", "the nonlinearity between layers (the article's relu, or tanh)",
                              ACTIVATIONS)
    variance: str = _option(
        "softplus", "how the encoder makes the posterior variance: the article's softplus, or exp of a "
        "log standard deviation as most papers do", VARIANCES,
    )
    channels: tuple[int, ...] = _option((32, 64), "conv only: channels of the two convolutions (encoder order)")
    epochs: int | None = _option(
        None, "total passes over the training set; unset: 10 (the article's), or with --lr-schedule iwae the "
        "passes of its --stages (3,280 for all 8)"
    )
    batch_size: int = _option(128, "images per optimisation step")
    lr: float = _option(1e-3, "learning rate (with a schedule: the first stage's)")
    lr_schedule: str = _option(
        "constant",
        "constant: --lr throughout (the article's); iwae: Burda et al. (2015)'s stages i = 0..7 of 3^i passes at "
        "--lr x 10^(1-i/7) rounded to 2 figures / 10, as their code ran it; iwae-paper: the same at --lr x "
        "10^(-i/7) unrounded, as their paper prints it",
        LR_SCHEDULES,
    )
    stages: int | None = _option(
        None, "with --lr-schedule iwae: train only its first N of 8 stages (a shortened schedule, which the "
        "run records and its report states); unset: all 8, or as many as --epochs ends"
    )
    objective: str = _option(
        "elbo",
        "elbo: the article's ELBO; beta: the ELBO with the KL weighted by --beta (Higgins et al. 2017); "
        "iwae: the importance-weighted bound with --samples K (Burda et al. 2015)",
        OBJECTIVES,
    )
    samples: int = _option(1, "samples of z per image: elbo and beta average K one-sample bounds, iwae uses K")
    beta: float = _option(1.0, "weight of the KL term, with --objective beta (1 is the ELBO)")
    optimizer: str = _option(
        "adam", "adam, or centred rmsprop (the article found adam slightly better)", OPTIMIZERS
    )
    adam_beta1: float = _option(0.9, "Adam's decay of the gradient's mean (PyTorch's 0.9, the article's)")
    adam_beta2: float = _option(0.999, "Adam's decay of the gradient's square (PyTorch's 0.999, the article's)")
    adam_eps: float = _option(1e-8, "Adam's epsilon, added to the root of the mean square (PyTorch's 1e-8)")
    init: str = _option(
        "pytorch",
        "the weights' initialisation: pytorch's (the article's); iwae: Burda et al.'s code exactly (Glorot "
        "uniform, every layer drawn from numpy seed 123, biases zero; mlp and mlp2 only); glorot: the same "
        "distribution drawn from --seed",
        INITS,
    )
    output_bias: str = _option(
        "init", "the decoder's output bias: as --init makes it, or data_mean: the logit of the training images' "
        "mean pixel, clipped to [0.001, 0.999], as Burda et al. (2015) do (mlp and mlp2 only)", OUTPUT_BIASES,
    )
    binarization: str = _option(
        "threshold",
        "threshold: the article's fixed black-and-white images (byte >= 73); "
        "dynamic: a fresh Bernoulli sample of the grey levels every epoch",
        BINARIZATIONS,
    )
    seed: int = _option(0, "seed for initialisation, shuffling and noise; same seed, same run")
    device: str = _option("auto", "where to train: auto picks cuda, then mps, then cpu", DEVICES)
    compile: bool = _option(
        False, "run the objective (and on a GPU Adam's update) through torch.compile: on an H200 the one-layer "
        "IWAE presets' steps ran 1.8-2.1x the graphed eager step (with torch.compile's defaults: "
        "docs/benchmarks.md; on a CPU no faster, or slower); "
        "rounded otherwise, so not bit for bit the eager run (a compiled run repeats and resumes bit for bit "
        "itself; each epoch's machine says 'torch.compile'); the first step compiles (half a minute or so)"
    )
    dataset: str | None = _option(
        None,
        "mnist (bundled), fashion-mnist (Debian's dataset-fashion-mnist, or --download), kmnist (--download), "
        "or folder: any four IDX files in --data-dir; unset: folder with --data-dir, else mnist",
        DATASETS,
    )
    data_dir: str | None = _option(
        None, "folder with the dataset's four IDX files (flat, or NAME/raw/); unset: the bundled MNIST, or "
        "where the dataset is installed or downloaded"
    )
    download: bool = _option(
        False, "fetch the dataset's missing files from its public mirrors (https, checksummed), into --data-dir "
        "or the download cache"
    )
    class_names: str | None = _option(
        None, "text file of class names, one per line in label order (for --dataset folder; default: "
        "DATA_DIR/classes.txt if there, else numbers)"
    )
    validation: int = _option(
        0, "training images held out (chosen by --seed) and scored every epoch; 0: none, as in the article"
    )
    validation_split: str = _option(
        "random", "which training images --validation holds out: random (chosen by --seed), or the file's "
        "last ones, as Burda et al. (2015) held out MNIST's last 400", VALIDATION_SPLITS,
    )
    test_every_epoch: bool = _option(True, "score the test-set ELBO after every epoch")
    preset: str | None = _option(
        None, "the preset the run started from (`vaelab train --preset NAME` records it; `vaelab presets` "
        "lists them); in a `vaelab train --config` file it applies the preset, whose fields the file's "
        "other keys and the flags override (TrainConfig.load only records it)"
    )

    def __post_init__(self) -> None:
        if self.dataset is None:  # a bare --data-dir means any folder of IDX files, as before datasets had names
            object.__setattr__(self, "dataset", "folder" if self.data_dir is not None else "mnist")
        check_types(self)
        _resolve_schedule(self)
        check_values(self)

    @property
    def logs_objective(self) -> bool:
        """Whether training logs the objective's own value besides the ELBO (all but the article's)."""
        return not (self.objective == "elbo" and self.samples == 1)

    def unused_fields(self) -> set[str]:
        """The fields that change nothing in this run (e.g. channels of an mlp), which a report need not show."""
        unused = {name for name, applies in (
            ("channels", self.model == "conv"),
            ("lower_latent_size", self.model == "mlp2"),
            ("upper_hidden_size", self.model == "mlp2"),
            ("adam_beta1", self.optimizer == "adam"),
            ("adam_beta2", self.optimizer == "adam"),
            ("adam_eps", self.optimizer == "adam"),
            ("beta", self.objective == "beta"),
            ("stages", self.lr_schedule != "constant"),
            ("validation_split", self.validation > 0),
            ("class_names", self.dataset == "folder"),
        ) if not applies}
        return unused | ({"preset"} if self.preset is None else set())

    @property
    def schedule_note(self) -> str | None:
        """The sentence every report states for a shortened schedule; None for the full one or a constant lr."""
        if self.lr_schedule == "constant" or self.stages == IWAE_STAGES:
            return None
        stages = "stage 1" if self.stages == 1 else f"stages 1\u2013{self.stages}"
        return (f"Shortened schedule: {stages} of {IWAE_STAGES} ({self.epochs:,} of "
                f"{stage_epochs(IWAE_STAGES):,} passes)")

    def lr_at(self, epoch: int) -> float:
        """The learning rate of epoch `epoch` (1, 2, …): --lr, or the schedule's stage's."""
        if self.lr_schedule == "constant":
            return self.lr
        stage = stage_of(epoch)
        if self.lr_schedule == "iwae":  # their code: 1e-4 * round(10 ** (1 - i / 7), 1), for lr = 1e-3
            return self.lr * round(10 ** (1 - stage / 7), 1) / 10
        return self.lr * 10 ** (-stage / 7)

    @property
    def hidden_layers(self) -> tuple[int, ...]:
        """The widths of the hidden layers actually used (the article's: two of 2 x latent size)."""
        return _widths(self.hidden_size, 2 * self.latent_size)

    @property
    def lower_latent(self) -> int:
        """mlp2: units of h1, the lower stochastic layer."""
        return self.lower_latent_size if self.lower_latent_size is not None else 2 * self.latent_size

    @property
    def upper_hidden_layers(self) -> tuple[int, ...]:
        """mlp2: the widths of the hidden layers between h1 and z."""
        return _widths(self.upper_hidden_size, self.lower_latent)

    # --- round trips -------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The fields as plain JSON values (lists of widths as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> TrainConfig:
        """Build a config from a mapping, rejecting keys that are not fields."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise VaelabError(
                f"{source}: unknown key(s) {', '.join(unknown)}; "
                f"known keys are {', '.join(sorted(known))}"
            )
        return cls(**values)

    def save(self, path: str | Path) -> None:
        """Write the config as JSON or TOML, chosen by the file's suffix."""
        path = Path(path)
        if path.suffix == ".toml":
            values = {k: v for k, v in self.to_dict().items() if v is not None}
            path.write_text(tomli_w.dumps(values))
        else:
            path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        """Read a JSON or TOML file; `overrides` (e.g. command-line flags) win."""
        return cls.from_dict({**read_config_file(path), **overrides}, source=str(path))


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The raw mapping in a TOML or JSON config file, with a clear error if unreadable."""
    path = Path(path)
    if path.is_dir():
        raise VaelabError(f"config file {path} is a folder; give --config a .toml or .json file")
    if not path.is_file():
        raise VaelabError(f"config file {path} does not exist; check the path given to --config")
    if path.suffix.lower() in (".yaml", ".yml"):
        raise VaelabError(f"config file {path} is YAML, which vaelab does not read; write it as TOML (.toml) or "
                          "JSON (.json)")
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".toml":
            values = tomllib.loads(text)
        else:
            values = json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        kind = "TOML" if path.suffix == ".toml" else "JSON (a file not named .toml is read as JSON)"
        raise VaelabError(f"config file {path} is not valid {kind}: {exc}") from None
    if not isinstance(values, dict):
        raise VaelabError(f"config file {path} must hold a table of keys, not {type(values).__name__}")
    return values


def _widths(value: int | tuple[int, ...] | None, default: int) -> tuple[int, ...]:
    """Hidden widths as a field gives them: a list as is, one width for two layers, unset two of `default`."""
    if isinstance(value, tuple):
        return value
    return (default if value is None else value,) * 2


def stage_epochs(stages: int) -> int:
    """Epochs in the first `stages` stages of the iwae schedule: 3^0 + … + 3^(stages-1) = (3^stages - 1) / 2."""
    return (3**stages - 1) // 2


def stage_of(epoch: int) -> int:
    """The stage i (0, 1, …) of the iwae schedule that epoch `epoch` (1, 2, …) belongs to: ends at 1, 4, 13, 40, …"""
    stage = 0
    while stage_epochs(stage + 1) < epoch:
        stage += 1
    return stage


def _resolve_schedule(c: TrainConfig) -> None:
    """Epochs and stages made consistent: with a schedule, either one gives the other; a mismatch is an error."""
    def fail(rule: str) -> None:
        raise VaelabError(rule)

    set_ = functools.partial(object.__setattr__, c)
    if c.lr_schedule == "constant" or c.lr_schedule not in LR_SCHEDULES:
        if c.stages is not None:
            fail(f"stages (--stages) shortens --lr-schedule iwae only (the schedule is {c.lr_schedule}); "
                 "give --epochs instead")
        if c.epochs is None:
            set_("epochs", ARTICLE_EPOCHS)
        return
    if c.stages is not None and not 1 <= c.stages <= IWAE_STAGES:
        fail(f"stages (--stages) must be between 1 and {IWAE_STAGES}, got {c.stages!r}")
    ends = {stage_epochs(n): n for n in range(1, IWAE_STAGES + 1)}
    if c.stages is None and c.epochs is None:
        set_("stages", IWAE_STAGES)
    elif c.stages is None:
        if c.epochs not in ends:
            fail(f"epochs (--epochs) {c.epochs} does not end a stage of --lr-schedule {c.lr_schedule} (stages end "
                 f"at epochs {', '.join(map(str, ends))}); give --stages N instead")
        set_("stages", ends[c.epochs])
    elif c.epochs is not None and c.epochs != stage_epochs(c.stages):
        fail(f"epochs (--epochs) {c.epochs} does not match --stages {c.stages}, which is "
             f"{stage_epochs(c.stages)} epochs; give --stages alone and the epochs follow")
    set_("epochs", stage_epochs(c.stages))
