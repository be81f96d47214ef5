"""Render the Quarto report: with ``quarto`` when it is on PATH, else a pandoc + typst fallback.

The fallback needs only PyPI packages (``pypandoc-binary`` for pandoc, ``typst``, ``PyYAML``)
and handles the subset of Quarto the report uses:

* front matter (title, subtitle, author, date, toc, number-sections, ...) and ``_quarto.yml``
  (top-level options, ``format: html:`` / ``format: typst:`` options, ``project: output-dir``);
* shortcodes ``{{< include path >}}`` (relative to the including file, recursive),
  ``{{< var key.sub >}}`` (from ``_variables.yml``), ``{{< meta key >}}``, ``{{< pagebreak >}}``;
  ``{{{< ... >}}}`` escapes a shortcode;
* figures ``![Caption](path){#fig-x}``, tables with a caption line ``: Caption {#tbl-x}``,
  sections ``## Title {#sec-x}``, equations ``$$ ... $$ {#eq-x}`` and the references
  ``@fig-x``, ``@tbl-x``, ``@sec-x``, ``@eq-x`` (also ``[@fig-a; @fig-b]``, ``-@fig-x``);
* callouts ``::: {.callout-note}`` (note, tip, warning, important, caution);
* citations ``@key``, ``[@key, p. 3]`` from the ``bibliography`` files named in ``_quarto.yml``
  or the front matter (and ``csl``), by pandoc's citeproc, the list where ``::: {#refs}`` is;
* TeX math ``$...$`` and ``$$...$$``.

It writes ``<output-dir>/<name>.html`` (one self-contained file, MathML, images embedded) and
``<output-dir>/<name>.pdf`` (pandoc -> typst source -> typst).  Both are written to a temporary
build directory first and moved into place only when both succeeded.  The pandoc Lua filter,
the HTML stylesheet and the typst header are package data in ``study/report/templates/``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["RENDERERS", "RenderError", "RenderResult", "expand_shortcodes", "render"]

RENDERERS = ("auto", "quarto", "fallback")
DEFAULT_OUTPUT_DIR = "_output"
VARIABLES_FILE = "_variables.yml"

# Package data in study/report/templates/ that the fallback copies into its build directory.
_LUA_FILTER = "pandoc-filter.lua"  # callouts, numbering, cross-references, image checks
_HTML_CSS = "report.css"  # stylesheet embedded in the HTML
_TYPST_HEADER = "typst-header.typ"  # the fallback's own: no typst numbering, title, callouts
_TYPST_STYLE = "typst-style.typ"  # tables, figures, links: what Quarto includes too
_TEMPLATES = (_LUA_FILTER, _HTML_CSS, _TYPST_HEADER, _TYPST_STYLE)


class RenderError(RuntimeError):
    """Rendering failed; the message is one line that says why."""


@dataclass(frozen=True)
class RenderResult:
    """What :func:`render` produced."""

    renderer: str  # "quarto" or "fallback"
    html: Path
    pdf: Path
    warnings: tuple[str, ...] = ()


# --------------------------------------------------------------------------- project


@dataclass(frozen=True)
class _Project:
    dir: Path
    config: dict[str, Any]
    qmd: Path
    output_dir: Path
    output_dir_configured: bool

    @property
    def html(self) -> Path:
        return self.output_dir / f"{self.qmd.stem}.html"

    @property
    def pdf(self) -> Path:
        return self.output_dir / f"{self.qmd.stem}.pdf"


def _yaml():
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RenderError("rendering needs PyYAML: pip install 'study[report]'") from exc
    return yaml


def _load_yaml(path: Path, what: str) -> dict[str, Any]:
    yaml = _yaml()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise RenderError(f"{what} {path} is not valid YAML: {_one_line(str(exc))}") from exc
    except OSError as exc:
        raise RenderError(f"cannot read {what} {path}: {exc.strerror}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RenderError(f"{what} {path} must be a YAML mapping")
    return data


def _load_project(project_dir: Path) -> _Project:
    project_dir = Path(project_dir).resolve()
    config_path = project_dir / "_quarto.yml"
    if not config_path.is_file():
        raise RenderError(f"not a Quarto project (no _quarto.yml): {project_dir}")
    config = _load_yaml(config_path, "project file")
    project = config.get("project") or {}
    if not isinstance(project, dict):
        raise RenderError(f"{config_path}: 'project' must be a mapping")

    listed = project.get("render")
    if listed:
        candidates = [project_dir / str(p) for p in listed if str(p).endswith(".qmd")]
    else:
        candidates = sorted(
            p for p in project_dir.glob("*.qmd") if not p.name.startswith(("_", "."))
        )
    if len(candidates) != 1:
        names = ", ".join(p.name for p in candidates) or "none"
        raise RenderError(
            f"{project_dir}: expected exactly one document to render (.qmd not starting "
            f"with '_'), found {names}"
        )
    qmd = candidates[0]
    if not qmd.is_file():
        raise RenderError(f"document listed in {config_path} does not exist: {qmd}")

    out = project.get("output-dir")
    output_dir = (project_dir / str(out or DEFAULT_OUTPUT_DIR)).resolve()
    return _Project(project_dir, config, qmd, output_dir, out is not None)


# --------------------------------------------------------------------------- public API


def render(project_dir: Path | str, *, renderer: str = "auto") -> RenderResult:
    """Render the Quarto project in ``project_dir`` to HTML and PDF.

    ``renderer`` is ``"quarto"`` (needs ``quarto`` on PATH), ``"fallback"`` (pandoc + typst
    from PyPI) or ``"auto"`` (quarto when found, else the fallback).  Raises
    :class:`RenderError` with a one-line message on any failure.
    """
    if renderer not in RENDERERS:
        raise RenderError(f"unknown renderer {renderer!r}; choose one of {', '.join(RENDERERS)}")
    project = _load_project(Path(project_dir))
    quarto = shutil.which("quarto")
    if renderer == "quarto" and quarto is None:
        raise RenderError("renderer 'quarto' requested but quarto is not on PATH")
    if renderer in ("auto", "quarto") and quarto is not None:
        return _render_quarto(quarto, project)
    return _render_fallback(project)


# --------------------------------------------------------------------------- quarto


def _render_quarto(quarto: str, project: _Project) -> RenderResult:
    cmd = [quarto, "render", str(project.dir)]
    if not project.output_dir_configured:
        cmd += ["--output-dir", str(project.output_dir)]
    started = dt.datetime.now().timestamp()
    proc = subprocess.run(cmd, cwd=project.dir, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RenderError(f"quarto render failed: {_tool_message(proc.stderr or proc.stdout)}")
    for path, fmt in ((project.html, "html"), (project.pdf, "typst")):
        if not path.is_file() or path.stat().st_mtime < started - 2:
            raise RenderError(
                f"quarto render did not write {path}; list format '{fmt}' in _quarto.yml"
            )
    # Quarto's warnings were thrown away before; a cross-reference it could not resolve is
    # an error here (it leaves ?@tbl-… in the output and numbers later tables wrongly)
    warnings = tuple(_quarto_warnings(proc.stderr + "\n" + proc.stdout))
    unresolved = [w for w in warnings if "crossref" in w.lower() or "?@" in w]
    if unresolved:
        raise RenderError(f"quarto could not resolve a cross-reference: {unresolved[0]}")
    _refuse_unresolved(project.html)
    return RenderResult("quarto", project.html, project.pdf, warnings)


def _quarto_warnings(output: str) -> list[str]:
    """The warning lines of Quarto's output (``WARN`` or ``WARNING``), each on one line."""
    return [
        _one_line(line)
        for line in output.splitlines()
        if re.match(r"\s*(\x1b\[[0-9;]*m)*\s*WARN(ING)?\b", line)
    ]


