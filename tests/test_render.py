"""Tests for study.report.render: the pandoc + typst fallback renderer and the renderer choice."""

from __future__ import annotations

import re
import subprocess
import tomllib
from fnmatch import fnmatch
from importlib import resources
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from study.report import render as render_mod
from study.report.render import RenderError, expand_shortcodes, render

from conftest import ROOT

# the report extra is needed to render, not to import study.report.render: skip without it
pytest.importorskip("pypandoc", reason="report extra (pypandoc-binary) not installed")
pytest.importorskip("typst", reason="report extra (typst) not installed")
pytest.importorskip("yaml", reason="report extra (PyYAML) not installed")

QUARTO_YML = """\
project:
  type: default
  output-dir: _output
toc: true
number-sections: true
format:
  html:
    embed-resources: true
  typst:
    papersize: a4
"""

VARIABLES_YML = """\
n_reps: 1234
study:
  seed: 98765
  alpha: "0.050"
  flag: true
"""

TABLE_MD = """\
| Scaling | n = 20 | n = 100 |
|:--------|-------:|--------:|
| lambda/m | 0.8123 | 0.4417 |
| lambda | 0.9551 | 0.6302 |

: Mean squared error by scaling {#tbl-mse}
"""

METHODS_QMD = """\
We ran {{< var n_reps >}} replications with seed {{< var study.seed >}}.
INCLUDED-METHODS-TEXT, see @tbl-mse.

{{< include tables/mse.md >}}
"""

REPORT_QMD = """\
---
title: "Penalty scalings"
subtitle: "A tiny test report"
author: "Test Author"
date: "2025-01-15"
---

## Aims {#sec-aims}

Compare @fig-curve with @fig-bars at level {{< var study.alpha >}} (flag {{< var study.flag >}}).
Inline math $\\hat\\beta_\\lambda = (X^\\top X + \\lambda I)^{-1} X^\\top y$ and a literal
{{{< var not.a.key >}}} shortcode.

::: {.callout-note}
## Plain answer
Divide by $m$ (see -@fig-curve).
:::

## Methods {#sec-methods}

{{< include _methods.qmd >}}

$$
\\mathrm{MSE}(\\lambda) = \\sum_{j=1}^p \\frac{\\sigma^2 d_j^2}{(d_j^2+\\lambda)^2}
$$ {#eq-mse}

By @eq-mse and @sec-aims, the answer follows.

## Results

![A smooth curve.](figures/curve.svg){#fig-curve}

![Some bars.](figures/bars.png){#fig-bars}
"""


def _figures(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(3, 2))
    fig.subplots().plot([0, 1, 2], [0, 1, 4])
    fig.savefig(directory / "curve.svg")
    fig = Figure(figsize=(3, 2))
    fig.subplots().bar(["a", "b"], [1, 2])
    fig.savefig(directory / "bars.png", dpi=60)


def make_project(root: Path, report: str = REPORT_QMD) -> Path:
    project = root / "report"
    (project / "tables").mkdir(parents=True)
    _figures(project / "figures")
    (project / "_quarto.yml").write_text(QUARTO_YML)
    (project / "_variables.yml").write_text(VARIABLES_YML)
    (project / "tables" / "mse.md").write_text(TABLE_MD)
    (project / "_methods.qmd").write_text(METHODS_QMD)
    (project / "report.qmd").write_text(report)
    return project


def _norm(text: str) -> str:
    return " ".join(text.replace("\u00a0", " ").split())


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    project = make_project(tmp_path_factory.mktemp("render"))
    result = render(project, renderer="fallback")
    return project, result


@pytest.fixture(scope="module")
def html(rendered) -> str:
    return rendered[1].html.read_text(encoding="utf-8")


# ------------------------------------------------------------------------------ outputs


def test_fallback_writes_both_outputs(rendered):
    project, result = rendered
    assert result.renderer == "fallback"
    assert result.html == project.resolve() / "_output" / "report.html"
    assert result.pdf == project.resolve() / "_output" / "report.pdf"
    assert result.html.stat().st_size > 1000
    assert result.pdf.read_bytes().startswith(b"%PDF")
    leftovers = [p.name for p in (project / "_output").iterdir()]
    assert sorted(leftovers) == ["report.html", "report.pdf"]


