"""HTML pages: autoescaped templates, inline text that cannot end its element, and the CSP's hashes."""

import pytest

from vaelab import pages


def test_a_csp_source_is_the_sha256_of_exactly_the_text():
    assert pages.csp_source("") == "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"  # SHA-256 of nothing
    assert pages.csp_source("a") != pages.csp_source("a ")


def test_the_policy_allows_only_what_it_is_given():
    assert pages.content_security_policy(style="") == (
        "default-src 'none'; style-src 'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='; img-src data:; "
        "base-uri 'none'; form-action 'none'")
    with_script = pages.content_security_policy(style="", script="", images="data: blob:")
    assert "script-src 'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='; style-src" in with_script
    assert "img-src data: blob:;" in with_script


@pytest.mark.parametrize("text, tag", [("a { } </STYLE>", "style"), ("x = '</script >'", "script")])
def test_inline_text_that_would_end_its_element_is_refused(text, tag):
    with pytest.raises(ValueError, match=f"page.css contains '</{tag}'"):
        pages.inline(text, tag, "page.css")
    assert pages.inline("a { }", tag, "page.css") == "a { }"


def test_templates_escape_what_they_are_given_and_refuse_what_they_are_not():
    assert pages.render("<p>{{ x }}</p>{{ y|safe }}", x="<b>&'\"", y="<i>") == "<p>&lt;b&gt;&amp;&#39;&#34;</p><i>"
    with pytest.raises(Exception, match="'z' is undefined"):
        pages.render("{{ z }}")


def test_backquoted_commands_become_code_and_everything_else_stays_text():
    assert pages.render("{{ w|code }}", w="run `vaelab train --resume <a&b>` then") == (
        "run <code>vaelab train --resume &lt;a&amp;b&gt;</code> then")
    assert pages.render("{{ w|code }}", w="`x` and `y`") == "<code>x</code> and <code>y</code>"
    assert pages.render("{{ w|code }}", w="a `<b>") == "a `&lt;b&gt;"  # an unpaired backquote is kept as text


def test_packaged_text_is_read_as_the_browser_parses_it(tmp_path, monkeypatch):
    package = tmp_path / "vaelab_test_pages_pkg"
    (package / "static").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "static" / "a.css").write_bytes("\ufeffa {}\r\nb {}\rc { content: 'é' }\n".encode("utf-8"))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert pages.packaged_text("vaelab_test_pages_pkg", "static/a.css") == "a {}\nb {}\nc { content: 'é' }\n"