def _refuse_unresolved(html: Path) -> None:
    """Fail on a reference or label the renderer left as text: ``?@fig-…`` where a reference
    did not resolve, a literal ``{#tbl-…}`` where a label was not read."""
    text = html.read_text(encoding="utf-8", errors="replace")
    hit = re.search(r"\?@[a-z]+-[A-Za-z0-9_-]+|\{#[a-z]+-[A-Za-z0-9_-]+\}", text)
    if hit:
        raise RenderError(f"{html.name} holds an unresolved reference or label: {hit[0]}")


# --------------------------------------------------------------------------- shortcodes

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?\r?\n)?(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)", re.S)
_SHORTCODE = re.compile(r"\{\{\{<(?P<escaped>.*?)>\}\}\}|\{\{<\s*(?P<body>.*?)\s*>\}\}")

_PAGEBREAK = (
    '\n```{=html}\n<div style="page-break-after: always;"></div>\n```\n\n'
    "```{=typst}\n#pagebreak()\n```\n"
)


def _split_front_matter(text: str) -> tuple[str, str]:
    m = _FRONT_MATTER.match(text)
    if not m:
        return "", text
    return m.group(1) or "", text[m.end() :]


def _lookup(data: dict[str, Any], key: str, source: str, where: str) -> str:
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise RenderError(f"{where}: unknown {source} '{key}'")
        node = node[part]
    if node is None:
        raise RenderError(f"{where}: {source} '{key}' has no value")
    if isinstance(node, bool):
        return "true" if node else "false"
    if isinstance(node, (dict, list)):
        raise RenderError(f"{where}: {source} '{key}' is a {type(node).__name__}, not a value")
    return str(node)