def test_html_is_self_contained(html):
    sources = re.findall(r'\bsrc="([^"]*)"', html)
    assert len(sources) == 2
    assert all(s.startswith("data:image/") for s in sources), sources
    assert "data:image/svg+xml" in html and "data:image/png" in html
    assert not re.search(r'<link[^>]+href="(?!#)', html)
    assert not re.search(r'href="(?!#|https?:|mailto:)', html)
    assert "<math" in html  # MathML, no external MathJax
    assert "<script" not in html


def test_html_numbers_and_resolves_references(html):
    text = _norm(html)
    assert "Figure 1: A smooth curve." in text
    assert "Figure 2: Some bars." in text
    assert "Table 1: Mean squared error by scaling" in text
    assert '<a href="#fig-curve">Figure 1</a>' in text
    assert '<a href="#fig-bars">Figure 2</a>' in text
    assert '<a href="#tbl-mse">Table 1</a>' in text
    assert '<a href="#eq-mse">Equation 1</a>' in text
    assert '<a href="#sec-aims">Section 1</a>' in text
    assert '(see <a href="#fig-curve">1</a>)' in text  # -@fig suppresses the prefix
    assert 'class="eq-number">(1)<' in text
    assert not re.search(r"@(fig|tbl|sec|eq)-", html)


def test_html_expands_shortcodes(html):
    text = _norm(html)
    assert "We ran 1234 replications with seed 98765." in text
    assert "INCLUDED-METHODS-TEXT" in text
    assert "at level 0.050 (flag true)" in text
    assert "{{&lt; var not.a.key &gt;}}" in text  # escaped shortcode stays literal
    assert "{{<" not in html
    assert "0.8123" in text and "0.6302" in text


def test_html_has_title_toc_callout_and_sections(html):
    text = _norm(html)
    assert '<h1 class="title">Penalty scalings</h1>' in text
    assert "A tiny test report" in text and "Test Author" in text
    assert 'nav id="TOC"' in text
    assert 'class="callout callout-note"' in text
    assert "Plain answer" in text
    assert '<span class="header-section-number">2</span> Methods' in text


def test_pdf_pages_and_text(rendered):
    pypdf = pytest.importorskip("pypdf")
    reader = pypdf.PdfReader(rendered[1].pdf)
    assert 1 <= len(reader.pages) <= 3
    text = _norm(" ".join(page.extract_text() for page in reader.pages))
    assert "Penalty scalings" in text
    for expected in (
        "Figure 1",
        "Figure 2",
        "Table 1",
        "Equation 1",
        "Section 1",
        "Figure 1: A smooth curve.",
        "Table 1: Mean squared error",
        "0.8123",
        "0.4417",
        "0.9551",
        "0.6302",
        "1234",
        "98765",
        "INCLUDED-METHODS-TEXT",
        "Plain answer",
    ):
        assert expected in text, expected
    assert "@fig-" not in text and "@tbl-" not in text
    assert text.count("{{<") == 1  # only the escaped literal one
    assert len(reader.pages[-1].images) + len(reader.pages[0].images) >= 1  # the PNG


def test_rendering_is_deterministic(rendered):
    project, result = rendered
    html, pdf = result.html.read_bytes(), result.pdf.read_bytes()
    again = render(project, renderer="fallback")
    assert again.html.read_bytes() == html
    assert again.pdf.read_bytes() == pdf


# ------------------------------------------------------------------------------ templates

# The fallback's pandoc filter, HTML stylesheet and typst header: package data in
# study/report/templates/.
TEMPLATES = ("pandoc-filter.lua", "report.css", "typst-header.typ", "typst-style.typ")


def _package_template(name: str) -> str:
    return (resources.files("study.report") / "templates" / name).read_text(encoding="utf-8")


def test_templates_are_package_data():
    assert sorted(render_mod._TEMPLATES) == sorted(TEMPLATES)
    for name in TEMPLATES:
        assert resources.files("study.report").joinpath("templates", name).is_file(), name
        assert len(_package_template(name).splitlines()) > 15, name  # not an empty stub
    # declared as package data, so a wheel (non-editable install) carries them too
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    globs = setuptools["package-data"]["study.report"]
    for name in TEMPLATES:
        assert any(fnmatch(f"templates/{name}", glob) for glob in globs), name


