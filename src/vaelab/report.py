"""One self-contained HTML page per run: config, test scores, curves and every figure.

The PNGs are embedded as base64, so the page opens offline and can be mailed as
a single file. The figures are also left in RUN/figures/. The page is the
template templates/report.html.j2 with its style templates/report.css, rendered
by `vaelab.pages`: autoescaped, and under a Content-Security-Policy that allows
that style and images inside the page, and nothing else (no script at all).

Beside it goes RUN/explorer.html (`vaelab.explorer`), which the page links to:
the same run as an interactive page that encodes and decodes in the browser.

A page never shows a score beside figures of other weights: the scores come
from eval.json only when it holds a valid result for exactly the weights drawn,
and otherwise the run is scored afresh (which rewrites eval.json). The page
names the step and weights behind both, and warns when the data differ from the
files the run was trained with.

Its sections are the entries of `vaelab.figures.FIGURES`, in order, each drawn
by the same function as its command; classes are named as the run recorded them.
"""

from __future__ import annotations

import argparse
import base64
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vaelab import explore, figures, latent, pages
from vaelab.checkpoint import Run, load_run
from vaelab.errors import VaelabError
from vaelab.evalfile import EvalResult, read_eval
from vaelab.evaluate import check_iw_k, evaluate_run
from vaelab.explorer.page import EXPLORER, write_explorer
from vaelab.files import atomic_write, display
from vaelab.judge import shipped_path
from vaelab.presets import published, unlike_its_preset
from vaelab.rundir import still_training
from vaelab.trainlog import machines

REPORT = "report.html"
Figure = tuple[str, str, Path]  # section title ("" continues the previous section), caption, PNG


def current_scores(run: Run, *, iw_k: int = 1000, seed: int = 0, device: str = "auto", data_dir: str | None = None,
                   progress: bool = False, echo: Callable[[str], Any] = print) -> EvalResult:
    """The test scores of exactly the run's weights: eval.json when it holds them, else scored now."""
    try:
        return read_eval(run, strict=True)
    except ValueError as exc:
        echo(f"{exc}; scoring the run now (IW K={iw_k}, `--iw-k` to change)")
    try:  # the run as loaded, so the scores are of the weights the figures draw, even if it trains meanwhile
        return evaluate_run(run, iw_k=iw_k, seed=seed, device=device, data_dir=data_dir, progress=progress)
    finally:
        run.model.to("cpu")  # where load_run put it, for the figures


def write_report(run_path: str | Path, *, seed: int = 0, n_stats: int = 10000, style: str = "mean",
                 embed_method: str = "tsne", iw_k: int = 1000, device: str = "auto", data_dir: str | None = None,
                 progress: bool = False, echo: Callable[[str], Any] = print) -> Path:
    """Draw every figure into RUN/figures/, write RUN/explorer.html and RUN/report.html; return the report's path.

    Everything that can be refused is checked before the drawing starts.
    """
    if embed_method not in latent.EMBED_METHODS:
        raise VaelabError(f"unknown --embed {embed_method!r}; use one of {', '.join(latent.EMBED_METHODS)}")
    if style not in ("mean", "binary"):
        raise VaelabError(f"unknown --style {style!r}; use mean or binary")
    run = load_run(run_path)
    latent.require_embedding(embed_method)
    check_iw_k(iw_k, run.model.noise_size)
    training = still_training(run.path)
    if training:
        echo(f"{training}: the report shows "
             f"its checkpoint of epoch {run.epoch:,}, which its next checkpoint will replace; to keep the "
             f"checkpoint you report on, report on a copy: vaelab copy {display(run.path)} --out DIR")
    scores = current_scores(run, iw_k=iw_k, seed=seed, device=device, data_dir=data_dir, progress=progress,
                            echo=echo)
    codes = {("train", n_stats): explore.encode_subset(run, n=n_stats, seed=seed, data_dir=data_dir)}
    train = codes["train", n_stats]
    ctx = figures.Context(run=run, classes=explore.classes_of(run), present=train.stats.classes.tolist(),
                          n_train=len(train.labels), embed_method=embed_method, style=style)
    plan = _plan(ctx, seed=seed, n_stats=n_stats, style=style, data_dir=data_dir)
    for spec, panel in plan:  # every image encoded before the first figure is drawn
        needed = figures.codes_needed(spec, panel.args) if not isinstance(panel, str) else None
        if needed is not None and needed not in codes:
            split, n = needed
            codes[needed] = explore.encode_subset(run, n=n, seed=seed, split=split, data_dir=data_dir)
    drawn = _draw(run, plan, codes, echo=echo)
    start = time.perf_counter()
    explorer = write_explorer(run, seed=seed, data_dir=data_dir)
    echo(f"  {'explorer':<17} {time.perf_counter() - start:5.1f} s  {display(explorer)}")
    if training:
        notes = [f"Drawn while the run was still training, from its checkpoint of epoch {run.epoch:,} of "
                 f"{run.config.epochs:,}; later checkpoints are not shown."]
    elif run.epoch < run.config.epochs:  # stopped early (Ctrl-C, a copy made mid-run): not the run's last word
        notes = [f"Training stopped before its end, with {run.epoch:,} of the run's {run.config.epochs:,} passes "
                 f"done (step {run.step:,}), so these are not its final numbers; `vaelab train --resume "
                 f"{display(run.path)}` trains the rest."]
    else:
        notes = []
    for split, word in (("train", "training"), ("test", "test")):
        found = next((c.mismatches for (s, _), c in codes.items() if s == split and c.mismatches), ())
        if found:
            notes.append(f"The {word} images of these figures are not the ones the run was trained with: "
                         f"{'; '.join(found)}.")
    page = _render(run, scores, drawn, notes)
    return atomic_write(run.path / REPORT, page.encode("utf-8", "xmlcharrefreplace"), root=run.path)


