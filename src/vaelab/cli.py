"""The `vaelab` command: train and evaluate VAEs from the shell.

Every problem a user can fix ends as one line on stderr naming the culprit and
the fix, with a non-zero exit status and no traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import json
import os
import platform
import shlex
import sys
import typing
import warnings
from pathlib import Path
from typing import Any

from vaelab import figures
from vaelab.argtypes import int_between, seed_type
from vaelab.config import IWAE_STAGES, TrainConfig, stage_epochs
from vaelab.config_checks import flag
from vaelab.console import ForgivingStream
from vaelab.errors import TrainingInterrupted, VaelabError
from vaelab.files import display
from vaelab.signals import deferred, raising, report

RESUMABLE = {"epochs", "stages", "device", "data_dir", "compile"}  # what may change when a run is continued


WIDTH_FIELDS = ("hidden_size", "upper_hidden_size")  # one width (two layers) or a list


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field; unset flags leave the config file's value alone."""
    group = parser.add_argument_group("training config (defaults: the article's)")
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS}
        default = f.default
        hint = hints[f.name]
        kind = hint if typing.get_origin(hint) is tuple else next(
            t for t in typing.get_args(hint) or (hint,) if t is not type(None))
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is tuple or f.name in WIDTH_FIELDS:
            kwargs["type"] = widths if f.name in WIDTH_FIELDS else (lambda text: _as_list(widths(text)))
            kwargs["metavar"] = "N[,N...]"
        else:
            kwargs["type"] = kind  # int, float or str: argparse rejects '1e-3x' itself
            kwargs["metavar"] = f.name.split("_")[-1].upper()
        if f.metadata["choices"]:
            kwargs["choices"] = f.metadata["choices"]
            kwargs.pop("metavar", None)
        shown = "unset" if default is None else default
        group.add_argument(flag(f.name), help=f"{f.metadata['help']} (default: {shown})", **kwargs)


def _version() -> str:
    """vaelab's version and the versions its numbers depend on, e.g. 'vaelab 0.1.0 (torch 2.13.0+cpu, Python
    3.11.2)', read from the installed packages' metadata without importing torch."""
    from importlib import metadata

    from vaelab import __version__

    try:
        torch = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch = "not installed"
    return f"vaelab {__version__} (torch {torch}, Python {platform.python_version()})"