def expand_shortcodes(
    path: Path,
    *,
    project_dir: Path,
    variables: dict[str, Any] | None,
    meta: dict[str, Any] | None = None,
) -> tuple[str, list[Path]]:
    """Expand the Quarto shortcodes in ``path`` and every file it includes.

    Returns the expanded text and the files read (``path`` first).  ``variables`` is the
    content of ``_variables.yml`` (``None`` if there is none); ``meta`` the document metadata
    used by ``{{< meta key >}}``.
    """
    project_dir = Path(project_dir).resolve()
    files: list[Path] = []

    def expand(file: Path, stack: tuple[Path, ...]) -> str:
        file = file.resolve()
        if file in stack:
            chain = " -> ".join(_rel(p, project_dir) for p in (*stack, file))
            raise RenderError(f"include cycle: {chain}")
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise RenderError(f"cannot read {_rel(file, project_dir)}: {exc.strerror}") from exc
        files.append(file)
        if stack:  # included files may not carry their own front matter
            _, text = _split_front_matter(text)

        def replace(m: re.Match[str]) -> str:
            if m.group("escaped") is not None:
                return "{{<" + m.group("escaped") + ">}}"
            line = text.count("\n", 0, m.start()) + 1
            where = f"{_rel(file, project_dir)}:{line}"
            parts = m.group("body").split(None, 1)
            name = parts[0] if parts else ""
            arg = parts[1].strip().strip("\"'") if len(parts) > 1 else ""
            if name == "include":
                if not arg:
                    raise RenderError(f"{where}: include shortcode without a file")
                target = (
                    (project_dir / arg.lstrip("/")) if arg.startswith("/") else (file.parent / arg)
                )
                if not target.is_file():
                    raise RenderError(f"{where}: included file not found: {arg}")
                body = expand(target, (*stack, file)).strip("\n")
                whole_line = _whole_line(text, m.start(), m.end())
                return f"\n{body}\n" if whole_line else body
            if name == "var":
                if variables is None:
                    raise RenderError(
                        f"{where}: variable '{arg}' used but there is no {VARIABLES_FILE} "
                        f"in {project_dir}"
                    )
                return _lookup(variables, arg, f"variable (not in {VARIABLES_FILE})", where)
            if name == "meta":
                return _lookup(meta or {}, arg, "metadata key", where)
            if name == "pagebreak":
                return _PAGEBREAK
            raise RenderError(f"{where}: unsupported shortcode '{name}'")

        return _SHORTCODE.sub(replace, text)

    text = expand(Path(path), ())
    return text, files


def _whole_line(text: str, start: int, end: int) -> bool:
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line_end = len(text) if line_end < 0 else line_end
    return not text[line_start:start].strip() and not text[end:line_end].strip()