def test_renderer_uses_the_template_files(tmp_path, monkeypatch):
    real_run = subprocess.run
    passed: dict[str, list[str]] = {}

    def spy(cmd, **kwargs):  # read the build-directory copies before they are deleted
        for i, option in enumerate(cmd[:-1]):
            if option in ("--lua-filter", "--css", "--include-in-header"):
                path = Path(cmd[i + 1])
                assert path.is_file(), path
                passed.setdefault(path.name, []).append(path.read_text(encoding="utf-8"))
        return real_run(cmd, **kwargs)

    monkeypatch.setattr(render_mod.subprocess, "run", spy)
    result = render(make_project(tmp_path), renderer="fallback")
    assert sorted(passed) == sorted(TEMPLATES)
    assert len(passed["pandoc-filter.lua"]) == 2  # HTML and typst
    for name, copies in passed.items():
        assert all(text == _package_template(name) for text in copies), name
    css = _package_template("report.css")
    assert css.splitlines()[-1] in result.html.read_text(encoding="utf-8")  # embedded


# ------------------------------------------------------------------------------ errors


def _expect_failure(project: Path, pattern: str) -> None:
    with pytest.raises(RenderError, match=pattern) as info:
        render(project, renderer="fallback")
    assert "\n" not in str(info.value)
    output = project / "_output"
    assert not output.exists() or not any(p.name.startswith(".build") for p in output.iterdir())


def test_unknown_variable_is_an_error(tmp_path):
    project = make_project(tmp_path, REPORT_QMD.replace("study.alpha", "study.beta"))
    _expect_failure(project, r"report\.qmd:\d+: unknown variable .*'study\.beta'")


def test_missing_include_is_an_error(tmp_path):
    project = make_project(tmp_path)
    (project / "tables" / "mse.md").unlink()
    _expect_failure(project, r"_methods\.qmd:\d+: included file not found: tables/mse\.md")


def test_dangling_reference_is_an_error(tmp_path):
    project = make_project(tmp_path, REPORT_QMD + "\nSee @fig-nope and @tbl-gone.\n")
    _expect_failure(project, r"unresolved cross-reference\(s\): @fig-nope, @tbl-gone")


def test_missing_image_is_an_error(tmp_path):
    project = make_project(tmp_path)
    (project / "figures" / "bars.png").unlink()
    _expect_failure(project, r"image not found: figures/bars\.png")


def test_duplicate_label_is_an_error(tmp_path):
    report = REPORT_QMD + "\n![Again.](figures/bars.png){#fig-bars}\n"
    _expect_failure(make_project(tmp_path, report), "duplicate label #fig-bars")


def test_typst_failure_is_reported(tmp_path):
    report = REPORT_QMD + "\n```{=typst}\n#nosuchfunction()\n```\n"
    _expect_failure(
        make_project(tmp_path, report), r"typst failed: unknown variable: nosuchfunction"
    )


def test_failure_keeps_previous_outputs(tmp_path):
    project = make_project(tmp_path)
    result = render(project, renderer="fallback")
    before = result.html.read_bytes(), result.pdf.read_bytes()
    (project / "report.qmd").write_text(REPORT_QMD + "\n@fig-nope\n")
    _expect_failure(project, "@fig-nope")
    assert (result.html.read_bytes(), result.pdf.read_bytes()) == before


def test_caption_before_table_and_figure_without_caption(tmp_path):
    report = """---
title: Small
---

: Caption above {#tbl-first}

| a | b |
|---|---|
| 11 | 22 |

![](figures/bars.png){#fig-bare}

@fig-bare and @tbl-first.
"""
    result = render(make_project(tmp_path, report), renderer="fallback")
    text = _norm(result.html.read_text(encoding="utf-8"))
    assert "<caption>Table 1: Caption above</caption>" in text
    assert "<figcaption>Figure 1</figcaption>" in text
    assert '<a href="#fig-bare">Figure 1</a> and <a href="#tbl-first">Table 1</a>' in text


def test_not_a_project(tmp_path):
    with pytest.raises(RenderError, match="no _quarto.yml"):
        render(tmp_path)


def test_unknown_renderer(tmp_path):
    with pytest.raises(RenderError, match="unknown renderer"):
        render(make_project(tmp_path), renderer="latex")


# ------------------------------------------------------------------------------ shortcodes


