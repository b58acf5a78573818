"""HTML pages from Jinja2 templates shipped in the package: the report and the explorer.

Templates are rendered with autoescaping, so a string from a run (its path, its
config, class names) shows as text and never becomes markup. Each page carries a
Content-Security-Policy that allows its own inline style and script, by their
SHA-256, and images from data: URLs, and nothing else: no file or address
outside the page is ever loaded. Jinja2 is imported when a page is made, not
when vaelab is.
"""

from __future__ import annotations

import base64
import hashlib
from importlib import resources
from typing import Any


def packaged_text(package: str, path: str) -> str:
    """A text file shipped in `package`, as the browser will parse it: UTF-8, no byte-order mark, LF line ends."""
    text = resources.files(package).joinpath(path).read_text(encoding="utf-8")
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def inline(text: str, tag: str, name: str) -> str:
    """`text` to put inside a <style> or <script> element; a ValueError if it would end the element early
    (its hash would then not match what the browser runs)."""
    if f"</{tag}" in text.lower():
        raise ValueError(f"{name} contains '</{tag}'")
    return text


def csp_source(text: str) -> str:
    """A CSP source for exactly `text`: 'sha256-' and the base64 of its digest, in quotes."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def content_security_policy(*, style: str, script: str | None = None, images: str = "data:") -> str:
    """A policy allowing only the inline `style` (and `script`), images from `images`, and no base or form
    targets: what the page itself holds, nothing from outside."""
    sources = ["default-src 'none'"]
    if script is not None:
        sources.append(f"script-src {csp_source(script)}")
    sources += [f"style-src {csp_source(style)}", f"img-src {images}", "base-uri 'none'", "form-action 'none'"]
    return "; ".join(sources)


def code_spans(text: str) -> Any:
    """`text` escaped, with each `backquoted` part set as <code> (a command to type, kept on one line); text
    with an odd number of backquotes is only escaped. The template filter `code`."""
    from markupsafe import Markup, escape

    parts = text.split("`")
    if len(parts) % 2 == 0:
        return escape(text)
    return Markup("").join(Markup("<code>{}</code>").format(part) if i % 2 else escape(part)
                           for i, part in enumerate(parts))


def render(template: str, **context: Any) -> str:
    """`template` (Jinja2 source) rendered with autoescaping; a name it uses but is not given is an error."""
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["code"] = code_spans
    return env.from_string(template).render(**context)