class CommandParser(argparse.ArgumentParser):
    """A command's parser: what it does not know is its own error, shown with its usage and the flag that was
    probably meant (argparse would show the top-level usage)."""

    def parse_known_args(self, args=None, namespace=None):
        parsed, extra = super().parse_known_args(args, namespace)
        if extra:
            known = [o for action in self._actions for o in action.option_strings if o.startswith("--")]
            guesses = [m for arg in extra if arg.startswith("-")
                       for m in difflib.get_close_matches(arg.split("=")[0], known, n=1)]
            self.error(f"unrecognized arguments: {' '.join(extra)}"
                       + (f" (did you mean {', '.join(dict.fromkeys(guesses))}?)" if guesses else ""))
        return parsed, extra


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vaelab",
        description="Train variational autoencoders on MNIST-like images and explore what they learned.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=CommandParser)

    train = sub.add_parser("train", help="train a VAE and write a run directory",
                           description="Train the article's VAE (flags override --config).")
    train.add_argument("--out", metavar="RUN", help="run directory to create (default: runs/<date-time>)")
    train.add_argument("--config", metavar="FILE", help="TOML or JSON file of config fields")
    train.add_argument("--resume", metavar="RUN",
                       help="continue RUN to --epochs in total (default: the run's own target)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_config_flags(train)
    train.set_defaults(func=cmd_train)

    presets = sub.add_parser("presets", help="list the presets that reproduce a paper's cells",
                             description="The presets of `vaelab train --preset NAME`, with the published "
                                         "test log-likelihood of the cell each reproduces.")
    presets.set_defaults(func=cmd_presets)
    _add_reproduce_command(sub)

    ev = sub.add_parser("eval", help="score a run on the test set",
                        description="Test-set ELBO and importance-weighted log-likelihood, in nats per image.")
    ev.add_argument("run", metavar="RUN", help="run directory written by `vaelab train`")
    ev.add_argument("--iw-k", type=int, default=1000, metavar="K",
                    help="importance samples per image (default: 1000; 0 skips the estimate)")
    ev.add_argument("--seed", type=seed_type, default=0, help="seed of the sampling noise (default: 0)")
    ev.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    ev.add_argument("--data-dir", metavar="DIR", help="where the test files are (default: the run's)")
    ev.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    judging = ev.add_mutually_exclusive_group()
    judging.add_argument("--judge", metavar="FILE", help="judge file from `vaelab judge train` (default: the one "
                                                         "shipped for the run's dataset, if any)")
    judging.add_argument("--no-judge", action="store_true", help="skip the judge's scores of generated images")
    ev.set_defaults(func=cmd_eval)

    cm = sub.add_parser("compare", help="compare two scored runs' log-likelihoods, image by image",
                        description="The second run's importance-weighted log-likelihood minus the first's, with "
                                    "the standard error of the per-image differences over the test images both "
                                    "were scored on (a paired comparison), from their eval.json files.")
    cm.add_argument("first", metavar="RUN_A", help="run directory scored by `vaelab eval`")
    cm.add_argument("second", metavar="RUN_B", help="another, scored on the same test images")
    cm.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    cm.set_defaults(func=cmd_compare)

    cp = sub.add_parser("copy", help="copy a run's latest checkpoint into a new folder, even while it trains",
                        description="Copy a run, as its checkpoint holds it now, into a new or empty folder: a run "
                                    "of its own, to score, draw or train on apart from the original, which may "
                                    "be training meanwhile. Resuming the copy continues as the original did "
                                    "from that checkpoint, bit for bit.")
    cp.add_argument("run", metavar="RUN", help="run directory written by `vaelab train`")
    cp.add_argument("--out", required=True, metavar="DIR", help="the copy's folder: new or empty")
    cp.set_defaults(func=cmd_copy)
    _add_judge_commands(sub)
    _add_explore_commands(sub)
    return parser


def widths(text: str) -> int | tuple[int, ...]:
    """argparse type of layer widths: '96' is one width, '512,256' (or '512 256') a list of them."""
    parts = text.replace(",", " ").split()
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if "," in text and any(not p.strip() for p in text.split(",")):  # "10,,20" or "10,": a width left out
        values = ()
    if not values:
        raise argparse.ArgumentTypeError(f"must be a width such as 96, or a list such as 512,256, got {text!r}")
    return values[0] if len(values) == 1 and "," not in text else values


def _as_list(value: int | tuple[int, ...]) -> tuple[int, ...]:
    return value if isinstance(value, tuple) else (value,)


def _add_judge_commands(sub) -> None:
    """`vaelab judge train`: the classifier that scores generated images (vaelab.judge)."""
    judge = sub.add_parser("judge", help="the classifier that judges generated images",
                           description="Train the convolutional classifier that `vaelab eval` uses to judge "
                                       "generated images (class accuracy and Fréchet distance).")
    actions = judge.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser("train", help="train a judge on a dataset's training images",
                           description="Train a judge on the training images (binarized at byte >= 73) and "
                                       "report its accuracy on the test images after every epoch.")
    p.add_argument("--dataset", choices=("mnist", "fashion-mnist", "kmnist", "folder"),
                   help="which dataset (default: mnist, or folder with --data-dir alone)")
    p.add_argument("--data-dir", metavar="DIR", help="where the dataset's four IDX files are")
    p.add_argument("--download", action="store_true", help="fetch the dataset's missing files first")
    p.add_argument("--out", metavar="FILE", required=True, help="where to write the judge (.safetensors)")
    p.add_argument("--epochs", type=int_between(1, 1000), default=5, metavar="N", help="passes (default: 5)")
    p.add_argument("--seed", type=seed_type, default=0, help="initialisation, dropout and shuffling (default: 0)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    p.set_defaults(func=cmd_judge_train)


def cmd_judge_train(args: argparse.Namespace) -> int:
    from vaelab.data import find_dataset
    from vaelab.judge import save_judge, train_judge

    args.dataset = args.dataset or ("folder" if args.data_dir else "mnist")
    if args.download:
        find_dataset(args.dataset, args.data_dir, download=True)
    command = "vaelab judge train " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
        if k in ("dataset", "data_dir", "out", "epochs", "seed", "device") and v is not None)
    judge = train_judge(args.dataset, data_dir=args.data_dir, epochs=args.epochs, seed=args.seed,
                        device=args.device, command=command)
    path = save_judge(judge, args.out)
    print(f"judge written to {display(path)}: test accuracy {100 * judge.info['test_accuracy']:.2f}% "
          f"on {judge.info['n_test']} test images")
    return 0


def _add_explore_commands(sub) -> None:
    """One command per figure of `vaelab.figures.FIGURES`, then `report`, which draws them all, and `explore`."""
    for spec in figures.FIGURES:
        figures.add_command(sub, spec, _figure_command(spec))

    p = sub.add_parser("report", help="one self-contained HTML page with every figure",
                       description="Write RUN/report.html: config, test scores, curves and every figure, "
                                   "images embedded so it opens offline. Scores the run first when eval.json "
                                   "is missing or does not score its current weights.")
    p.add_argument("run", metavar="RUN", help="run directory written by `vaelab train`")
    p.add_argument("--seed", type=seed_type, default=0,
                   help="seed of the image subset and of any sampling (default: 0)")
    p.add_argument("--n-stats", type=int_between(1, 1_000_000), default=10000, metavar="N",
                   help="images for class statistics (default: 10000)")
    p.add_argument("--style", choices=("mean", "binary"), default="mean", help="how images are shown")
    p.add_argument("--embed", choices=("tsne", "pca", "umap"), default="tsne", help="the map's method")
    p.add_argument("--iw-k", type=int, default=1000, metavar="K",
                   help="importance samples per image if the run must be scored (default: 1000; 0 skips the "
                        "estimate)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"), help="where to score it")
    p.add_argument("--data-dir", metavar="DIR", help="where the dataset's files are (default: the run's)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("explore", help="one offline HTML page to explore the latent space in a browser",
                       description="Write RUN/explorer.html: the run's encoder and decoder, run by the page "
                                   "itself, with a seeded subset of test images and their codes. One file: "
                                   "it opens offline in any browser, no server needed.")
    p.add_argument("run", metavar="RUN", help="run directory written by `vaelab train`")
    p.add_argument("--out", metavar="FILE.html", help="where to write it: a .html file or a folder "
                                                      "(default: RUN/explorer.html)")
    p.add_argument("--open", action="store_true", help="open it in the default browser once written")
    p.add_argument("-n", type=int_between(10, 10_000), default=1000, metavar="N",
                   help="test images embedded, with their codes (default: 1000)")
    p.add_argument("--seed", type=seed_type, default=0, help="seed of the test subset (default: 0)")
    p.add_argument("--map", dest="maps", action="append", choices=("tsne", "umap"), default=[],
                   help="add this map of the codes beside the PCA one, as a tab (t-SNE: seconds for 1,000 "
                        "codes; umap needs `pip install umap-learn`); give it twice for both")
    p.add_argument("--data-dir", metavar="DIR", help="where the test files are (default: the run's)")
    p.set_defaults(func=cmd_explore)