def test_expand_shortcodes_nested_include_and_escape(tmp_path):
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "main.qmd").write_text(
        "A {{< var a.b >}}\n\n{{< include sub/one.md >}}\n\nZ {{{< var x >}}}\n"
    )
    (tmp_path / "sub" / "one.md").write_text(
        "---\nignored: 1\n---\nONE\n{{< include deeper/two.md >}}\n"
    )
    (tmp_path / "sub" / "deeper" / "two.md").write_text("TWO {{< var c >}}\n")
    text, files = expand_shortcodes(
        tmp_path / "main.qmd", project_dir=tmp_path, variables={"a": {"b": 1.5}, "c": False}
    )
    assert text == "A 1.5\n\n\nONE\n\nTWO false\n\n\nZ {{< var x >}}\n"
    assert [f.name for f in files] == ["main.qmd", "one.md", "two.md"]


def test_expand_shortcodes_errors(tmp_path):
    (tmp_path / "a.md").write_text("{{< include b.md >}}\n")
    (tmp_path / "b.md").write_text("{{< include a.md >}}\n")
    with pytest.raises(RenderError, match="include cycle: a.md -> b.md -> a.md"):
        expand_shortcodes(tmp_path / "a.md", project_dir=tmp_path, variables={})
    (tmp_path / "c.md").write_text("x {{< var a >}}\n")
    with pytest.raises(RenderError, match="'a' is a dict, not a value"):
        expand_shortcodes(tmp_path / "c.md", project_dir=tmp_path, variables={"a": {"b": 1}})
    with pytest.raises(RenderError, match="no _variables.yml"):
        expand_shortcodes(tmp_path / "c.md", project_dir=tmp_path, variables=None)
    (tmp_path / "d.md").write_text("{{< video x.mp4 >}}\n")
    with pytest.raises(RenderError, match="d.md:1: unsupported shortcode 'video'"):
        expand_shortcodes(tmp_path / "d.md", project_dir=tmp_path, variables={})


# ------------------------------------------------------------------------------ renderer choice


def test_auto_uses_fallback_without_quarto(tmp_path, monkeypatch):
    monkeypatch.setattr(render_mod.shutil, "which", lambda name: None)
    result = render(make_project(tmp_path), renderer="auto")
    assert result.renderer == "fallback"
    assert result.html.is_file() and result.pdf.is_file()


def test_quarto_requested_but_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(render_mod.shutil, "which", lambda name: None)
    with pytest.raises(RenderError, match="quarto is not on PATH"):
        render(make_project(tmp_path), renderer="quarto")


def test_auto_uses_quarto_when_found(tmp_path, monkeypatch):
    project = make_project(tmp_path)
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append((cmd, kwargs))
        out = project / "_output"
        out.mkdir(exist_ok=True)
        (out / "report.html").write_text("<html></html>")
        (out / "report.pdf").write_bytes(b"%PDF-1.7")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(render_mod.shutil, "which", lambda name: "/opt/quarto/bin/quarto")
    monkeypatch.setattr(render_mod.subprocess, "run", fake_run)
    result = render(project)
    assert result.renderer == "quarto"
    assert calls[0][0] == ["/opt/quarto/bin/quarto", "render", str(project.resolve())]
    assert result.html == project.resolve() / "_output" / "report.html"


