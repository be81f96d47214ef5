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
* TeX math ``$...$`` and ``$$...$$``.

It writes ``<output-dir>/<name>.html`` (one self-contained file, MathML, images embedded) and
``<output-dir>/<name>.pdf`` (pandoc -> typst source -> typst).  Both are written to a temporary
build directory first and moved into place only when both succeeded.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["RENDERERS", "RenderError", "RenderResult", "expand_shortcodes", "main", "render"]

RENDERERS = ("auto", "quarto", "fallback")
DEFAULT_OUTPUT_DIR = "_output"
VARIABLES_FILE = "_variables.yml"


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


def main(argv: list[str] | None = None) -> int:
    """``python -m study.render [PROJECT_DIR] [--renderer auto|quarto|fallback]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m study.render", description=__doc__)
    parser.add_argument("project_dir", nargs="?", default="report", type=Path)
    parser.add_argument("--renderer", choices=RENDERERS, default="auto")
    args = parser.parse_args(argv)
    try:
        result = render(args.project_dir, renderer=args.renderer)
    except RenderError as exc:
        print(f"render failed: {exc}", file=sys.stderr)
        return 1
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"rendered with {result.renderer}: {result.html} {result.pdf}")
    return 0


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
    return RenderResult("quarto", project.html, project.pdf)


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
_PANDOC_META = {
    "title",
    "subtitle",
    "author",
    "date",
    "abstract",
    "abstract-title",
    "lang",
    "toc-title",
    "papersize",
    "margin",
    "mainfont",
    "fontsize",
    "linestretch",
    "linkcolor",
}


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
        (build / "study-render.lua").write_text(_LUA_FILTER, encoding="utf-8")

        html_tmp = build / f"{stem}.html"
        css = build / "study-render.css"
        css.write_text(_CSS, encoding="utf-8")
        html_args = ["-t", "html5", "--mathml", "--embed-resources", "--css", str(css)]
        opts = _options(project.config, front, "html")
        warnings += _run_pandoc(pandoc, project, build, source, html_tmp, "html", opts, html_args)

        typ = build / f"{stem}.typ"
        header = build / "study-render-header.typ"
        header.write_text(_TYPST_HEADER, encoding="utf-8")
        typst_args = ["-t", "typst", "--include-in-header", str(header)]
        opts = _options(project.config, front, "typst")
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

        os.replace(html_tmp, project.html)
        os.replace(pdf_tmp, project.pdf)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return RenderResult("fallback", project.html, project.pdf, tuple(warnings))


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

    args = [
        pandoc,
        str(source),
        "-f",
        "markdown",
        "-s",
        "-o",
        str(output),
        "--metadata-file",
        str(meta_file),
        "--lua-filter",
        str(build / "study-render.lua"),
        "--resource-path",
        str(project.qmd.parent),
        "-M",
        f"study-number-sections={'true' if opts.get('number-sections') else 'false'}",
        *extra,
    ]
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

    proc = subprocess.run(
        args, cwd=project.qmd.parent, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RenderError(f"pandoc ({what}) failed: {_tool_message(proc.stderr)}")
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


# --------------------------------------------------------------------------- assets

_LUA_FILTER = r"""
-- study.render: Quarto-style callouts, numbering and cross-references for pandoc.
local IS_TYPST = FORMAT:match('typst') ~= nil
local NBSP = '\u{a0}'
local KIND = {fig = 'Figure', tbl = 'Table', sec = 'Section', eq = 'Equation'}
local CALLOUT = {note = 'Note', tip = 'Tip', warning = 'Warning',
                 important = 'Important', caution = 'Caution'}

local function fail(msg) error('study-render: ' .. msg, 0) end

local function typst_inline(inlines)
  local out = pandoc.write(pandoc.Pandoc({pandoc.Plain(inlines)}), 'typst')
  return (out:gsub('%s+$', ''))
end

-- callouts -------------------------------------------------------------------------------
local function callout(div)
  local kind
  for _, c in ipairs(div.classes) do
    local k = c:match('^callout%-(%a+)$')
    if k and CALLOUT[k] then kind = k end
  end
  if not kind then return nil end
  local body = pandoc.Blocks(div.content)
  local title
  if div.attributes.title then
    title = pandoc.utils.blocks_to_inlines(pandoc.read(div.attributes.title, 'markdown').blocks)
  elseif #body > 0 and body[1].t == 'Header' then
    title = body[1].content
    body:remove(1)
  else
    title = pandoc.Inlines{pandoc.Str(CALLOUT[kind])}
  end
  if IS_TYPST then
    local out = pandoc.Blocks{pandoc.RawBlock('typst',
      '#callout(kind: "' .. kind .. '", title: [' .. typst_inline(title) .. '])[')}
    out:extend(body)
    out:insert(pandoc.RawBlock('typst', ']'))
    return out
  end
  return pandoc.Div({
    pandoc.Div(pandoc.Plain(title), pandoc.Attr('', {'callout-title'})),
    pandoc.Div(body, pandoc.Attr('', {'callout-body'})),
  }, pandoc.Attr(div.identifier, {'callout', 'callout-' .. kind}))