def cmd_train(args: argparse.Namespace) -> int:
    from vaelab.checkpoint import CHECKPOINT, load_checkpoint
    from vaelab.training import resume, train

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in fields}
    progress = not args.quiet and sys.stderr.isatty()
    if args.resume is not None:
        refused = sorted(set(given) - RESUMABLE) + (["config"] if args.config is not None else [])
        refused += ["out"] if args.out is not None else []
        if refused:
            names = ", ".join(flag(n) for n in refused)
            raise VaelabError(f"{names} cannot be given with --resume: a resumed run keeps its own "
                              "config (only --epochs, --stages, --device, --data-dir and --[no-]compile may change)")
        before = load_checkpoint(args.resume).position.step if (Path(args.resume) / CHECKPOINT).is_file() else None
        run = resume(args.resume, epochs=given.get("epochs"), stages=given.get("stages"), device=given.get("device"),
                     data_dir=given.get("data_dir"), compile=given.get("compile"), progress=progress)
        if run.step == before:  # nothing to do, and said so: nothing was written
            return 0
    else:
        run = train(_train_config(args.config, given), args.out, progress=progress)  # no --out: under runs/
    print(f"run written to {display(run.path)}  (next: vaelab eval {display(run.path)})")
    return 0


def _train_config(config_file: str | None, given: dict[str, Any]) -> TrainConfig:
    """The preset's fields (--preset, or the config file's `preset`), then the config file's, then the flags."""
    from vaelab.config import read_config_file
    from vaelab.presets import load_preset

    from_file = read_config_file(config_file) if config_file else {}
    name = given.get("preset", from_file.get("preset"))
    values = load_preset(name) if name is not None else {}
    if "data_dir" in {**from_file, **given} and "dataset" not in {**from_file, **given}:
        values.pop("dataset", None)  # your --data-dir alone means any folder of IDX files, as without a preset
    values.update(from_file)
    for one, other in (("stages", "epochs"), ("epochs", "stages")):  # one given alone decides the other
        if one in given and other not in given:
            values.pop(other, None)
    values.update(given)
    if name is not None:
        values["preset"] = name
    return TrainConfig.from_dict(values, source=config_file or "command line")