def test_quarto_failure_is_reported(tmp_path, monkeypatch):
    project = make_project(tmp_path)

    def fake_run(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: something broke\n")

    monkeypatch.setattr(render_mod.shutil, "which", lambda name: "/usr/bin/quarto")
    monkeypatch.setattr(render_mod.subprocess, "run", fake_run)
    with pytest.raises(RenderError, match="quarto render failed: ERROR: something broke"):
        render(project, renderer="quarto")


def _fake_quarto(project, monkeypatch, *, stderr="", html="<html><p>Table 1</p></html>"):
    """Quarto replaced by a function that writes the two outputs and prints ``stderr``."""

    def fake_run(cmd, **kwargs):
        out = project / "_output"
        out.mkdir(exist_ok=True)
        (out / "report.html").write_text(html)
        (out / "report.pdf").write_bytes(b"%PDF-1.7")
        return subprocess.CompletedProcess(cmd, 0, "", stderr)

    monkeypatch.setattr(render_mod.shutil, "which", lambda name: "/usr/bin/quarto")
    monkeypatch.setattr(render_mod.subprocess, "run", fake_run)


def test_quartos_warnings_are_shown(tmp_path, monkeypatch):
    project = make_project(tmp_path)
    warn = "\x1b[33mWARN: Font 'Inter' not found; using a fallback\x1b[39m\nother output\n"
    _fake_quarto(project, monkeypatch, stderr=warn)
    result = render(project, renderer="quarto")
    assert len(result.warnings) == 1 and "Font 'Inter' not found" in result.warnings[0]


@pytest.mark.parametrize(
    ("stderr", "html", "shown"),
    [
        ("WARNING (quarto): Unable to resolve crossref @tbl-scalings\n", "<p>x</p>", "crossref"),
        ("", "<p>see ?@tbl-scalings</p>", "?@tbl-scalings"),
        ("", "<p>: The four scalings {#tbl-scalings}</p>", "{#tbl-scalings}"),
    ],
)
def test_an_unresolved_reference_fails_the_render_naming_it(
    tmp_path, monkeypatch, stderr, html, shown
):
    """What real Quarto did with a caption ending in "c.": a warning, ?@tbl-… in the text
    and a literal {#tbl-…}. Each fails study render, in one line naming it."""
    project = make_project(tmp_path)
    _fake_quarto(project, monkeypatch, stderr=stderr, html=html)
    with pytest.raises(RenderError) as exc:
        render(project, renderer="quarto")
    assert shown in str(exc.value) and "\n" not in str(exc.value)


def test_the_fallback_refuses_an_unresolved_reference(tmp_path):
    project = make_project(tmp_path)
    qmd = project / "report.qmd"
    qmd.write_text(qmd.read_text() + "\nSee @tbl-nowhere for more.\n")
    with pytest.raises(RenderError, match="tbl-nowhere"):
        render(project, renderer="fallback")
    assert not (project / "_output" / "report.html").exists()


BIB = """\
@book{hastie2009,
  author = {Hastie, Trevor and Tibshirani, Robert and Friedman, Jerome},
  title = {The Elements of Statistical Learning},
  publisher = {Springer}, year = {2009}
}
"""


def _cited_project(root: Path, text: str) -> Path:
    project = make_project(root, REPORT_QMD + text)
    (project / "refs.bib").write_text(BIB)
    config = project / "_quarto.yml"
    config.write_text(config.read_text() + "bibliography: refs.bib\n")
    return project


def test_citations_resolve_in_both_outputs_beside_cross_references(tmp_path):
    project = _cited_project(
        tmp_path, "\nRidge as in @hastie2009, and [@hastie2009, p. 64], see @fig-curve.\n"
    )
    result = render(project, renderer="fallback")
    html = _norm(result.html.read_text(encoding="utf-8"))
    assert "Hastie et al. (2009)" in html
    assert "(Hastie et al. 2009, 64)" in html
    assert "The Elements of Statistical Learning" in html  # the reference list
    assert "Figure 1" in html and "hastie2009?" not in html
    pypdf = pytest.importorskip("pypdf")
    pdf = " ".join(page.extract_text() for page in pypdf.PdfReader(result.pdf).pages)
    assert "Hastie et al. (2009)" in _norm(pdf) and "The Elements of Statistical" in _norm(pdf)


def test_a_citation_missing_from_the_bibliography_fails_the_render(tmp_path):
    project = _cited_project(tmp_path, "\nAs in @hastie2009 and @nobody1999.\n")
    with pytest.raises(RenderError, match=r"citation @nobody1999 is not in the bibliography"):
        render(project, renderer="fallback")
    assert not (project / "_output" / "report.html").exists()


def test_the_typst_header_named_in_the_project_is_the_one_used(tmp_path):
    """format: typst: include-in-header names the header both renderers use."""
    project = make_project(tmp_path, REPORT_QMD + "\nA WORDTOREPLACE here.\n")
    header = render_mod._template("typst-style.typ") + '\n#show "WORDTOREPLACE": "replaced"\n'
    (project / "own-header.typ").write_text(header)
    config = project / "_quarto.yml"
    config.write_text(
        config.read_text().replace(
            "  typst:\n", "  typst:\n    include-in-header: own-header.typ\n"
        )
    )
    result = render(project, renderer="fallback")
    pypdf = pytest.importorskip("pypdf")
    pdf = " ".join(page.extract_text() for page in pypdf.PdfReader(result.pdf).pages)
    assert "A replaced here" in _norm(pdf) and "WORDTOREPLACE" not in pdf
    assert "WORDTOREPLACE" in result.html.read_text(encoding="utf-8")  # the HTML is untouched
    (project / "own-header.typ").unlink()
    with pytest.raises(RenderError, match="include-in-header names a file that does not exist"):
        render(project, renderer="fallback")
