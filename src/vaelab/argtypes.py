"""argparse types that refuse impossible values while the command line is parsed, before PyTorch loads."""

from __future__ import annotations

import argparse

from vaelab.config_checks import MAX_SEED


def int_between(low: int, high: int, *, commas: bool = True):
    """argparse type of an integer from `low` to `high`: a typo cannot ask for a giant figure or run."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            shown = f"{low:,} to {high:,}" if commas else f"{low} to {high}"
            raise argparse.ArgumentTypeError(f"must be an integer from {shown}, got {text}")
        return value

    return parse


def seed_type(text: str) -> int:
    """argparse type of a seed: an integer from 0 to 2**63 - 1."""
    return int_between(0, MAX_SEED, commas=False)(text)


def class_label(text: str) -> int | str:
    """argparse type of a class: a number from 0 to 255, or a name the run's classes resolve once it is loaded."""
    stripped = text.strip()
    if stripped.lstrip("-+").isdigit():
        return int_between(0, 255)(stripped)
    return stripped
