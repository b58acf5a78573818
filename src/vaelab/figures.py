"""Every figure vaelab draws, in one list: its command, its flags and its place in the report.

`FIGURES` is the one source of truth. `vaelab.cli` makes one subcommand per
entry (`add_command`), and `vaelab.report` draws each entry's panels with the
same `draw` the command uses, so adding a figure is adding an entry here. An
entry says:

- `name`, `help`: the command `vaelab NAME` and its one-line help;
- `options`: its own flags; the shared ones (RUN, --out, --seed, --data-dir, and
  --n-stats and --style where `stats` and `style` say so) come from `common_options`;
- `split`: the images it encodes: "train" (a subset of --n-stats images, which
  gives the class statistics), "test" (-n images) or None (none at all);
- `title`, `caption`: its section of the report, text or a function of the
  report's `Context` (which names the run's classes);
- `panels`: the images it adds to the report, each drawn with the command's
  defaults overridden by the panel's settings (default: one, as is);
- `draw(run, codes, args, path=..., root=...) -> Path`: args are the parsed flags.

Nothing heavy is imported here: the command line parses its flags before PyTorch loads.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from vaelab.argtypes import class_label, int_between, seed_type
from vaelab.catalog import Classes

if TYPE_CHECKING:  # pragma: no cover
    from vaelab.checkpoint import Run
    from vaelab.explore import Codes

ARTICLE_STRIPS = ((1, 4, "lerp"), (3, 8, "slerp"))  # the article's interpolations, when those digits exist
EMBED_NAMES = {"tsne": "t-SNE", "pca": "PCA", "umap": "UMAP"}


# ----------------------------------------------------------------------------- the entries


@dataclass(frozen=True)
class Option:
    """One flag of a figure command, as argparse's `add_argument` takes it."""

    flags: tuple[str, ...]
    dest: str
    default: Any = None
    help: str = ""
    type: Callable[[str], Any] | None = None
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    required: bool = False
    store_true: bool = False
    exclusive: str = ""  # options naming the same group: exactly one of them must be given

    def add_to(self, parser) -> None:
        kwargs: dict[str, Any] = {"dest": self.dest, "default": self.default, "help": self.help}
        if self.store_true:
            kwargs["action"] = "store_true"
        else:
            kwargs.update({k: v for k, v in (("type", self.type), ("choices", self.choices),
                                             ("metavar", self.metavar)) if v is not None})
        if self.required:
            kwargs["required"] = True
        parser.add_argument(*self.flags, **kwargs)


@dataclass(frozen=True)
class Context:
    """What the report knows when it writes captions: the run, its classes and the training subset."""

    run: Run
    classes: Classes
    present: list[int]  # labels in the training subset, sorted
    n_train: int  # training images behind the class statistics
    embed_method: str = "tsne"
    style: str = "mean"  # how decoded images are shown: Bernoulli means as grey levels, or "binary"

    @property
    def items(self) -> str:
        """What one image is called, plural: 'digits' for MNIST, else 'images'."""
        return "digits" if self.classes.digits else "images"

    @property
    def kinds(self) -> str:
        """What the classes are called, plural: 'digits' or 'classes'."""
        return "digits" if self.classes.digits else "classes"

    def names(self, labels: Sequence[int]) -> str:
        """'3', '3 and 5', 'Trouser, Bag and Sandal'."""
        names = [self.classes.name(int(k)) for k in labels]
        return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"

    @property
    def only(self) -> str:
        """A sentence saying which classes occur, when not all of them do (else '')."""
        if self.present == list(range(len(self.classes.names))):
            return ""
        return f" Only the {self.kinds} {self.names(self.present)} occur in these images."


Text = Union[str, Callable[[Context], str]]


@dataclass(frozen=True)
class Panel:
    """One image of the report: the flags that differ from the command's defaults, and its file."""

    settings: dict[str, Any] = field(default_factory=dict)
    file: str = ""  # RUN/figures/FILE.png (default: the figure's name)
    title: Text | None = None  # None: the figure's; "" continues the previous section
    caption: Text | None = None  # None: the figure's


@dataclass(frozen=True)
class FigureSpec:
    """One figure: a command, its flags, the images it encodes, its report section and how it is drawn."""

    name: str
    help: str
    draw: Callable[..., Path]
    split: str | None = "train"
    options: tuple[Option, ...] = ()
    stats: bool = True  # takes --n-stats (only figures that use the class statistics or codes)
    style: bool = True  # takes --style (only figures of decoded images)
    title: Text = ""
    caption: Text = ""
    panels: Callable[[Context], Sequence[Panel] | str] | None = None  # a str: why the report skips it


