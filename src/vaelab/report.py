"""One self-contained HTML page per run: config, test scores, curves and every figure.

The PNGs are embedded as base64, so the page opens offline and can be mailed as
a single file. The figures are also left in RUN/figures/.
"""

from __future__ import annotations

import base64
import html
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vaelab import explore
from vaelab.checkpoint import EVAL, Run, atomic_write, load_run
from vaelab.errors import VaelabError

REPORT = "report.html"


def read_scores(run: Run) -> dict[str, Any]:
    """The run's eval.json, refusing a missing or stale one."""
    path = run.path / EVAL
    if not path.is_file():
        raise VaelabError(f"{run.path} has no test scores yet; run `vaelab eval {run.path}` first")
    try:
        scores = json.loads(path.read_text())
    except ValueError:
        raise VaelabError(f"{path} is damaged; run `vaelab eval {run.path}` again") from None
    if scores.get("epoch") != run.epoch:
        raise VaelabError(
            f"{path} scores epoch {scores.get('epoch')} but the run is at epoch {run.epoch}; "
            f"run `vaelab eval {run.path}` again"
        )
    return scores


def write_report(run_path: str | Path, *, seed: int = 0, n_stats: int = 10000, style: str = "mean",
                 embed_method: str = "tsne", data_dir: str | None = None,
                 echo: Callable[[str], Any] = print) -> Path:
    """Draw every figure into RUN/figures/ and write RUN/report.html; return its path."""
    run = load_run(run_path)
    scores = read_scores(run)
    codes = explore.encode_subset(run, n=n_stats, seed=seed, data_dir=data_dir)
    test_codes = explore.encode_subset(run, n=24, seed=seed, split="test", data_dir=data_dir)
    figures: list[tuple[str, str, Path]] = []

    def add(title: str, caption: str, draw: Callable[[Path], Path], name: str) -> None:
        start = time.perf_counter()
        path = draw(explore.default_path(run, name))
        echo(f"  {name:<12} {time.perf_counter() - start:5.1f} s  {path}")
        figures.append((title, caption, path))

    add("Training curves", "Per-image ELBO and its two terms after each epoch, on the training set (mean over "
        "the epoch's batches) and the test set.", lambda p: explore.figure_curves(run, p), "curves")
    add("Reconstructions", "Test digits the model never trained on (top) and the Bernoulli means decoded from "
        "their posterior means (bottom).",
        lambda p: explore.figure_reconstructions(run, test_codes, p, n=24, style=style), "reconstruct")
    add("New digits of each class", "Each row decodes codes drawn from N(class mean, class mean variance), the "
        "article's recipe, with the statistics of "
        f"{len(codes.labels):,} training images.",
        lambda p: explore.figure_generate_all(run, codes, p, n=10, seed=seed, style=style), "generate")
    add("Samples from the prior", "Codes drawn from N(0, I): what the model generates with no class in mind.",
        lambda p: explore.figure_generate(run, codes, p, digit=None, n=20, seed=seed, style=style), "prior")
    add("Mixing digits", "Cell (i, j) decodes the average of the mean codes of digits i and j; the diagonal "
        "shows each class mean.", lambda p: explore.figure_mix(run, codes, p, style=style), "mix")
    add("Interpolating", "Linear interpolation between the mean codes of 1 and 4 (the article's example), "
        "then spherical interpolation between 3 and 8.",
        lambda p: explore.figure_interpolate(run, codes, p, start=1, end=4, steps=10, style=style),
        "interpolate")
    add("", "", lambda p: explore.figure_interpolate(run, codes, p, start=3, end=8, steps=10, method="slerp",
                                                     style=style), "interpolate-slerp")  # same section
    method_name = {"tsne": "t-SNE", "pca": "PCA", "umap": "UMAP"}[embed_method]
    add("Map of the latent space", f"{method_name} of the posterior means of {len(codes.labels):,} "
        "training images. Only the codes go into the map; the labels only colour it.",
        lambda p: explore.figure_embed(run, codes, p, method=embed_method, seed=seed), "embed")
    add("Posterior collapse", "KL divergence of each latent dimension from the prior, averaged over images. "
        "A unit is active when its posterior mean varies across images (variance > 0.01, Burda et al. "
        f"2015); inactive units carry no information about the image. Measured here on the {len(codes.labels):,} "
        "training images; the count at the top of the page is the test set's.",
        lambda p: explore.figure_kl(run, codes, p), "kl")

    page = _render(run, scores, figures)
    path = run.path / REPORT
    atomic_write(path, page.encode())
    return path


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.stem)}">'


def _render(run: Run, scores: dict[str, Any], figures: list[tuple[str, str, Path]]) -> str:
    e = html.escape
    latent = run.model.latent_size
    active = scores.get("active_units")
    warning = ""
    if active is not None and active < latent / 2:
        warning = (f'<p class="warn">Only {active} of {latent} latent units are active: most have collapsed '
                   "to the prior and carry no information. A smaller latent size would do as well.</p>")
    ll = scores.get("log_likelihood")
    cards = [
        ("test ELBO", f"{scores['elbo']:.2f} ± {scores['elbo_stderr']:.2f}", "nats per image"),
        (f"log p(x), IW K={scores['iw_k']}",
         "—" if ll is None else f"{ll:.2f} ± {scores['log_likelihood_stderr']:.2f}", "nats per image"),
        ("reconstruction / KL", f"{scores['loglike']:.2f} / {scores['kl']:.2f}", "nats per image"),
        ("active units", f"{active} of {latent}" if active is not None else "—", "Var[mu] > 0.01"),
        ("epochs", str(run.epoch), f"{run.metrics[-1]['elapsed']:.1f} s of training" if run.metrics else ""),
    ]
    card_html = "".join(f'<div class="card"><div class="k">{e(k)}</div><div class="v">{e(v)}</div>'
                        f'<div class="u">{e(u)}</div></div>' for k, v, u in cards)
    shown = {**run.config.to_dict(), **{k: v for k, v in run.data.items() if k not in ("sha256", "binarization")}}
    shown["hidden_size"] = f"{run.config.hidden}" + (" (2 × latent)" if run.config.hidden_size is None else "")
    shown["data_dir"] = run.config.data_dir or "bundled"
    config_rows = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in shown.items())
    sections = []
    for title, caption, path in figures:
        head = f"<h2>{e(title)}</h2><p>{e(caption)}</p>" if title else ""
        sections.append(f"<section>{head}{_img(path)}</section>")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>vaelab report: {e(run.path.name)}</title>
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
<p class="sub">{e(str(run.path))} · generated {e(time.strftime('%Y-%m-%d %H:%M'))}</p>
<div class="cards">{card_html}</div>
{warning}
<details open><summary>Configuration and data</summary>
<table>{config_rows}</table></details>
{''.join(sections)}
</body></html>
"""