end

-- numbering --------------------------------------------------------------------------------
local numbers = {}
local counts = {fig = 0, tbl = 0, eq = 0}

local function register(id, kind, n)
  if numbers[id] then fail('duplicate label #' .. id) end
  numbers[id] = {kind = kind, n = n}
end

local function prefix_caption(caption, label)
  local long = caption.long
  if #long == 0 then
    caption.long = pandoc.Blocks{pandoc.Plain{pandoc.Str(label)}}
    return caption
  end
  local first = long[1]
  if first.t == 'Plain' or first.t == 'Para' then
    first.content:insert(1, pandoc.Space())
    first.content:insert(1, pandoc.Str(label .. ':'))
  else
    long:insert(1, pandoc.Plain{pandoc.Str(label .. ':')})
  end
  caption.long = long
  return caption
end

local function number_float(el, kind)
  local id = el.identifier
  if not id:match('^' .. kind .. '%-') then return el end
  counts[kind] = counts[kind] + 1
  local n = tostring(counts[kind])
  register(id, kind, n)
  el.caption = prefix_caption(el.caption, KIND[kind] .. NBSP .. n)
  return el
end

local function equation(math, id)
  counts.eq = counts.eq + 1
  local n = tostring(counts.eq)
  register(id, 'eq', n)
  if IS_TYPST then
    local m = typst_inline({math})
    return pandoc.RawInline('typst',
      '#[#set math.equation(numbering: _ => "(' .. n .. ')")\n' .. m .. ' <' .. id .. '>]')
  end
  return pandoc.Span({math, pandoc.Span({pandoc.Str('(' .. n .. ')')},
                                        pandoc.Attr('', {'eq-number'}))},
                     pandoc.Attr(id, {'equation'}))
end

local function equations(inlines)
  local out = pandoc.Inlines{}
  local i = 1
  while i <= #inlines do
    local el = inlines[i]
    if el.t == 'Math' and el.mathtype == 'DisplayMath' then
      local j = i + 1
      while j <= #inlines and (inlines[j].t == 'Space' or inlines[j].t == 'SoftBreak') do
        j = j + 1
      end
      local label = j <= #inlines and inlines[j].t == 'Str' and
                    inlines[j].text:match('^{#(eq%-[^}%s]+)}$')
      if label then
        out:insert(equation(el, label))
        i = j + 1
      else
        out:insert(el)
        i = i + 1
      end
    else
      out:insert(el)
      i = i + 1
    end
  end
  return out
end

local function lone_fig_image(para)
  if #para.content ~= 1 or para.content[1].t ~= 'Image' then return nil end
  local img = para.content[1]
  if not img.identifier:match('^fig%-') then return nil end
  local id = img.identifier
  img.identifier = ''
  return pandoc.Figure({pandoc.Plain{img}}, pandoc.Caption(img.caption), pandoc.Attr(id))
end

local function min_header_level(doc)
  local lvl = 99
  doc.blocks:walk{Header = function(h)
    if not h.classes:includes('unnumbered') and h.level < lvl then lvl = h.level end
  end}
  return lvl
end

local function number_everything(doc, number_sections)
  local base = min_header_level(doc)
  local sec = {}
  return doc:walk{
    traverse = 'topdown',
    Header = function(h)
      if h.classes:includes('unnumbered') then return nil end
      local depth = h.level - base + 1
      sec[depth] = (sec[depth] or 0) + 1
      for k = depth + 1, #sec do sec[k] = nil end
      local parts = {}
      for k = 1, depth do parts[k] = tostring(sec[k] or 0) end
      local n = table.concat(parts, '.')
      if h.identifier ~= '' then register(h.identifier, 'sec', n) end
      if number_sections then
        h.content:insert(1, pandoc.Space())
        h.content:insert(1, pandoc.Span({pandoc.Str(n)},
                                        pandoc.Attr('', {'header-section-number'})))
      end
      return h
    end,
    Figure = function(f) return number_float(f, 'fig') end,
    Table = function(t)
      -- content-based column widths: pandoc's dash-proportional widths for long pipe-table
      -- rows squeeze numeric columns
      for i, spec in ipairs(t.colspecs) do t.colspecs[i] = {spec[1], nil} end
      return number_float(t, 'tbl')
    end,
    Para = function(p)
      local fig = lone_fig_image(p)
      if fig then return number_float(fig, 'fig') end
      p.content = equations(p.content)
      return p
    end,
    Plain = function(p)
      p.content = equations(p.content)
      return p
    end,
  }