def _rel(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- fallback

# Keys of _quarto.yml (top level or per format) that the fallback hands to pandoc as metadata.
# Front-matter keys reach pandoc directly (document metadata wins over --metadata-file).
_PANDOC_META = frozenset(
    "title subtitle author date abstract abstract-title lang toc-title papersize margin "
    "mainfont fontsize linestretch linkcolor".split()
)


def _format_options(config: dict[str, Any], fmt: str) -> dict[str, Any]:
    formats = config.get("format")
    if isinstance(formats, dict):
        opts = formats.get(fmt)
        if isinstance(opts, dict):
            return opts
    return {}


def _options(config: dict[str, Any], front: dict[str, Any], fmt: str) -> dict[str, Any]:
    """Quarto's precedence: project, project format, document, document format."""
    skip = {"project", "format"}
    merged: dict[str, Any] = {k: v for k, v in config.items() if k not in skip}
    merged.update(_format_options(config, fmt))
    merged.update({k: v for k, v in front.items() if k not in skip})
    merged.update(_format_options(front, fmt))
    return merged


def _resolve_date(value: Any, qmd: Path) -> str | None:
    if not isinstance(value, str) or value not in ("today", "now", "last-modified"):
        return None
    if value == "last-modified":
        day = dt.date.fromtimestamp(qmd.stat().st_mtime)
    else:
        day = dt.date.today()
    return f"{day:%B} {day.day}, {day.year}"


def _pandoc() -> str:
    try:
        import pypandoc
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RenderError(
            "the fallback renderer needs pandoc: pip install 'study[report]' (pypandoc-binary)"
        ) from exc
    try:
        return pypandoc.get_pandoc_path()
    except OSError as exc:  # pragma: no cover - depends on the environment
        raise RenderError(f"pandoc not found: {exc}") from exc


def _typst():
    try:
        import typst
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RenderError(
            "the fallback renderer needs typst: pip install 'study[report]'"
        ) from exc
    return typst


def _render_fallback(project: _Project) -> RenderResult:
    pandoc = _pandoc()
    typst = _typst()

    yaml = _yaml()
    front_text, _ = _split_front_matter(project.qmd.read_text(encoding="utf-8"))
    try:
        front = yaml.safe_load(front_text) if front_text.strip() else {}
    except yaml.YAMLError as exc:
        raise RenderError(
            f"front matter of {project.qmd.name} is not valid YAML: {_one_line(str(exc))}"
        ) from exc
    front = front if isinstance(front, dict) else {}

    var_path = project.dir / VARIABLES_FILE
    variables = _load_yaml(var_path, "variables file") if var_path.is_file() else None
    meta = {**project.config, **front}
    text, sources = expand_shortcodes(
        project.qmd, project_dir=project.dir, variables=variables, meta=meta
    )

    project.output_dir.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=".build-", dir=project.output_dir))
    warnings: list[str] = []
    try:
        stem = project.qmd.stem
        source = build / f"{stem}.md"
        source.write_text(text, encoding="utf-8")
        for name in _TEMPLATES:
            (build / name).write_text(_template(name), encoding="utf-8")

        html_tmp = build / f"{stem}.html"
        css = build / _HTML_CSS
        html_args = ["-t", "html5", "--mathml", "--embed-resources", "--css", str(css)]
        opts = _options(project.config, front, "html")
        warnings += _run_pandoc(pandoc, project, build, source, html_tmp, "html", opts, html_args)

        typ = build / f"{stem}.typ"
        opts = _options(project.config, front, "typst")
        typst_args = ["-t", "typst"]
        for header in _typst_headers(project, opts, build):
            typst_args += ["--include-in-header", str(header)]
        warnings += _run_pandoc(pandoc, project, build, source, typ, "typst", opts, typst_args)

        pdf_tmp = build / f"{stem}.pdf"
        root = Path(project.qmd.anchor or "/")
        try:
            _, typst_warnings = typst.compile_with_warnings(
                str(typ),
                output=str(pdf_tmp),
                root=str(root),
                ignore_system_fonts=True,
                timestamp=_timestamp(sources),
            )
        except Exception as exc:  # typst.TypstError and friends
            message = getattr(exc, "message", None) or str(exc)
            raise RenderError(f"typst failed: {_one_line(message)}") from exc
        warnings += [f"typst: {_one_line(getattr(w, 'message', str(w)))}" for w in typst_warnings]

        _refuse_unresolved(html_tmp)
        os.replace(html_tmp, project.html)
        os.replace(pdf_tmp, project.pdf)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return RenderResult("fallback", project.html, project.pdf, tuple(warnings))