def cmd_presets(args: argparse.Namespace) -> int:
    from vaelab.presets import list_presets, paper_cell, twin

    for name in list_presets():
        cell, same = paper_cell(name), twin(name)
        print(f"{name:<24} {cell.test_log_likelihood:8.2f}   {cell.cell}"
              + (f" (one model with {same}: trained once by `vaelab reproduce`)" if same else ""))
    print("(published test log-likelihoods in nats; train one with `vaelab train --preset NAME [--stages N]`, "
          "score it with `vaelab eval RUN --iw-k 5000`; or all of a paper's with `vaelab reproduce PAPER`)")
    return 0


def _add_reproduce_command(sub) -> None:
    p = sub.add_parser("reproduce", help="train and score a paper's presets; vaelab's table beside the paper's",
                       description="Train every cell of a paper's table from its presets (or the CELLs given) into "
                                   "OUT, score each with the paper's importance samples, and print the table and "
                                   "the paper's comparisons (also written to OUT/table.md). Run it again to "
                                   "continue anything cut off; a larger --stages extends the runs in OUT.")
    p.add_argument("paper", metavar="PAPER", help="whose presets: iwae (Burda et al. 2015, Table 1)")
    p.add_argument("cells", metavar="CELL", nargs="*", default=[],  # a default: argparse then asks for PAPER alone
                   help="only these, e.g. 1-layer/vae-k1 (default: all)")
    p.add_argument("--out", metavar="OUT", help="folder of the cells' runs (default: runs/PAPER-stages-N)")
    p.add_argument("--stages", type=int, default=IWAE_STAGES, metavar="N",
                   help=f"train the first N stages of the schedule (default: {IWAE_STAGES}, the full "
                        f"{stage_epochs(IWAE_STAGES):,} passes)")
    p.add_argument("--iw-k", type=int, default=5000, metavar="K",  # presets.PAPER_K: the paper's
                   help="importance samples (default: 5000)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--data-dir", metavar="DIR", help="a folder of IDX files instead of the bundled MNIST")
    p.add_argument("--machine", metavar="TEXT", help="the table's machine column (default: the machines "
                   "each run's epochs recorded)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="train N cells at once, in N processes (default: 1); each takes the next cell not taken")
    p.add_argument("--compile", action="store_true",
                   help="new runs' objectives (and on a GPU Adam's update) through torch.compile: faster GPU "
                        "steps, rounded otherwise (see "
                        "`vaelab train --help`); a run already in OUT goes on as it started")
    p.add_argument("--table-only", action="store_true", help="train nothing: the table of what OUT holds")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_reproduce)