def text(value: Text | None, ctx: Context) -> str:
    """A title or caption for this report."""
    return "" if value is None else value if isinstance(value, str) else value(ctx)


def common_options(spec: FigureSpec) -> tuple[Option, ...]:
    """The flags every figure command shares, as `spec` needs them."""
    name = spec.name
    shared = [
        Option(("--out",), "out", metavar="FILE",
               help=f"figure to write, .png, .pdf or .svg; a folder gets {name}.png "
                    f"(default: RUN/figures/{name}.png)"),
        Option(("--seed",), "seed", 0, type=seed_type,
               help="seed of the image subset and of any sampling (default: 0)"),
        Option(("--data-dir",), "data_dir", metavar="DIR", help="where the dataset's files are (default: the run's)"),
    ]
    if spec.stats:
        shared.append(Option(("--n-stats",), "n_stats", 10000, type=int_between(1, 1_000_000), metavar="N",
                             help="training images whose codes give the class statistics "
                                  "(default: 10000, as the article)"))
    if spec.style:
        shared.append(Option(("--style",), "style", "mean", choices=("mean", "binary"),
                             help="mean: Bernoulli means as grey levels; binary: sigmoid > 0.5, "
                                  "as the article (default: mean)"))
    return tuple(shared)


def all_options(spec: FigureSpec) -> tuple[Option, ...]:
    return (*common_options(spec), *spec.options)


def defaults(spec: FigureSpec, **settings: Any) -> argparse.Namespace:
    """The flags of `vaelab NAME RUN` given nothing else, with `settings` in their place."""
    values = {"command": spec.name, "run": None, **{o.dest: o.default for o in all_options(spec)}}
    unknown = set(settings) - set(values)
    if unknown:
        raise ValueError(f"figure {spec.name!r} has no option {', '.join(sorted(unknown))}")
    return argparse.Namespace(**{**values, **settings})


