"""IWAE Table 1 rows from run records: one Markdown row per run folder, for docs/reproduction.md.

    .venv/bin/python bench/table1.py RUN... [--machine "NVIDIA H200"] [--compare]

`vaelab reproduce iwae --table-only --out OUT` prints the table of the runs in
OUT, checking each score against the weights in the run's checkpoint. This
script makes the same rows from the records alone (config.json, metrics.jsonl
and eval.json), for runs kept without their weights, such as those a lent GPU
machine sent back (docs/table1-runs/). Each run must have been trained from an
`iwae/...` preset and scored with `vaelab eval RUN --iw-k 5000`. --compare adds
the paper's comparisons among the runs (vaelab.papertable.comparisons).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vaelab.config import TrainConfig
from vaelab.papertable import Cell, cell_from_records, comparisons, markdown_table, table_order


def cell(run: Path) -> Cell | None:
    """What the table shows of the run recorded in `run`; None if it is not a scored preset run."""
    if not (run / "config.json").is_file() or not (run / "eval.json").is_file():
        return None
    config = TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return cell_from_records(config, rows, json.loads((run / "eval.json").read_text()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--machine", help="the machine column (default: the machines the runs' epochs recorded)")
    parser.add_argument("--compare", action="store_true", help="also print the paper's comparisons among the runs")
    args = parser.parse_args()
    cells = sorted((c for c in map(cell, args.runs) if c is not None), key=lambda c: table_order(c.preset))
    print(markdown_table(cells, args.machine))
    if args.compare:
        print("\nThe paper's comparisons:\n" + "\n".join(comparisons(cells)))


if __name__ == "__main__":
    main()
