"""Command line: ``study simulate DESIGN …`` (also ``python -m study``).

Bad input of any kind ends with one line on standard error that names the key or option,
the value given and what is allowed, exit status 2, and nothing written.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .design import DesignError, load_design
from .paths import GENERATED_DIR, REPORT_DIR, RESULTS_ROOT, results_dir

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and still exit status 2)."""

    def error(self, message: str):  # noqa: D102
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


MAX_JOBS = max(64, 4 * (os.cpu_count() or 1))


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_JOBS:
        raise argparse.ArgumentTypeError(f"got {text!r}; expected an integer from 1 to {MAX_JOBS}")
    return value


def _add_renderer(parser: argparse.ArgumentParser) -> None:
    from .render import RENDERERS

    parser.add_argument(
        "--renderer", choices=RENDERERS, default="auto",
        help="auto (default): quarto if it is on PATH, else the pandoc + typst fallback",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(
        prog="study",
        description="Why does Andrew Ng divide the L2 penalty by m? A Monte Carlo study of "
        "penalty scalings in polynomial ridge regression.",
    )
    parser.add_argument("--version", action="version", version=f"study {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sim = sub.add_parser(
        "simulate",
        help="run a design file and write its results",
        description="Run every (m, block) task of a design, fitting all (degree, λ, "
        "scaling) cells on the same data sets, and write summary.csv, risk.csv, "
        "draws.npz and manifest.json. Finished tasks are checkpointed: after an "
        "interruption the same command computes only what is missing.",
    )
    sim.add_argument("design", type=Path, help="design file (TOML), e.g. simulations/default.toml")
    sim.add_argument(
        "--jobs", "-j", type=_positive_int, default=1, metavar="N",
        help="parallel workers (default: 1); results do not depend on it",
    )  # fmt: skip
    sim.add_argument(
        "--backend", choices=("loky", "threading"), default="loky",
        help="joblib backend (default: loky, separate processes); results do not depend on it",
    )  # fmt: skip
    sim.add_argument(
        "--out", type=Path, default=None, metavar="DIR",
        help=f"results folder (default: {RESULTS_ROOT}/<name of the design>)",
    )  # fmt: skip
    sim.add_argument(
        "--fresh", action="store_true",
        help="discard checkpoints and results already in the results folder and start over",
    )  # fmt: skip
    sim.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    chk = sub.add_parser(
        "check",
        help="compare the simulation with theory, cell by cell",
        description="For every cell: z = (Monte Carlo − Rao–Blackwell) / SE of the difference "
        "for bias, variance and risk, and the gap between Rao–Blackwell and the large-m "
        "theory at the largest m. Writes check.csv to the results folder. Exit status 1 "
        "when any |z| > 5, more than 10 % of |z| exceed 2, or a large-m comparison is off "
        "by more than 2 % and 3 standard errors. Cells whose moments are infinite are "
        "flagged and left out.",
    )
    chk.add_argument("results", type=Path, help="results folder, e.g. simulations/results/default")
    chk.add_argument(
        "--brief", action="store_true",
        help="print only the 20 largest |z| and the summary, not every comparison",
    )  # fmt: skip

    rep = sub.add_parser(
        "report",
        help="write the report's figures, tables and numbers from results, then render it",
        description="Write report/_generated/ (figures as SVG and PNG, tables as Markdown) and "
        "report/_variables.yml from a results folder, then render report/ to "
        "report/_output/report.html and report.pdf: with quarto when it is on PATH, else with "
        "the pandoc + typst fallback (PyPI packages). Says which renderer it used.",
    )
    rep.add_argument("results", type=Path, help="results folder, e.g. simulations/results/default")
    rep.add_argument("--no-render", action="store_true", help="write the assets only")
    rep.add_argument(
        "--project", type=Path, default=REPORT_DIR, metavar="DIR",
        help=f"the Quarto project to write into and render (default: {REPORT_DIR})",
    )  # fmt: skip
    _add_renderer(rep)

    ren = sub.add_parser(
        "render",
        help="render the Quarto project (report/) to HTML and PDF",
        description="Render a Quarto project to <project>/_output/: with quarto when it is on "
        "PATH, else with the pandoc + typst fallback. The assets must exist (study report).",
    )
    ren.add_argument("project", type=Path, nargs="?", default=REPORT_DIR,
                     help=f"the Quarto project folder (default: {REPORT_DIR})")  # fmt: skip
    _add_renderer(ren)
    return parser


def _render(project: Path, renderer: str) -> int:
    import time

    from .render import RenderError, render

    if not (project / "_quarto.yml").is_file():
        raise DesignError(
            f"argument PROJECT: got '{project}'; expected a Quarto project folder with _quarto.yml"
        )

    started = time.perf_counter()
    try:
        result = render(project, renderer=renderer)
    except RenderError as exc:
        print(f"study: error: {exc}", file=sys.stderr)
        return 1
    for warning in result.warnings:
        print(f"study: warning: {warning}", file=sys.stderr)
    sizes = ", ".join(f"{p} ({p.stat().st_size / 1e6:.1f} MB)" for p in (result.html, result.pdf))
    print(
        f"study: rendered with {result.renderer} in {time.perf_counter() - started:.1f} s: {sizes}"
    )
    return 0


def _report(args) -> int:
    from .report import build_assets

    project = args.project
    if not (project / "_quarto.yml").is_file():
        raise DesignError(
            f"option '--project': got '{project}'; expected a Quarto project folder with "
            "_quarto.yml"
        )
    generated = project / GENERATED_DIR.name
    names = build_assets(
        _results_folder(args.results, for_report=True), out_dir=generated, report_dir=project
    )
    print(f"study: wrote {len(names)} report assets to {generated}/ and {project}/")
    if args.no_render:
        return 0
    return _render(project, args.renderer)


def _simulate(args) -> int:
    from .simulate import simulate

    design = load_design(args.design)
    out = args.out if args.out is not None else results_dir(design.name)
    if out.exists() and not out.is_dir():
        raise DesignError(f"option '--out': got '{out}'; expected a folder, not a file")
    parent = next(p for p in (out, *out.parents) if p.exists())
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise DesignError(f"option '--out': got '{out}'; expected a folder that can be written")
    try:
        report = simulate(
            design, out, jobs=args.jobs, backend=args.backend, fresh=args.fresh,
            progress=not args.quiet, design_path=str(args.design),
        )  # fmt: skip
    except KeyboardInterrupt:
        print(
            f"study: interrupted; finished tasks are kept in {out}/checkpoints — run the same "
            "command again to resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    resumed = f", {report.n_resumed} resumed" if report.n_resumed else ""
    print(
        f"study: results in {out}/ ({report.n_tasks} tasks{resumed}, {report.n_fits:,} fits) "
        f"in {report.wall_seconds:.1f} s"
    )
    return 0


def _results_folder(path: Path, *, for_report: bool = False) -> Path:
    """Check that a results folder holds what a command reads, before anything is written."""
    import pandas as pd

    from .paths import (
        DRAWS_FILE,
        MANIFEST_FILE,
        RISK_FILE,
        SUMMARY_FILE,
        TRANSFER_FILE,
        TUNING_FILE,
    )

    needed = [SUMMARY_FILE, RISK_FILE]
    if for_report:
        needed += [TUNING_FILE, TRANSFER_FILE, DRAWS_FILE, MANIFEST_FILE]
    for name in needed:
        if not (path / name).is_file():
            raise DesignError(
                f"argument RESULTS: got '{path}'; expected a results folder with {name} "
                "(run `study simulate` first)"
            )
    columns = {SUMMARY_FILE: "bias_asym", RISK_FILE: "risk_asym"}
    for name, column in columns.items():
        try:
            header = pd.read_csv(path / name, nrows=0).columns
        except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError):
            header = []
        if column not in header:
            raise DesignError(
                f"argument RESULTS: '{path / name}' has no column {column}; expected the "
                "results of `study simulate` (a complete run writes it)"
            )
    return path


def _check(args) -> int:
    from .check import check, format_table, write_check

    result = check(_results_folder(args.results))
    table = result.table
    if args.brief:
        table = table.reindex(table.z.abs().sort_values(ascending=False).index).head(20)
    print(format_table(table))
    path = write_check(result, args.results)
    print(f"(every comparison: {path})")
    print(result.summary_line())
    return 0 if result.ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "simulate":
            return _simulate(args)
        if args.command == "check":
            return _check(args)
        if args.command == "report":
            return _report(args)
        if args.command == "render":
            return _render(args.project, args.renderer)
    except DesignError as exc:
        print(f"study: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:  # a full disk, a folder without write permission, …
        print(f"study: error: {exc.strerror or exc}: {exc.filename or ''}", file=sys.stderr)
        return 1
    parser.error(f"unknown command {args.command!r}")
    return EXIT_BAD_INPUT
