"""One self-contained HTML page per run: config, test scores, curves and every figure.

The PNGs are embedded as base64, so the page opens offline and can be mailed as
a single file. The figures are also left in RUN/figures/.

A page never shows a score beside figures of other weights: the scores come
from eval.json only when it holds a valid result for exactly the weights drawn,
and otherwise the run is scored afresh (which rewrites eval.json). The page
names the step and weights behind both, and warns when the data differ from the
files the run was trained with.
"""

from __future__ import annotations

import base64
import html
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vaelab import explore, latent
from vaelab.checkpoint import Run, load_run
from vaelab.errors import VaelabError
from vaelab.evaluate import EvalResult, check_iw_k, evaluate_run, read_eval
from vaelab.files import atomic_write, display

REPORT = "report.html"
ARTICLE_STRIPS = ((1, 4, "lerp"), (3, 8, "slerp"))  # the article's interpolations, when those digits exist
Figure = tuple[str, str, Path]  # section title ("" continues the previous section), caption, PNG


def current_scores(run: Run, *, iw_k: int = 1000, device: str = "auto", data_dir: str | None = None,
                   progress: bool = False, echo: Callable[[str], Any] = print) -> EvalResult:
    """The test scores of exactly the run's weights: eval.json when it holds them, else scored now."""
    try:
        return read_eval(run, strict=True)
    except ValueError as exc:
        echo(f"{exc}; scoring the run now (IW K={iw_k}, `--iw-k` to change)")
    result = evaluate_run(run.path, iw_k=iw_k, device=device, data_dir=data_dir, progress=progress)
    if result.weights_sha256 != run.weights_sha256:
        raise VaelabError(f"{display(run.path)} changed while it was being scored (is it still training?); "
                          "run `vaelab report` again once it is done")
    return result


def interpolation_strips(classes: list[int]) -> list[tuple[int, int, str]]:
    """(start, end, method) of each strip: the article's 1 → 4 lerp and 3 → 8 slerp where those digits
    are present, else the first and last classes present; none with fewer than two classes."""
    if len(classes) < 2:
        return []
    return [(a, b, method) if {a, b} <= set(classes) else (classes[0], classes[-1], method)
            for a, b, method in ARTICLE_STRIPS]


def write_report(run_path: str | Path, *, seed: int = 0, n_stats: int = 10000, style: str = "mean",
                 embed_method: str = "tsne", iw_k: int = 1000, device: str = "auto", data_dir: str | None = None,
                 progress: bool = False, echo: Callable[[str], Any] = print) -> Path:
    """Draw every figure into RUN/figures/ and write RUN/report.html; return its path.

    Everything that can be refused is checked before the drawing starts.
    """
    if embed_method not in latent.EMBED_METHODS:
        raise VaelabError(f"unknown --embed {embed_method!r}; use one of {', '.join(latent.EMBED_METHODS)}")
    if style not in ("mean", "binary"):
        raise VaelabError(f"unknown --style {style!r}; use mean or binary")
    run = load_run(run_path)
    latent.require_embedding(embed_method)
    check_iw_k(iw_k, run.model.latent_size)
    scores = current_scores(run, iw_k=iw_k, device=device, data_dir=data_dir, progress=progress, echo=echo)
    codes = explore.encode_subset(run, n=n_stats, seed=seed, data_dir=data_dir)
    test_codes = explore.encode_subset(run, n=24, seed=seed, split="test", data_dir=data_dir)
    figures = _draw(run, codes, test_codes, seed=seed, style=style, embed_method=embed_method, echo=echo)
    notes = [f"The {split} images of these figures are not the ones the run was trained with: {'; '.join(found)}."
             for split, found in (("training", codes.mismatches), ("test", test_codes.mismatches)) if found]
    page = _render(run, scores, figures, notes)
    return atomic_write(run.path / REPORT, page.encode("utf-8", "xmlcharrefreplace"), root=run.path)


def _draw(run: Run, codes: explore.Codes, test_codes: explore.Codes, *, seed: int, style: str, embed_method: str,
          echo: Callable[[str], Any]) -> list[Figure]:
    figures: list[Figure] = []
    n = len(codes.labels)
    classes = codes.stats.classes.tolist()
    present = "" if classes == list(range(10)) else f" Only the digits {_names(classes)} occur in these images."

    def add(title: str, caption: str, name: str, draw: Callable[..., Path]) -> None:
        start = time.perf_counter()
        path = draw(path=explore.default_path(run, name), root=run.path)
        echo(f"  {name:<17} {time.perf_counter() - start:5.1f} s  {display(path)}")
        figures.append((title, caption, path))

    add("Training curves", "Per-image ELBO and its two terms after each epoch, on the training set (mean over "
        "the epoch's batches) and the test set.", "curves", lambda **to: explore.figure_curves(run, **to))
    add("Reconstructions", "Test digits the model never trained on (top) and the Bernoulli means decoded from "
        "their posterior means (bottom).", "reconstruct",
        lambda **to: explore.figure_reconstructions(run, test_codes, n=24, style=style, **to))
    add("New digits of each class", "Each row decodes codes drawn from N(class mean, class mean variance), the "
        f"article's recipe, with the statistics of {n:,} training images.{present}", "generate",
        lambda **to: explore.figure_generate_all(run, codes, n=10, seed=seed, style=style, **to))
    add("Samples from the prior", "Codes drawn from N(0, I): what the model generates with no class in mind.",
        "prior", lambda **to: explore.figure_generate(run, codes, digit=None, n=20, seed=seed, style=style, **to))
    add("Mixing digits", "Cell (i, j) decodes the average of the mean codes of digits i and j; the diagonal "
        f"shows each class mean.{present}", "mix", lambda **to: explore.figure_mix(run, codes, style=style, **to))
    strips = interpolation_strips(classes)
    if strips:
        (a, b, _), (c, d, _) = strips
        article = " (the article's example)" if (a, b) == (1, 4) else ""
        add("Interpolating", f"Linear interpolation between the mean codes of {a} and {b}{article}, "
            f"then spherical interpolation between {c} and {d}.", "interpolate",
            lambda **to: explore.figure_interpolate(run, codes, start=a, end=b, steps=10, style=style, **to))
        add("", "", "interpolate-slerp", lambda **to: explore.figure_interpolate(  # same section
            run, codes, start=c, end=d, steps=10, method="slerp", style=style, **to))
    else:
        echo(f"  {'interpolate':<17} skipped: the training images hold only the digit {_names(classes)}")
    method_name = {"tsne": "t-SNE", "pca": "PCA", "umap": "UMAP"}[embed_method]
    add("Map of the latent space", f"{method_name} of the posterior means of {n:,} training images. Only the "
        "codes go into the map; the labels only colour it.", "embed",
        lambda **to: explore.figure_embed(run, codes, method=embed_method, seed=seed, **to))
    add("Posterior collapse", "KL divergence of each latent dimension from the prior, averaged over images. "
        "A unit is active when its posterior mean varies across images (variance > 0.01, Burda et al. "
        f"2015); inactive units carry no information about the image. Measured here on the {n:,} "
        "training images; the count at the top of the page is the test set's.", "kl",
        lambda **to: explore.figure_kl(run, codes, **to))
    return figures