end

-- references -------------------------------------------------------------------------------
local unresolved, seen = pandoc.List{}, {}

local function xref_kind(id)
  local prefix, rest = id:match('^(%a+)%-(.+)$')
  if prefix and KIND[prefix:lower()] then return prefix:lower(), prefix:lower() .. '-' .. rest end
  return nil
end

local function cite(c)
  local any = false
  for _, citation in ipairs(c.citations) do
    if xref_kind(citation.id) then any = true end
  end
  if not any then return nil end
  local out = pandoc.Inlines{}
  for i, citation in ipairs(c.citations) do
    local kind, id = xref_kind(citation.id)
    local entry = kind and numbers[id]
    if not entry or entry.kind ~= kind then
      if not seen[citation.id] then
        unresolved:insert('@' .. citation.id)
        seen[citation.id] = true
      end
    else
      if i > 1 then out:extend{pandoc.Str(','), pandoc.Space()} end
      if #citation.prefix > 0 then
        out:extend(citation.prefix)
        out:insert(pandoc.Space())
      end
      local text = entry.n
      if citation.mode ~= 'SuppressAuthor' then text = KIND[kind] .. NBSP .. entry.n end
      out:insert(pandoc.Link({pandoc.Str(text)}, '#' .. id))
      out:extend(citation.suffix)
    end
  end
  return out
end

-- images -----------------------------------------------------------------------------------
local cwd = pandoc.system.get_working_directory()

local function image(img)
  local src = img.src
  if src:match('^%a[%w+.-]*:') and not src:match('^%a:[/\\]') then return nil end
  local path = pandoc.path.is_absolute(src) and src or pandoc.path.join{cwd, src}
  local f = io.open(path, 'rb')
  if not f then fail('image not found: ' .. src) end
  f:close()
  if IS_TYPST then
    img.src = path:gsub('\\', '/')
    return img
  end
  return nil
end

function Pandoc(doc)
  local number_sections = doc.meta['study-number-sections'] == true
  doc.meta['study-number-sections'] = nil
  doc = doc:walk{Div = callout}
  doc = number_everything(doc, number_sections)
  doc = doc:walk{Cite = cite, Image = image}
  if #unresolved > 0 then
    fail('unresolved cross-reference(s): ' .. table.concat(unresolved, ', '))
  end
  return doc
end
"""

_CSS = """\
:root {
  --fg: #1f2328; --muted: #57606a; --accent: #0b5cad; --border: #d0d7de;
  --zebra: #f6f8fa; --head: #eaeef2;
}
html { font-size: 17px; }
body {
  max-width: 46rem; margin: 2.5rem auto; padding: 0 1.25rem; color: var(--fg);
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  line-height: 1.6; text-rendering: optimizeLegibility;
}
header#title-block-header { margin-bottom: 2rem; }
h1.title { font-size: 2rem; line-height: 1.2; margin: 0 0 .3rem; }
p.subtitle { font-size: 1.25rem; color: var(--muted); margin: 0 0 .8rem; }
p.author, p.date { margin: .1rem 0; color: var(--muted); }
h1, h2, h3, h4 { line-height: 1.25; margin: 2.2rem 0 .8rem; }
h2 { border-bottom: 1px solid var(--border); padding-bottom: .25rem; }
.header-section-number { color: var(--muted); margin-right: .2rem; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
nav#TOC {
  border: 1px solid var(--border); border-radius: 6px; background: #fbfcfd;
  padding: .8rem 1.4rem; margin: 1.5rem 0 2.5rem;
}
nav#TOC > h2 { border: 0; font-size: 1.05rem; margin: 0 0 .4rem; }
nav#TOC ul { margin: .1rem 0; padding-left: 1.2rem; list-style: none; }
nav#TOC > ul { padding-left: 0; }
figure { margin: 2rem 0; text-align: center; }
figure img, figure svg, p > img { max-width: 100%; height: auto; }
figcaption { font-size: .92rem; color: var(--muted); margin-top: .5rem; text-align: left; }
table {
  border-collapse: collapse; margin: 1.8rem auto; font-size: .92rem;
  font-variant-numeric: tabular-nums;
}
caption { caption-side: top; text-align: left; color: var(--muted); padding-bottom: .5rem; }
th, td { border: 1px solid var(--border); padding: .35rem .7rem; vertical-align: top; }
thead th { background: var(--head); }
tbody tr:nth-child(even) { background: var(--zebra); }
code {
  font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .88em;
  background: #f3f4f6; padding: .1em .3em; border-radius: 3px;
}
pre { background: var(--zebra); padding: .8rem 1rem; overflow-x: auto; border-radius: 6px; }
pre code { background: none; padding: 0; }
math[display="block"] { overflow-x: auto; margin: 1rem 0; }
.equation { display: flex; align-items: center; }
.equation math { flex: 1; }
.eq-number { margin-left: 1rem; }
blockquote { margin: 1rem 0; padding: 0 1rem; color: var(--muted);
  border-left: 4px solid var(--border); }
