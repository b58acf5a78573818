"""The explorer as one HTML file: the template, its style and script inline, the payload as JSON.

Nothing outside the file is ever loaded: the Content-Security-Policy allows
only the inline script and style whose SHA-256 it names, and images made by
the page itself (data: and blob: URLs). Strings from the run (its path, its
config, class names) reach the page only inside the JSON, with `<`, `>`, `&`,
U+2028 and U+2029 escaped, so none of them can close the script element; the
title is escaped by Jinja2.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vaelab import pages
from vaelab.checkpoint import Run, load_run
from vaelab.errors import VaelabError
from vaelab.files import atomic_write, display, dumps

EXPLORER = "explorer.html"  # its default place, inside the run
STATIC = "static"  # the page's template, script and style, shipped with the package
JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def render(payload: dict[str, Any]) -> str:
    """The page for one payload (`vaelab.explorer.export.payload`), as HTML text."""
    style = pages.inline(_static("explorer.css"), "style", "static/explorer.css")
    script = pages.inline(_static("explorer.js"), "script", "static/explorer.js")
    csp = pages.content_security_policy(style=style, script=script, images="data: blob:")
    return pages.render(_static("page.html.j2"), title=payload["title"], csp=csp, style=style, script=script,
                        payload_json=script_safe_json(payload))


def script_safe_json(obj: Any) -> str:
    """Strict JSON that can sit inside a <script> element: no '</script>', '<!--' or line separator survives."""
    text = dumps(obj, separators=(",", ":"))
    for char, escaped in JSON_ESCAPES.items():  # these occur only inside JSON strings, where \\uXXXX means them
        text = text.replace(char, escaped)
    return text


def write_explorer(run_path: str | Path | Run, out: str | Path | None = None, *, n: int = 1000, seed: int = 0,
                   data_dir: str | None = None, embed: tuple[str, ...] = ("pca",)) -> Path:
    """Write the explorer of a run to RUN/explorer.html, or to `out` (a .html file or a folder); return its path.
    `embed`: its maps of the codes, a tab each (export.payload).

    Inside the run the file is written with `root=RUN`, so no link planted there is followed;
    a link planted at the file itself is replaced, never written through.
    """
    target = None if out is None else _out_path(Path(out))  # refused before any work
    from vaelab.explorer.export import payload

    run = run_path if isinstance(run_path, Run) else load_run(run_path)
    page = render(payload(run, n=n, seed=seed, data_dir=data_dir, embed=embed)).encode("utf-8")
    if target is None or os.path.abspath(target.parent) == os.path.abspath(run.path):
        return atomic_write(run.path / (target.name if target else EXPLORER), page, root=run.path)
    return atomic_write(target, page)


def _out_path(out: Path) -> Path:
    if out.is_dir():
        return out / EXPLORER
    if out.suffix.lower() != ".html":
        raise VaelabError(f"--out {display(out)} must end in .html or name an existing folder; the explorer is "
                          "one HTML page")
    return out


def _static(name: str) -> str:
    """A file of static/, as the browser will parse it."""
    return pages.packaged_text("vaelab.explorer", f"{STATIC}/{name}")