def _names(classes: list[int]) -> str:
    """'3', '3 and 5', '0, 2 and 5'."""
    names = [str(c) for c in classes]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(display(path.stem))}">'


def _render(run: Run, scores: EvalResult, figures: list[Figure], notes: Sequence[str] = ()) -> str:
    e = html.escape
    latent_size = run.model.latent_size
    active = scores.active_units
    warnings = list(notes)
    if not scores.data_matches_run:
        warnings.insert(0, "The test scores were computed on other test files than the ones the run was trained "
                           "with (eval.json: data_matches_run is false); they do not describe this run's data.")
    if active < latent_size / 2:
        warnings.append(f"Only {active} of {latent_size} latent units are active: most have collapsed to the prior "
                        "and carry no information. A smaller latent size would do as well.")
    ll = scores.log_likelihood
    cards = [
        ("test ELBO", f"{scores.elbo:.2f} ± {scores.elbo_stderr:.2f}", "nats per image"),
        (f"log p(x), IW K={scores.iw_k}",
         "—" if ll is None else f"{ll:.2f} ± {scores.log_likelihood_stderr:.2f}", "nats per image"),
        ("reconstruction / KL", f"{scores.loglike:.2f} / {scores.kl:.2f}", "nats per image"),
        ("active units", f"{active} of {latent_size}", "Var[mu] > 0.01"),
        ("epochs", str(run.epoch), f"{run.metrics[-1]['elapsed']:.1f} s of training" if run.metrics else ""),
    ]
    card_html = "".join(f'<div class="card"><div class="k">{e(k)}</div><div class="v">{e(v)}</div>'
                        f'<div class="u">{e(u)}</div></div>' for k, v, u in cards)
    provenance = (f"Figures drawn from the weights {run.weights_sha256[:12]} at step {run.step:,}; test scores "
                  f"of the weights {scores.weights_sha256[:12]} at step {scores.step:,}, on "
                  f"{scores.n_images:,} test images.")
    shown = {**run.config.to_dict(), **{k: v for k, v in run.data.items() if k not in ("sha256", "binarization")}}
    shown["hidden_size"] = f"{run.config.hidden}" + (" (2 × latent)" if run.config.hidden_size is None else "")
    shown["data_dir"] = display(run.config.data_dir) if run.config.data_dir else "bundled"
    if isinstance(shown.get("source"), str):
        shown["source"] = display(shown["source"])
    config_rows = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in shown.items())
    banner = "".join(f'<p class="warn">{e(w)}</p>' for w in warnings)
    sections = []
    for title, caption, path in figures:
        head = f"<h2>{e(title)}</h2><p>{e(caption)}</p>" if title else ""
        sections.append(f"<section>{head}{_img(path)}</section>")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>vaelab report: {e(display(run.path.name))}</title>
<style>
body {{ font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; }}
h1 {{ margin-bottom: 0.1em; }} .sub {{ color: #666; margin-top: 0; }}
.cards {{ display: flex; flex-wrap: wrap; gap: 12px; margin: 1.2em 0; }}
.card {{ border: 1px solid #ddd; border-radius: 8px; padding: 10px 14px; min-width: 150px; }}
.card .k {{ color: #666; font-size: 13px; }} .card .v {{ font-size: 21px; font-weight: 600; }}
.card .u {{ color: #888; font-size: 12px; }}
.warn {{ background: #fff4e5; border-left: 4px solid #f0a020; padding: 8px 12px; }}
section {{ margin: 2em 0; }} section img {{ max-width: 100%; height: auto; display: block; margin: 0.5em 0; }}
table {{ border-collapse: collapse; font-size: 14px; }} th, td {{ text-align: left; padding: 2px 14px 2px 0; }}
th {{ color: #555; font-weight: normal; }} details {{ margin: 1em 0; }}
</style></head><body>
<h1>vaelab report</h1>
<p class="sub">{e(display(run.path))} · generated {e(time.strftime('%Y-%m-%d %H:%M'))}</p>
<div class="cards">{card_html}</div>
<p class="sub">{e(provenance)}</p>
{banner}
<details open><summary>Configuration and data</summary>
<table>{config_rows}</table></details>
{''.join(sections)}
</body></html>
"""