.callout {
  --c: #0b5cad; border: 1px solid var(--border); border-left: 5px solid var(--c);
  border-radius: 5px; padding: .6rem 1rem; margin: 1.5rem 0; background: #fcfcfd;
}
.callout-title { font-weight: 600; color: var(--c); margin-bottom: .2rem; }
.callout-body > :first-child { margin-top: 0; }
.callout-body > :last-child { margin-bottom: 0; }
.callout-tip { --c: #1a7f37; }
.callout-warning { --c: #bc4c00; }
.callout-important { --c: #cf222e; }
.callout-caution { --c: #9a6700; }
@media print { body { max-width: none; margin: 0; } }
"""

_TYPST_HEADER = """\
// study.render: numbering is done by the pandoc filter, so typst must not add its own.
#set figure(numbering: none)
#show figure: set block(breakable: false)
#show figure.caption: set text(size: 0.9em)
#set table(
  inset: (x: 6pt, y: 4pt),
  stroke: (x, y) => (
    top: if y == 0 { 0.8pt } else if y == 1 { 0.5pt } else { 0pt },
    bottom: 0.8pt,
    left: 0pt, right: 0pt,
  ),
  fill: (x, y) => if y > 0 and calc.even(y) { luma(244) },
)
#show table: set text(size: 0.9em, number-width: "tabular")
#show table.cell.where(y: 0): set text(weight: "bold")
#show link: set text(fill: rgb("#0b5cad"))
// Replaces the title block of pandoc's default template (same arguments, tighter layout).
#let conf(..args) = {
  let a = args.named()
  let doc = args.pos().last()
  let plain(x) = if type(x) == str { x } else if x == none { "" } else if x.has("text") {
    x.text
  } else if x.has("children") { x.children.map(plain).join("") } else if x.has("body") {
    plain(x.body)
  } else { " " }
  let title = a.at("title", default: none)
  let subtitle = a.at("subtitle", default: none)
  let authors = a.at("authors", default: ())
  let date = a.at("date", default: none)
  let abstract = a.at("abstract", default: none)
  set document(title: plain(title)) if title != none
  set document(author: authors.map(x => plain(x.name))) if authors.len() > 0
  set page(
    paper: a.at("paper", default: "us-letter"),
    margin: a.at("margin", default: (x: 1.25in, y: 1.25in)),
    numbering: a.at("pagenumbering", default: "1"),
    columns: a.at("cols", default: 1),
  )
  set par(justify: true, leading: a.at("linestretch", default: 1) * 0.65em)
  set text(lang: a.at("lang", default: "en"), region: a.at("region", default: "US"),
           size: a.at("fontsize", default: 11pt))
  set text(font: a.at("font")) if a.at("font", default: none) != none
  show math.equation: set text(font: a.at("mathfont")) if a.at("mathfont", default: none) != none
  show raw: set text(font: a.at("codefont")) if a.at("codefont", default: none) != none
  set heading(numbering: a.at("sectionnumbering", default: none))
  show heading: set block(above: 1.4em, below: 0.8em)
  if title != none {
    align(center, block(width: 100%, below: 1.6em)[
      #text(weight: "bold", size: 1.6em, hyphenate: false, title)
      #if subtitle != none { block(above: 0.9em, text(size: 1.2em, hyphenate: false, subtitle)) }
      #if authors.len() > 0 { block(above: 1.2em, authors.map(x => x.name).join(", ")) }
      #if date != none { block(above: 0.6em, date) }
    ])
  }
  if abstract != none {
    block(inset: (x: 2em), below: 1.5em)[
      #text(weight: "semibold")[#a.at("abstract-title", default: [Abstract])] #h(1em) #abstract
    ]
  }
  doc
}
#let callout(kind: "note", title: none, body) = {
  let color = (
    note: rgb("#0b5cad"), tip: rgb("#1a7f37"), warning: rgb("#bc4c00"),
    important: rgb("#cf222e"), caution: rgb("#9a6700"),
  ).at(kind, default: rgb("#0b5cad"))
  block(
    width: 100%, inset: (x: 10pt, y: 8pt), radius: 3pt, breakable: true,
    fill: color.lighten(94%), stroke: (left: 3pt + color, rest: 0.5pt + color.lighten(60%)),
  )[
    #if title != none { text(weight: "bold", fill: color)[#title]; v(-0.3em) }
    #body
  ]
}
"""


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
