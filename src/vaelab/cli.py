"""The `vaelab` command: train and evaluate VAEs from the shell.

Every problem a user can fix ends as one line on stderr naming the culprit and
the fix, with a non-zero exit status and no traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import typing
import warnings
from pathlib import Path
from typing import Any

from vaelab import figures
from vaelab.config import TrainConfig, flag
from vaelab.errors import TrainingInterrupted, VaelabError
from vaelab.figures import int_between, seed_type
from vaelab.files import display
from vaelab.signals import deferred, raise_on_stop_signals, report

RESUMABLE = {"epochs", "device", "data_dir"}  # what may change when a run is continued


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
        elif typing.get_origin(kind) is tuple or f.name == "hidden_size":
            kwargs["type"] = widths if f.name == "hidden_size" else (lambda text: _as_list(widths(text)))
            kwargs["metavar"] = "N[,N...]"
        else:
            kwargs["type"] = kind  # int, float or str: argparse rejects '1e-3x' itself
            kwargs["metavar"] = f.name.split("_")[-1].upper()
        if f.metadata["choices"]:
            kwargs["choices"] = f.metadata["choices"]
            kwargs.pop("metavar", None)
        shown = "unset" if default is None else default
        group.add_argument(flag(f.name), help=f"{f.metadata['help']} (default: {shown})", **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vaelab",
        description="Train variational autoencoders on MNIST-like images and explore what they learned.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train a VAE and write a run directory",
                           description="Train the article's VAE (flags override --config).")
    train.add_argument("--out", metavar="RUN", help="run directory to create (default: runs/<date-time>)")
    train.add_argument("--config", metavar="FILE", help="TOML or JSON file of config fields")
    train.add_argument("--resume", metavar="RUN",
                       help="continue RUN to --epochs in total (default: the run's own target)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_config_flags(train)
    train.set_defaults(func=cmd_train)

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
    ev.set_defaults(func=cmd_eval)
    _add_explore_commands(sub)
    return parser


def widths(text: str) -> int | tuple[int, ...]:
    """argparse type of layer widths: '96' is one width, '512,256' (or '512 256') a list of them."""
    parts = text.replace(",", " ").split()
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if not values:
        raise argparse.ArgumentTypeError(f"must be a width such as 96, or a list such as 512,256, got {text!r}")
    return values[0] if len(values) == 1 and "," not in text else values


def _as_list(value: int | tuple[int, ...]) -> tuple[int, ...]:
    return value if isinstance(value, tuple) else (value,)


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
    p.add_argument("--data-dir", metavar="DIR", help="where the test files are (default: the run's)")
    p.set_defaults(func=cmd_explore)


def cmd_train(args: argparse.Namespace) -> int:
    from vaelab.training import resume, train

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in fields}
    progress = not args.quiet and sys.stderr.isatty()
    if args.resume:
        refused = sorted(set(given) - RESUMABLE) + (["config"] if args.config else []) + (["out"] if args.out else [])
        if refused:
            names = ", ".join(flag(n) for n in refused)
            raise VaelabError(f"{names} cannot be given with --resume: a resumed run keeps its own "
                              "config (only --epochs, --device and --data-dir may change)")
        from vaelab.checkpoint import load_checkpoint

        epochs = given.get("epochs", load_checkpoint(args.resume).config.epochs)
        run = resume(args.resume, epochs=epochs, device=given.get("device"),
                     data_dir=given.get("data_dir"), progress=progress)
    else:
        config = (TrainConfig.load(args.config, **given) if args.config
                  else TrainConfig.from_dict(given, source="command line"))
        run = train(config, args.out, progress=progress)  # no --out: a new folder under runs/
    print(f"run written to {display(run.path)}  (next: vaelab eval {display(run.path)})")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from vaelab.checkpoint import load_run
    from vaelab.evaluate import evaluate_run, read_eval

    progress = not args.quiet and not args.json and sys.stderr.isatty()
    r = evaluate_run(args.run, iw_k=args.iw_k, seed=args.seed, device=args.device,
                     data_dir=args.data_dir, progress=progress)
    if args.json:
        print(json.dumps(r.to_dict()))
        return 0
    print(f"{display(args.run)}: epoch {r.epoch}, step {r.step}, weights {r.weights_sha256[:12]}, "
          f"{r.n_images} test images, seed {r.seed} (nats per image)")
    print(f"  ELBO                   {r.elbo:9.2f} ± {r.elbo_stderr:.2f}"
          f"   (reconstruction {r.loglike:.2f}, KL {r.kl:.2f})")
    if r.log_likelihood is not None:
        print(f"  log p(x), IW K={r.iw_k:<6} {r.log_likelihood:9.2f} ± {r.log_likelihood_stderr:.2f}")
    print(f"  active units           {r.active_units} of {len(r.kl_per_dimension)}"
          "   (Var[mu] > 0.01, Burda et al. 2015)")
    saved = read_eval(load_run(args.run))
    kept = "" if saved is None or saved.iw_k == r.iw_k else (
        f" (keeping the IW estimate with K={saved.iw_k} made earlier for these weights)")
    print(f"  saved to {display(Path(args.run) / 'eval.json')}{kept}")
    return 0


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

    path = write_explorer(args.run, args.out, n=args.n, seed=args.seed, data_dir=args.data_dir)
    print(f"wrote {display(path)} ({path.stat().st_size / 1e6:.1f} MB); open it in any browser, no server needed")
    if args.open:
        import webbrowser

        webbrowser.open(Path(os.path.abspath(path)).as_uri())
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one command; every failure a user can fix ends as one line and a non-zero status."""
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Forgiving(sys.stdout), _Forgiving(sys.stderr)
    previous = raise_on_stop_signals()
    try:
        return _run(argv)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
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


class _Forgiving:
    """A text stream that goes quiet, instead of failing, once nobody reads it.

    `vaelab train | head -1` closes the pipe and a closed terminal (SIGHUP) turns
    writes into errors; neither is a reason to abandon a run, so output stops and
    the work goes on (everything is in the run's files anyway). Characters the
    stream cannot encode (a path that is not UTF-8) are escaped, not fatal.
    """

    def __init__(self, stream):
        self._stream = stream
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError:
            self._silence()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError:
            self._silence()

    def _silence(self) -> None:
        """Point the stream's file descriptor at /dev/null, so later writes (and exit's flush) succeed."""
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