def cmd_reproduce(args: argparse.Namespace) -> int:
    from vaelab.reproduce import reproduce

    if args.out is not None and not args.out.strip():
        raise VaelabError("--out is empty; give the folder for the cells' runs, or leave --out out for "
                          f"runs/{args.paper}-stages-{args.stages}")
    out = args.out or f"runs/{args.paper}-stages-{args.stages}"
    if args.table_only and not Path(out).is_dir():
        raise VaelabError(f"{display(out)} does not exist; give --out the folder of the cells' runs")
    try:
        text = reproduce(args.paper, out, cells=args.cells, stages=args.stages, iw_k=args.iw_k, device=args.device,
                         data_dir=args.data_dir, machine=args.machine, train_cells=not args.table_only,
                         jobs=args.jobs, compile=args.compile, progress=not args.quiet and sys.stderr.isatty())
    except TrainingInterrupted as exc:
        raise TrainingInterrupted(f"{exc}; or run this `vaelab reproduce` again: it goes on with every cell",
                                  exit_code=exc.exit_code) from None
    print(text)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from vaelab.checkpoint import load_run
    from vaelab.evalfile import read_eval
    from vaelab.evaluate import check_iw_k, evaluate_run
    from vaelab.presets import published, unlike_its_preset
    from vaelab.rundir import still_training

    progress = not args.quiet and not args.json and sys.stderr.isatty()
    check_iw_k(args.iw_k)  # a bad --iw-k is named before a bad path
    run = load_run(args.run)
    training = still_training(args.run)
    if training:  # said first: the scoring may take a while
        print(f"{training}: scoring its checkpoint at {run.where}, which its next checkpoint will replace "
              "(eval.json is then out of date); to keep "
              f"the checkpoint you score, score a copy: vaelab copy {display(args.run)} --out DIR",
              file=sys.stderr if args.json else sys.stdout, flush=True)
    r = evaluate_run(run, iw_k=args.iw_k, seed=args.seed, device=args.device,
                     data_dir=args.data_dir, progress=progress, judge=False if args.no_judge else args.judge or True,
                     echo=None if progress or args.quiet or args.json else functools.partial(  # no bar to show it
                         print, flush=True))
    if args.json:
        print(json.dumps(r.to_dict(per_image=False)))  # eval.json keeps each image's estimate too
        return 0
    print(f"{display(args.run)}: {run.where}, step {r.step}, weights {r.weights_sha256[:12]}, "
          f"{r.n_images} test images, seed {r.seed} (nats per image)")
    print(f"  ELBO                   {r.elbo:9.2f} ± {r.elbo_stderr:.2f}"
          f"   (reconstruction {r.loglike:.2f}, KL {r.kl:.2f})")
    if r.log_likelihood is not None:
        print(f"  log p(x), IW K={r.iw_k:<7} {r.log_likelihood:9.2f} ± {r.log_likelihood_stderr:.2f}")
        paper = published(run.config)
        if paper is not None:
            number, cell, how = paper
            print(f"  {'the paper':<22} {number:9.2f}          ({cell}: {how}; this run: {r.epoch:,})")
        elif (unlike := unlike_its_preset(run.config)) is not None:
            print(f"  {'the paper':<22} not shown: {unlike[0].lower()}{unlike[1:]}")
    print(f"  active units           {r.active_units} of {len(r.kl_per_dimension)}"
          + ("   (z, h1 at its posterior mean; Var[mu] > 0.01)" if r.active_units_by_layer is not None
             else "   (Var[mu] > 0.01, Burda et al. 2015)"))
    if r.active_units_by_layer is not None and len(r.active_units_by_layer) == len(run.model.layer_sizes):
        counts = zip(r.active_units_by_layer, run.model.layer_sizes, strict=True)
        print("  active units by layer  " + ", ".join(f"{n} of {size}" for n, size in counts)
              + "   (lowest first, the layers below sampled)")
    print(f"  {judge_line(r.judge, run.config.dataset, skipped=args.no_judge, data_dir=run.config.data_dir)}")
    saved = read_eval(run)
    if saved is not None and saved.data_sha256 != r.data_sha256:  # scores of other files: evaluate_run kept its own
        print(f"  not saved: {display(Path(args.run) / 'eval.json')} keeps the scores of the run's own test files")
        return 0
    kept = "" if saved is None or saved.iw_k == r.iw_k else (
        f" (keeping the IW estimate with K={saved.iw_k} made earlier for these weights)")
    print(f"  saved to {display(Path(args.run) / 'eval.json')}{kept}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from vaelab.compare import compare_runs

    c = compare_runs(args.first, args.second)
    a, b = c.first, c.second
    if args.json:
        print(json.dumps({"difference": c.difference, "paired_stderr": c.paired_stderr,
                          "unpaired_stderr": c.unpaired_stderr, "verdict": c.verdict, "n_images": a.n_images,
                          "different_draws": c.different_draws,
                          "first": {"run": str(args.first), "log_likelihood": a.log_likelihood,
                                    "log_likelihood_stderr": a.log_likelihood_stderr, "iw_k": a.iw_k},
                          "second": {"run": str(args.second), "log_likelihood": b.log_likelihood,
                                     "log_likelihood_stderr": b.log_likelihood_stderr, "iw_k": b.iw_k}}))
        return 0
    first, second = display(args.first), display(args.second)
    width = max(len(first), len(second), len("B - A"))
    print(f"log p(x), importance-weighted, on the same {a.n_images:,} test images (nats per image):")
    for name, label, r in ((first, "A", a), (second, "B", b)):
        print(f"  {label}  {name:<{width}}  {r.log_likelihood:8.2f} ± {r.log_likelihood_stderr:.2f}"
              f"   (K={r.iw_k:,}, epoch {r.epoch:,})")
    print(f"  {'B - A':<{width + 3}}  {c.difference:+8.2f} ± {c.paired_stderr:.2f}   paired: the spread of the "
          f"{a.n_images:,} per-image differences (± {c.unpaired_stderr:.2f} as if the runs' errors were independent)")
    verdict = {"ahead": "is ahead of", "behind": "is behind"}.get(c.verdict)
    print(f"  {second} {verdict} {first} by more than two standard errors" if verdict else
          "  within noise: the difference is less than two standard errors")
    if a.iw_k != b.iw_k:
        print(f"  note: scored with different K ({a.iw_k:,} and {b.iw_k:,}); a larger K gives a tighter bound, so "
              "part of the difference is the estimates', not the models'; score both with the same --iw-k")
    if c.different_draws:
        print(f"  note: the test images' pixels are different random draws (dynamic binarization: "
              f"{c.different_draws[0]} and {c.different_draws[1]}); each image's two estimates are still paired, "
              "but part of the spread is the draws'")
    return 0


def cmd_copy(args: argparse.Namespace) -> int:
    from vaelab.checkpoint import batches_into, weights_digest
    from vaelab.rundir import copy_run, still_training
    from vaelab.training import further

    training = still_training(args.run)
    ckpt = copy_run(args.run, args.out)
    position = ckpt.position
    where = (batches_into(position.batch, position.epoch + 1) if position.batch
             else f"at the end of epoch {position.epoch:,}")
    print(f"copied {display(args.run)} to {display(args.out)}: {where} of "
          f"{ckpt.config.epochs:,}, step {position.step:,}, weights {weights_digest(ckpt.model_state)[:12]}")
    if training:
        print(f"  {training}; the copy stays at this checkpoint")
    done = ckpt.position.epoch >= ckpt.config.epochs and not ckpt.position.batch  # a resume alone does nothing
    more = further(ckpt.config, ckpt.position.epoch) if done else ""
    print(f"  score it: vaelab eval {display(args.out)}; train it on: vaelab train --resume {display(args.out)}"
          + (f" {more} (or more)" if more else " (its schedule is done)" if done else ""))
    return 0


def judge_line(judge: dict[str, Any] | None, dataset: str, *, skipped: bool = False,
               data_dir: str | None = None) -> str:
    """The `vaelab eval` line of the judge's scores, or why there are none (and the command that makes one
    for the run's data, `data_dir` for a folder's)."""
    if skipped:
        return "judge: skipped (--no-judge)"
    if judge is None:
        where = f" --data-dir {shlex.quote(display(data_dir)) if data_dir else 'DIR'}" if dataset == "folder" else ""
        return (f"judge: none shipped for {dataset}; train one with `vaelab judge train --dataset {dataset}{where} "
                "--out FILE` and pass --judge FILE")
    return (f"judge: generated images classified as their class {100 * judge['class_accuracy']:.1f}% "
            f"(test images {100 * judge['test_accuracy']:.1f}%); FID {judge['fid']:.1f} "
            f"(floor test vs train {judge['fid_floor']:.1f})")


def _figure_command(spec: figures.FigureSpec):
    """The command `vaelab NAME`: draw the figure of `spec` and say where it went."""

    def command(args: argparse.Namespace) -> int:
        print(f"wrote {display(figures.draw_command(spec, args))}")
        return 0

    return command


def cmd_report(args: argparse.Namespace) -> int:
    from vaelab.report import write_report

    path = write_report(args.run, seed=args.seed, n_stats=args.n_stats, style=args.style, embed_method=args.embed,
                        iw_k=args.iw_k, device=args.device, data_dir=args.data_dir,
                        progress=sys.stderr.isatty(), echo=print)
    print(f"report written to {display(path)}")
    return 0


def cmd_explore(args: argparse.Namespace) -> int:
    from vaelab.explorer.page import write_explorer
    from vaelab.rundir import still_training

    training = still_training(args.run)
    path = write_explorer(args.run, args.out, n=args.n, seed=args.seed, data_dir=args.data_dir,
                          embed=("pca", *dict.fromkeys(args.maps)))
    print(f"wrote {display(path)} ({path.stat().st_size / 1e6:.1f} MB); open it in any browser, no server needed")
    if training:
        print(f"  {training}: the page is its checkpoint of when it was written; later checkpoints are not in it")
    if args.open:
        import webbrowser

        uri = Path(os.path.abspath(path)).as_uri()
        if not webbrowser.open(uri):  # no browser here (a server, a container): say so, with the page's address
            print(f"  --open: no browser found on this machine; open {uri} in one")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one command; every failure a user can fix ends as one line and a non-zero status."""
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = ForgivingStream(sys.stdout), ForgivingStream(sys.stderr)
    try:
        with raising():
            return _run(argv)
    finally:
        sys.stdout, sys.stderr = streams


def _run(argv: list[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
        with deferred():  # loading torch would swallow a Ctrl-C
            from vaelab.device import flush_denormals

        flush_denormals()  # before torch starts its worker threads, which copy the flag
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return args.func(args)
    except TrainingInterrupted as exc:
        print(f"vaelab: stopped: {exc}", file=sys.stderr)
        return exc.exit_code
    except VaelabError as exc:
        print(f"vaelab: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # a file the user named cannot be read or written
        where = f"{display(exc.filename)}: " if exc.filename else ""
        print(f"vaelab: error: {where}{exc.strerror or exc}; check the path and its permissions", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM / SIGHUP as Stopped
        line, status = report(exc)
        print(line, file=sys.stderr)
        return status


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"vaelab: warning: {message}", file=sys.stderr)