def add_command(sub, spec: FigureSpec, func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
    """The subcommand `vaelab NAME` of `spec`, calling `func` with the parsed flags."""
    p = sub.add_parser(spec.name, help=spec.help, description=spec.help[0].upper() + spec.help[1:] + ".")
    p.add_argument("run", metavar="RUN", help="run directory written by `vaelab train`")
    groups: dict[str, Any] = {}
    for option in all_options(spec):
        if option.exclusive and option.exclusive not in groups:
            groups[option.exclusive] = p.add_mutually_exclusive_group(required=True)
        option.add_to(groups[option.exclusive] if option.exclusive else p)
    p.set_defaults(func=func)
    return p


def resolve_classes(spec: FigureSpec, args: argparse.Namespace, classes: Classes) -> argparse.Namespace:
    """`args` with every class given by name ('Trouser') turned into its label; numbers stay as given."""
    resolved = vars(args).copy()
    for option in spec.options:
        value = resolved.get(option.dest)
        if option.type is class_label and isinstance(value, str):
            resolved[option.dest] = classes.parse(value)  # one line listing the valid ones if unknown
    return argparse.Namespace(**resolved)


def codes_needed(spec: FigureSpec, args: argparse.Namespace) -> tuple[str, int] | None:
    """(split, how many images) `spec` encodes for `args`, or None."""
    if spec.split is None:
        return None
    return spec.split, args.n if spec.split == "test" else args.n_stats


def draw_command(spec: FigureSpec, args: argparse.Namespace) -> Path:
    """What `vaelab NAME ...` does: load the run, encode what the figure needs, draw it; returns its path."""
    from vaelab.plots import figure_path

    out = figure_path(args.out, spec.name) if args.out is not None else None  # before any slow work
    if getattr(args, "method", None) == "umap":
        from vaelab.latent import require_embedding

        require_embedding("umap")  # fail before the slow part if umap-learn is missing
    from vaelab import explore
    from vaelab.checkpoint import load_run

    run = load_run(args.run)
    args = resolve_classes(spec, args, explore.classes_of(run))
    # A path the user chose is theirs; the default one lies inside the run, where no link is followed.
    to = {"path": out, "root": None} if out else {"path": explore.default_path(run, spec.name), "root": run.path}
    needed = codes_needed(spec, args)
    codes = None
    if needed is not None:
        split, n = needed
        codes = explore.encode_subset(run, n=n, seed=args.seed, split=split, data_dir=args.data_dir)
    return spec.draw(run, codes, args, **to)


# ----------------------------------------------------------------------------- drawing


def _curves_layout(metrics: list[dict[str, Any]]) -> str:
    """What the curves' caption adds for a long run: its log axis and its learning rate's steps."""
    from vaelab import plots

    if not metrics:
        return ""
    _, log_x, steps = plots.curve_layout(metrics)
    said = " Epochs are on a log scale." if log_x else ""
    if steps:
        after = [f"{e:,}" for e in steps]
        listed = after[0] if len(after) == 1 else f"{', '.join(after[:-1])} and {after[-1]}"
        said += f" Grey lines mark the learning rate's steps, after epoch{'s' if len(after) > 1 else ''} {listed}."
    return said


def _draw_curves(run: Run, codes: None, a: argparse.Namespace, **to: Any) -> Path:
    from vaelab import explore

    return explore.figure_curves(run, **to)


def _draw_reconstruct(run: Run, codes: Codes, a: argparse.Namespace, **to: Any) -> Path:
    from vaelab import explore

    return explore.figure_reconstructions(run, codes, n=a.n, style=a.style, **to)


def _draw_generate(run: Run, codes: Codes, a: argparse.Namespace, **to: Any) -> Path:
    from vaelab import explore

    if a.all:
        return explore.figure_generate_all(run, codes, n=a.n, seed=a.seed, style=a.style, **to)
    label = None if a.prior else a.label if a.label is not None else a.digit
    return explore.figure_generate(run, codes, label=label, n=a.n, seed=a.seed, style=a.style, **to)


def _draw_mix(run: Run, codes: Codes, a: argparse.Namespace, **to: Any) -> Path:
    from vaelab import explore

    return explore.figure_mix(run, codes, style=a.style, **to)


def _draw_interpolate(run: Run, codes: Codes, a: argparse.Namespace, **to: Any) -> Path:
    from vaelab import explore

    return explore.figure_interpolate(run, codes, start=a.start, end=a.end, steps=a.steps, method=a.method,
                                      style=a.style, **to)


def _draw_embed(run: Run, codes: Codes, a: argparse.Namespace, **to: Any) -> Path:
    from vaelab import explore

    return explore.figure_embed(run, codes, method=a.method, seed=a.seed, **to)


def _draw_kl(run: Run, codes: Codes, a: argparse.Namespace, **to: Any) -> Path:
    from vaelab import explore

    return explore.figure_kl(run, codes, **to)


# ----------------------------------------------------------------------------- the report's choices


def interpolation_strips(classes: list[int]) -> list[tuple[int, int, str]]:
    """(start, end, method) of each strip: the article's 1 → 4 lerp and 3 → 8 slerp where those labels
    are present, else the first and last classes present; none with fewer than two classes."""
    if len(classes) < 2:
        return []
    return [(a, b, method) if {a, b} <= set(classes) else (classes[0], classes[-1], method)
            for a, b, method in ARTICLE_STRIPS]


def _interpolate_caption(ctx: Context) -> str:
    strips = interpolation_strips(ctx.present)
    if not strips:
        return ""
    (a, b, _), (c, d, _) = strips
    article = " (the article's example)" if ctx.classes.digits and (a, b) == (1, 4) else ""
    name = ctx.classes.name
    return (f"Linear interpolation between the mean codes of {name(a)} and {name(b)}{article}, "
            f"then spherical interpolation between {name(c)} and {name(d)}.")


def _interpolate_panels(ctx: Context) -> list[Panel] | str:
    strips = interpolation_strips(ctx.present)
    if not strips:
        return f"the training images hold only the {ctx.classes.word} {ctx.names(ctx.present)}"
    return [Panel({"start": a, "end": b, "method": method, "steps": 10}, file=file, title=None if i == 0 else "",
                  caption=None if i == 0 else "")
            for i, ((a, b, method), file) in enumerate(zip(strips, ("interpolate", "interpolate-slerp"), strict=True))]


_GENERATE_PANELS = (
    Panel({"all": True, "n": 10}),
    Panel({"prior": True, "n": 20}, file="prior", title="Samples from the prior",
          caption="Codes drawn from N(0, I): what the model generates with no class in mind."),
)

FIGURES: list[FigureSpec] = [
    FigureSpec(
        "curves", "training curves: ELBO, reconstruction and KL per epoch", _draw_curves,
        split=None, stats=False, style=False,
        title="Training curves",
        caption=lambda ctx: "Per-image ELBO and its two terms after each epoch, on the training set (mean over the "
                            "epoch's batches), the test set and, when images were held out, the validation set."
                            + _curves_layout(ctx.run.metrics)),
    FigureSpec(
        "reconstruct", "test images above their reconstructions", _draw_reconstruct,
        split="test", stats=False,
        options=(Option(("-n",), "n", 16, type=int_between(1, 1000),
                        help="how many images, at most 1000 (default: 16)"),),
        title="Reconstructions",
        caption=lambda ctx: f"Test {ctx.items} the model never trained on (top) and "
                            f"{'the Bernoulli means' if ctx.style == 'mean' else 'the images'} decoded from their "
                            "posterior means (bottom).",
        panels=lambda ctx: [Panel({"n": 24})]),
    FigureSpec(
        "generate", "new images of one class, or from the prior", _draw_generate,
        options=(
            Option(("--class",), "label", type=class_label, metavar="C", exclusive="which",
                   help="the class to generate: its number or its name, such as 3 or Trouser"),
            Option(("--digit",), "digit", type=int_between(0, 255), metavar="D", exclusive="which",
                   help="the digit to generate, as --class (on data other than digits: the class's number)"),
            Option(("--prior",), "prior", False, store_true=True, exclusive="which",
                   help="sample z from N(0, I) instead"),
            Option(("--all",), "all", False, store_true=True, exclusive="which",
                   help="one row of -n images for every class"),
            Option(("-n",), "n", 20, type=int_between(1, 1000),
                   help="how many images (per class with --all), at most 1000 (default: 20)"),
        ),
        title=lambda ctx: f"New {ctx.items} of each class",
        caption=lambda ctx: "Each row decodes codes drawn from N(class mean, class mean variance), the article's "
                            f"recipe, with the statistics of {ctx.n_train:,} training images.{ctx.only}",
        panels=lambda ctx: _GENERATE_PANELS),
    FigureSpec(
        "mix", "the matrix of images mixed by averaging their classes' mean codes", _draw_mix,
        title=lambda ctx: f"Mixing {ctx.kinds}",
        caption=lambda ctx: f"Cell (i, j) decodes the average of the mean codes of {ctx.kinds} i and j; the "
                            f"diagonal shows each class mean.{ctx.only}"),
    FigureSpec(
        "interpolate", "the strip of images between two classes' mean codes", _draw_interpolate,
        options=(
            Option(("--from",), "start", type=class_label, required=True, metavar="A",
                   help="first class: its number or its name"),
            Option(("--to",), "end", type=class_label, required=True, metavar="B",
                   help="last class: its number or its name"),
            Option(("--steps",), "steps", 10, type=int_between(2, 200),
                   help="images in the strip, both ends included, 2 to 200 (default: 10)"),
            Option(("--method",), "method", "lerp", choices=("lerp", "slerp"),
                   help="linear or spherical (default: lerp)"),
        ),
        title="Interpolating", caption=_interpolate_caption, panels=_interpolate_panels),
    FigureSpec(
        "embed", "a 2-D map of the latent codes, coloured by class", _draw_embed, style=False,
        options=(Option(("--method",), "method", "tsne", choices=("tsne", "pca", "umap"),
                        help="tsne (the article's, perplexity 40), pca, or umap (needs umap-learn) (default: tsne)"),),
        title="Map of the latent space",
        caption=lambda ctx: f"{EMBED_NAMES[ctx.embed_method]} of the posterior means of {ctx.n_train:,} training "
                            "images. Only the codes go into the map; the labels only colour it.",
        panels=lambda ctx: [Panel({"method": ctx.embed_method})]),
    FigureSpec(
        "kl", "KL per latent dimension and the active units", _draw_kl, style=False,
        title="Posterior collapse",
        caption=lambda ctx: "KL divergence of each latent dimension from the prior, averaged over images. A unit "
                            "is active when its posterior mean varies across images (variance > 0.01, Burda et al. "
                            f"2015); inactive units carry no information about the image. Measured here on the "
                            f"{ctx.n_train:,} training images; the count at the top of the page is the test set's."),
]
