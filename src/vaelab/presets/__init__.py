"""Presets: TOML config files that reproduce a paper's cells, by name (`vaelab train --preset NAME`).

A preset is `presets/<paper>/<group>/<cell>.toml`, its name the path without the
suffix (`iwae/1-layer/iwae-k50`). Its top-level keys are TrainConfig fields; its
`[paper]` table says which published cell it reproduces and the number printed
there; its header comment lists every deviation from the paper or its code.

    from vaelab.presets import load_preset
    config = TrainConfig.from_dict(load_preset("iwae/1-layer/iwae-k50"))
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from vaelab.config import IWAE_STAGES, TrainConfig, stage_epochs, tomllib
from vaelab.errors import VaelabError

if TYPE_CHECKING:  # pragma: no cover
    from importlib.resources.abc import Traversable

SUFFIX = ".toml"
PAPER_K = 5000  # Burda et al. score every cell with 5,000 importance samples


@dataclass(frozen=True)
class PaperCell:
    """What a preset reproduces: the table cell, and its published test log-likelihood in nats."""

    cell: str
    test_log_likelihood: float


def _files() -> dict[str, Traversable]:
    """Every preset file by name, walking the package's folders."""
    found: dict[str, Traversable] = {}

    def walk(folder: Traversable, prefix: str) -> None:
        for entry in folder.iterdir():
            if entry.is_dir() and not entry.name.startswith(("_", ".")):
                walk(entry, f"{prefix}{entry.name}/")
            elif entry.name.endswith(SUFFIX):
                found[prefix + entry.name.removesuffix(SUFFIX)] = entry

    walk(resources.files(__name__), "")
    return found


def list_presets() -> list[str]:
    """The names of every preset, sorted."""
    return sorted(_files())


def _read(name: str) -> dict[str, Any]:
    files = _files()
    if name not in files:
        raise VaelabError(f"no preset {name!r}; known presets: {', '.join(sorted(files))} (see `vaelab presets`)")
    return tomllib.loads(files[name].read_text(encoding="utf-8"))


def load_preset(name: str) -> dict[str, Any]:
    """The TrainConfig fields of preset `name`, and `preset` naming it; a one-line error listing the known ones."""
    values = _read(name)
    values.pop("paper", None)
    return {**values, "preset": name}


def paper_cell(name: str) -> PaperCell:
    """The published cell preset `name` reproduces."""
    paper = _read(name)["paper"]
    return PaperCell(cell=paper["cell"], test_log_likelihood=float(paper["test_log_likelihood"]))


def twin(name: str) -> str | None:
    """The preset that trains the same model as preset `name`, bit for bit, under another name, or None.

    A preset declares it in its `[paper]` table (`same_run_as`), where its paper, too, reports one model
    for both cells (Burda et al.'s IWAE and VAE with two stochastic layers and k = 1: one objective, one
    gradient); it holds both ways. `vaelab reproduce` trains such a pair once."""
    declared = _read(name)["paper"].get("same_run_as")
    if declared is not None:
        return str(declared)
    return next((other for other in list_presets()
                 if other != name and _read(other).get("paper", {}).get("same_run_as") == name), None)


# Fields a run may set its own way and still be its preset's cell: how long, where and how it trains, its seed,
# where its files are and what the log shows. The data (`dataset`) are judged apart: `other_data`.
SAME_CELL = frozenset({"preset", "epochs", "stages", "seed", "device", "compile", "data_dir", "download",
                       "class_names", "test_every_epoch", "dataset"})


def changes(config: TrainConfig) -> list[str]:
    """How a preset's run differs from its preset in what it trains (flags given beside --preset, e.g.
    "samples 5 instead of 50"); empty for a run of no preset, of one this version does not ship, or of
    the preset as it is."""
    if not config.preset or config.preset not in _files():
        return []
    theirs = TrainConfig.from_dict(load_preset(config.preset), source=f"preset {config.preset}")
    preset, ours = _as_trained(theirs), _as_trained(config)
    return [f"{name} {_shown(ours[name])} instead of {_shown(preset[name])}"
            for name in preset if name not in SAME_CELL and ours.get(name) != preset[name]]


def _as_trained(config: TrainConfig) -> dict[str, Any]:
    """The config's fields, the widths as the network has them: `--hidden-size 200` is the preset's [200, 200]."""
    values = config.to_dict()
    values["hidden_size"] = list(config.hidden_layers)
    if config.model == "mlp2":
        values["lower_latent_size"], values["upper_hidden_size"] = config.lower_latent, list(config.upper_hidden_layers)
    return values


def _shown(value: Any) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


def other_data(config: TrainConfig) -> str | None:
    """The run's dataset when its preset's paper used another (a preset run given --data-dir or --dataset),
    else None."""
    if not config.preset or config.preset not in _files():
        return None
    theirs = load_preset(config.preset).get("dataset", "mnist")
    return config.dataset if config.dataset != theirs else None


def published(config: TrainConfig) -> tuple[float, str, str] | None:
    """The paper's log-likelihood for the cell a preset's run reproduces, the cell, and how the paper scored it
    ("K = 5,000, 3,280 passes"), for `vaelab eval` and the report; None for a run of no preset (or of one this
    version does not ship), or one that changed what its preset trains or trained on other data (`changes`,
    `other_data`): its numbers are not the paper's cell's."""
    if not config.preset or changes(config) or other_data(config):
        return None
    try:
        cell = paper_cell(config.preset)
    except VaelabError:
        return None
    return cell.test_log_likelihood, cell.cell, f"K = {PAPER_K:,}, {stage_epochs(IWAE_STAGES):,} passes"


def unlike_its_preset(config: TrainConfig) -> str | None:
    """Why a preset's run is not its paper's cell, in a sentence for `vaelab eval` and the report; None if it
    is (or is no preset's run)."""
    changed, data = changes(config), other_data(config)
    if not changed and not data:
        return None
    how = []
    if changed:
        how.append(f"trains otherwise ({'; '.join(changed)})")
    if data:
        how.append(f"on {data} data, not the paper's {load_preset(config.preset).get('dataset', 'mnist')}")
    return (f"This run started from preset {config.preset} but {' and '.join(how)}, so it is not that cell of "
            "the paper, and the paper's number is not shown beside its own")