def _typst_headers(project: _Project, opts: dict[str, Any], build: Path) -> list[Path]:
    """The Typst headers: the fallback's own (numbering left to the pandoc filter, the title
    block, callouts), then those the project names under ``format: typst:
    include-in-header`` (relative to the document, as Quarto reads them: both renderers use
    the same style), else the package's style."""
    named = opts.get("include-in-header")
    if not named:
        return [build / _TYPST_HEADER, build / _TYPST_STYLE]
    paths = [project.qmd.parent / str(n) for n in ([named] if isinstance(named, str) else named)]
    for path in paths:
        if not path.is_file():
            raise RenderError(f"include-in-header names a file that does not exist: {path}")
    return [build / _TYPST_HEADER, *paths]


def _template(name: str) -> str:
    """The text of ``study/report/templates/<name>`` (package data, also when installed)."""
    try:
        return (resources.files("study.report") / "templates" / name).read_text(encoding="utf-8")
    except OSError as exc:  # pragma: no cover - a broken installation
        raise RenderError(f"study is installed without its template {name}: {exc}") from exc


def _timestamp(sources: list[Path]) -> int:
    """SOURCE_DATE_EPOCH if set, else the newest source's mtime: stable across reruns."""
    env = os.environ.get("SOURCE_DATE_EPOCH")
    if env and env.isdigit():
        return int(env)
    return int(max(p.stat().st_mtime for p in sources))


def _run_pandoc(
    pandoc: str,
    project: _Project,
    build: Path,
    source: Path,
    output: Path,
    what: str,
    opts: dict[str, Any],
    extra: list[str],
) -> list[str]:
    """Run pandoc on the expanded source for one output format; return its warnings."""
    config_meta = {**project.config, **_format_options(project.config, what)}
    meta = {k: v for k, v in config_meta.items() if k in _PANDOC_META}
    meta_file = build / f"meta-{what}.json"
    meta_file.write_text(json.dumps(meta, default=str, sort_keys=True), encoding="utf-8")

    number_sections = "true" if opts.get("number-sections") else "false"
    args = [pandoc, str(source), "-f", "markdown", "-s", "-o", str(output)]
    args += ["--metadata-file", str(meta_file), "--lua-filter", str(build / _LUA_FILTER)]
    args += ["--resource-path", str(project.qmd.parent)]
    args += ["-M", f"study-number-sections={number_sections}", *extra]
    if opts.get("toc"):
        args += ["--toc", f"--toc-depth={int(opts.get('toc-depth', 3))}"]
        args += ["-M", f"toc-title={opts.get('toc-title', 'Table of contents')}"]
    else:
        args += ["-M", "toc=false"]
    date = _resolve_date(opts.get("date"), project.qmd)
    if date:
        args += ["-M", f"date={date}"]
    if not opts.get("title") and not opts.get("pagetitle"):
        args += ["-M", f"pagetitle={project.qmd.stem}"]
    # citations after the filter, which has turned the cross-references (@fig-…) into text
    bibliography = opts.get("bibliography")
    if bibliography:
        files = [bibliography] if isinstance(bibliography, str) else list(bibliography)
        args += ["--citeproc", *(f"--bibliography={f}" for f in files)]
        if opts.get("csl"):
            args += [f"--csl={opts['csl']}"]

    proc = subprocess.run(
        args, cwd=project.qmd.parent, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RenderError(f"pandoc ({what}) failed: {_tool_message(proc.stderr)}")
    missing = re.search(r"Citeproc: citation (\S+) not found", proc.stderr)
    if missing:  # Quarto shows these as ?@key, which _refuse_unresolved catches
        raise RenderError(f"citation @{missing[1]} is not in the bibliography ({what})")
    return [
        f"pandoc ({what}): {_one_line(line)}"
        for line in proc.stderr.splitlines()
        if line.startswith("[WARNING]")
    ]


def _tool_message(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if "study-render:" in line:
            return line.split("study-render:", 1)[1].strip()
    lines = [line for line in lines if not line.startswith(("stack traceback", "["))] or lines
    return _one_line(" ".join(lines[:3])) if lines else "no message"


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