@dataclass(frozen=True)
class _Planned:
    """One image of the page: its file, section title and caption, and the flags it is drawn with."""

    file: str
    title: str
    caption: str
    args: argparse.Namespace


def _plan(ctx: figures.Context, *, seed: int, n_stats: int, style: str,
          data_dir: str | None) -> list[tuple[figures.FigureSpec, _Planned | str]]:
    """Every figure's panels, as the report draws them; a str in place of one says why it is skipped."""
    shared = {"seed": seed, "n_stats": n_stats, "style": style, "data_dir": data_dir}
    plan: list[tuple[figures.FigureSpec, _Planned | str]] = []
    for spec in figures.FIGURES:
        panels = spec.panels(ctx) if spec.panels is not None else [figures.Panel()]
        if isinstance(panels, str):
            plan.append((spec, panels))
            continue
        known = vars(figures.defaults(spec))
        for panel in panels:
            args = figures.defaults(spec, **{**{k: v for k, v in shared.items() if k in known}, **panel.settings})
            args.run = str(ctx.run.path)
            title = figures.text(spec.title if panel.title is None else panel.title, ctx)
            caption = figures.text(spec.caption if panel.caption is None else panel.caption, ctx)
            if spec.style and style == "binary":
                caption += (" Decoded pixels are shown black and white, 1 where the Bernoulli mean is above 0.5 "
                            "(--style binary), not as grey levels.")
            plan.append((spec, _Planned(panel.file or spec.name, title, caption, args)))
    return plan


def _draw(run: Run, plan: list[tuple[figures.FigureSpec, _Planned | str]],
          codes: dict[tuple[str, int], explore.Codes], *, echo: Callable[[str], Any]) -> list[Figure]:
    drawn: list[Figure] = []
    for spec, panel in plan:
        if isinstance(panel, str):
            echo(f"  {spec.name:<17} skipped: {panel}")
            continue
        start = time.perf_counter()
        needed = figures.codes_needed(spec, panel.args)
        path = spec.draw(run, None if needed is None else codes[needed], panel.args,
                         path=explore.default_path(run, panel.file), root=run.path)
        echo(f"  {panel.file:<17} {time.perf_counter() - start:5.1f} s  {display(path)}")
        drawn.append((panel.title, panel.caption, path))
    return drawn


def _value(value: Any) -> str:
    """A config or data value as the table shows it: a record such as the validation split as 'key value, …'."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return str(value)


def _judge_sentence(judge: dict[str, Any] | None, run: Run) -> str:
    """One sentence on what the judge's numbers mean, or why there are none and how to get them."""
    if judge is None:
        dataset, where = run.config.dataset, display(run.path)
        if shipped_path(dataset) is not None:
            return (f"No judge has scored this run's generated images: it was scored with `--no-judge`, or before "
                    f"vaelab had a judge; `vaelab eval {where}` adds the shipped {dataset} judge's scores.")
        return (f"No judge ships for {dataset}: `vaelab judge train` makes one from the run's training images "
                f"(see `vaelab judge train --help`), and `vaelab eval {where} --judge FILE` scores with it.")
    return (f"The judge, an independent classifier ({judge['name']}), recognises the class that each of "
            f"{judge['n_generated']:,} images generated with the article's recipe was made for as often as the "
            "card says, and the Fréchet distance between its features of them and of the test images (FID's "
            "formula; lower is better) would fall to the floor, where real training images sit, for a perfect "
            "generator.")


