"""The per-epoch log's format: the article's columns (reg, loglike, lowerBound), then vaelab's.

The article printed `epoch reg loglike lowerBound` each epoch; vaelab keeps those
columns in that order so logs compare, then adds the test ELBO and the time, the
objective's own value when it is not the ELBO, and the validation ELBO.
"""

from __future__ import annotations

from typing import Any

from vaelab.config import TrainConfig

HEADER = f"{'epoch':>5} {'reg':>9} {'loglike':>10} {'lowerBound':>11} {'test ELBO':>10} {'time(s)':>8}"


def objective_label(config: TrainConfig) -> str | None:
    """The log's name for the objective's own value; None for the article's ELBO, logged as lowerBound."""
    if not config.logs_objective:
        return None
    return {"elbo": f"ELBO K={config.samples}", "beta": f"beta={config.beta:g}",
            "iwae": f"IWAE K={config.samples}"}[config.objective]


def describe_objective(config: TrainConfig) -> str:
    """The objective in words, as the log's first line says it: 'the ELBO', 'IWAE K=5', …"""
    if config.objective == "elbo":
        return "the ELBO" if config.samples == 1 else f"the ELBO, mean of K={config.samples}"
    return objective_label(config) if config.objective == "iwae" else f"the ELBO with beta={config.beta:g}"


def format_row(m: dict[str, Any]) -> str:
    """One line of the article's per-epoch log: per-image means in nats, plus test ELBO."""
    test = f"{m['test_elbo']:10.2f}" if m.get("test_elbo") is not None else f"{'-':>10}"
    own = f" {m['objective']:13.2f}" if m.get("objective") is not None else ""
    valid = f" {m['valid_elbo']:10.2f}" if m.get("valid_elbo") is not None else ""
    return (f"{m['epoch']:5d} {m['reg']:9.2f} {m['loglike']:10.2f} {m['lower_bound']:11.2f} "
            f"{test} {m['elapsed']:8.1f}{own}{valid}")


def log_header(config: TrainConfig) -> str:
    """The log's column names: the article's, then the objective's own value and the validation ELBO if any."""
    label = objective_label(config)
    return HEADER + (f" {label:>13}" if label else "") + (f" {'valid ELBO':>10}" if config.validation else "")


def machines(metrics: list[dict[str, Any]]) -> str:
    """The machines that trained a run's epochs, in the order they first did; runs from before epochs
    recorded it say so."""
    names = list(dict.fromkeys(row["machine"] for row in metrics if row.get("machine")))
    if any(not row.get("machine") for row in metrics):
        names.append("some passes not recorded" if names else "not recorded")
    return "; ".join(names) or "not recorded"