def _render(run: Run, scores: EvalResult, figures: list[Figure], notes: Sequence[str] = ()) -> str:
    """The page: what it shows is worked out here, how it looks is templates/report.html.j2 and report.css."""
    latent_size = run.model.latent_size
    active = scores.active_units
    warnings = list(notes)
    if not scores.data_matches_run:
        warnings.insert(0, "The test scores were computed on other test files than the ones the run was trained "
                           "with (eval.json: data_matches_run is false); they do not describe this run's data.")
    if run.config.schedule_note:  # a preset's schedule cut short: its numbers are not the paper's
        warnings.insert(0, f"{run.config.schedule_note}: these numbers are not those of the full schedule.")
    if (unlike := unlike_its_preset(run.config)) is not None:  # other flags or data: not the paper's cell
        warnings.insert(0, f"{unlike}.")
    if active < latent_size / 2:
        warnings.append(f"Only {active} of {latent_size} latent units are active: most have collapsed to the prior "
                        "and carry no information. A smaller latent size would do as well.")
    ll = scores.log_likelihood
    paper = published(run.config)  # a preset's run: the number it reproduces
    cards = [
        ("test ELBO", f"{scores.elbo:.2f} ± {scores.elbo_stderr:.2f}", "nats per image"),
        (f"log p(x), IW K={scores.iw_k}",
         "—" if ll is None else f"{ll:.2f} ± {scores.log_likelihood_stderr:.2f}", "nats per image"),
        *([] if paper is None else [("the paper's log p(x)", f"{paper[0]:.2f}", paper[2])]),
        ("reconstruction / KL", f"{scores.loglike:.2f} / {scores.kl:.2f}", "nats per image"),
        ("active units", f"{active} of {latent_size}", "Var[mu] > 0.01" if scores.active_units_by_layer is None
         else "z at h1's mean; by layer " + ", ".join(map(str, scores.active_units_by_layer)) + " (h1 sampled)"),
        ("epochs", f"{run.epoch:,}" + (f" of {run.config.epochs:,}" if run.epoch < run.config.epochs else ""),
         f"{run.metrics[-1]['elapsed']:.1f} s of training" if run.metrics else ""),
    ]
    judge = scores.judge
    if judge is not None:
        cards.append(("generated images, judged", f"{100 * judge['class_accuracy']:.1f}%",
                      f"their class (test images {100 * judge['test_accuracy']:.1f}%)"))
        cards.append(("FID, judge's features", f"{judge['fid']:.1f}", f"floor test vs train {judge['fid_floor']:.1f}"))
    style = pages.inline(pages.packaged_text("vaelab", "templates/report.css"), "style", "templates/report.css")
    return pages.render(
        pages.packaged_text("vaelab", "templates/report.html.j2"),
        csp=pages.content_security_policy(style=style), style=style, name=display(run.path.name),
        path=display(run.path), generated=time.strftime("%Y-%m-%d %H:%M"), cards=cards,
        provenance=_provenance(run, scores), judge=_judge_sentence(judge, run), warnings=warnings,
        explorer=EXPLORER, config=_config_rows(run), figures=[_figure(*figure) for figure in figures],
    )


def _provenance(run: Run, scores: EvalResult) -> str:
    """Which weights the figures and the scores are of (the same, unless a caller passed others' scores)."""
    drawn = f"the weights {run.weights_sha256[:12]} at step {run.step:,}"
    scored = f"the weights {scores.weights_sha256[:12]} at step {scores.step:,}"
    text = (f"Figures and test scores of {drawn}, on {scores.n_images:,} test images." if drawn == scored else
            f"Figures drawn from {drawn}; test scores of {scored}, on {scores.n_images:,} test images.")
    return text + (f" Trained on: {machines(run.metrics)}." if run.metrics else "")


def _config_rows(run: Run) -> list[tuple[str, str]]:
    """The configuration and data as the page's table shows them: no field the run does not use."""
    unused = run.config.unused_fields()  # e.g. an mlp's channels: shown, they would mislead
    shown = {k: v for k, v in run.config.to_dict().items() if k not in unused}
    shown.update({k: v for k, v in run.data.items() if k not in ("sha256", "binarization")})
    widths = ", ".join(str(w) for w in run.config.hidden_layers)  # one per hidden layer
    shown["hidden_size"] = widths + (" (2 × latent)" if run.config.hidden_size is None else "")
    if run.config.model == "mlp2":
        shown["lower_latent_size"] = run.config.lower_latent
        shown["upper_hidden_size"] = ", ".join(str(w) for w in run.config.upper_hidden_layers)
    if run.config.data_dir:
        shown["data_dir"] = display(run.config.data_dir)
    else:  # the dataset's files, found by name: bundled (MNIST), or where `source` says (a cache, a system folder)
        shown["data_dir"] = "bundled" if run.data.get("source") == "bundled MNIST" else "none given (see source)"
    if isinstance(shown.get("classes"), dict):  # as recorded: {"names": [...], "word": ...}
        shown["classes"] = ", ".join(explore.classes_of(run).names)
    if isinstance(shown.get("source"), str):
        shown["source"] = display(shown["source"])
    return [(k, _value(v)) for k, v in shown.items()]


def _figure(title: str, caption: str, path: Path) -> dict[str, str]:
    """One figure's section: its title and caption ("" continues the previous section) and the PNG inline."""
    return {"title": title, "caption": caption, "png": base64.b64encode(path.read_bytes()).decode("ascii"),
            "alt": alt_text(title, path.stem)}


def alt_text(title: str, stem: str) -> str:
    """What a figure shows, for those who cannot see it: its title, and what its command draws
    ("interpolate-slerp": the interpolate figure's slerp strip)."""
    name, _, variant = stem.partition("-")
    spec = next((s for s in figures.FIGURES if s.name == name), None)
    if spec is None:  # a panel of its own (the prior's samples): its title says it
        return title or stem
    what = spec.help + (f" ({variant})" if variant else "")
    if not title or what.lower().startswith(title.lower()):
        return what[0].upper() + what[1:]
    return f"{title}: {what}"
