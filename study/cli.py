"""Command line: ``study simulate DESIGN …`` (also ``python -m study``).

Bad input of any kind ends with one line on standard error that names the key or option,
the value given and what is allowed, exit status 2, and nothing written. Any other failure
is one line too, exit status 1; an unexpected one also names a log file that holds its
traceback (``--debug`` shows the traceback instead). Interrupted runs exit with 128 + the
signal: 130 (Ctrl-C), 143 (SIGTERM), 129 (SIGHUP).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

from study.design import DesignError, load_design
from study.paths import GENERATED_DIR, REPORT_DIR, RESULTS_ROOT, results_dir

EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, handled like Ctrl-C: finished tasks kept, workers stopped."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum, frame):
    raise Interrupted(signum)


@contextlib.contextmanager
def _signals_as_interrupts():
    """SIGTERM and SIGHUP raise Interrupted in the main thread for the duration (not in a
    child forked meanwhile, such as a local Dask cluster's worker: it gets the handlers
    from before, and a SIGTERM from its nanny stops it)."""
    caught = (signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, _raise_interrupted) for sig in caught}
    _BEFORE.update(previous)
    try:
        yield
    finally:
        _BEFORE.clear()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# the handlers _signals_as_interrupts replaced, while it is active
_BEFORE: dict = {}


def _restore_signals_in_child() -> None:
    # runs in the child right after a fork, as its only thread (its main thread)
    for sig, handler in _BEFORE.items():
        signal.signal(sig, handler)
    _BEFORE.clear()


os.register_at_fork(after_in_child=_restore_signals_in_child)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and still exit status 2)."""

    def error(self, message: str):
        """Exit with status 2 and the message on one line."""
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
    from study.report.render import RENDERERS

    parser.add_argument(
        "--renderer",
        choices=RENDERERS,
        default="auto",
        help="auto (default): quarto if it is on PATH, else the pandoc + typst fallback",
    )


def build_parser() -> argparse.ArgumentParser:
    from study import __version__

    parser = _Parser(
        prog="study",
        description="Why does Andrew Ng divide the L2 penalty by m? A Monte Carlo study of "
        "penalty scalings in polynomial ridge regression.",
    )
    parser.add_argument("--version", action="version", version=f"study {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    commands = [_simulate_parser(sub), _theory_parser(sub), _plan_parser(sub), _check_parser(sub)]
    commands += _report_parsers(sub)
    for command in commands:
        command.add_argument(
            "--debug",
            action="store_true",
            help="show the traceback of an unexpected error instead of writing it to a log file",
        )
    return parser


def _simulate_parser(sub) -> argparse.ArgumentParser:
    sim = sub.add_parser(
        "simulate",
        help="run a design file and write its results",
        description="Run a design in tasks (groups of chunks of replications, sized by "
        "cost and sent longest first), fitting all (degree, λ, scaling, basis) cells on the "
        "same data sets, then the theory step, and write summary.csv, "
        "risk.csv, fits.csv, draws.npz, tuning.csv, transfer.csv, risk_curves.csv, "
        "matched.csv, sensitivity.csv, bases.csv (of these, a logistic design has tuning.csv "
        "alone), "
        "minibatch.csv (with [minibatch]) and manifest.json. Finished tasks are "
        "checkpointed: after an interruption the same command computes only what is "
        "missing. The results folder must be new, empty or "
        "one that study created; one run at a time may use it.",
    )
    sim.add_argument("design", type=Path, help="design file (TOML), e.g. simulations/default.toml")
    sim.add_argument(
        "--jobs",
        "-j",
        type=_positive_int,
        default=1,
        metavar="N",
        help="parallel workers (default: 1); results do not depend on it",
    )
    sim.add_argument(
        "--backend",
        choices=("loky", "threading", "dask"),
        default=None,
        help="loky (separate processes on this machine, the default), threading, or dask (a "
        "local Dask cluster of --jobs worker processes, or the cluster at --scheduler); "
        "results do not depend on it",
    )
    sim.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="address of a running Dask scheduler (e.g. tcp://host:8786, started by `dask "
        "scheduler` or dask-jobqueue); implies --backend dask",
    )
    sim.add_argument(
        "--out",
        default=None,
        metavar="DIR",  # a str: Path("") would be "."
        help=f"results folder (default: {RESULTS_ROOT}/<name of the design>)",
    )
    sim.add_argument(
        "--fresh",
        action="store_true",
        help="remove what study wrote in the results folder (checkpoints, result files) and "
        "start over; nothing else is touched",
    )
    sim.add_argument("--quiet", "-q", action="store_true", help="no estimate, no progress bar")
    sim.add_argument(
        "--no-theory",
        action="store_true",
        help="the Monte Carlo step alone: no large-m columns and none of the theory's files "
        "(tuning.csv, transfer.csv, risk_curves.csv, matched.csv, sensitivity.csv, "
        "bases.csv, minibatch.csv; add them later with `study theory`)",
    )
    sim.add_argument(
        "--dry-run",
        action="store_true",
        help="print the estimate of tasks, files, disk, memory and time, and exit; nothing is "
        "written",
    )
    return sim


def _theory_parser(sub) -> argparse.ArgumentParser:
    th = sub.add_parser(
        "theory",
        help="add the theory to a finished run, without simulating",
        description="The theory step alone: merge the Monte Carlo results of a finished run "
        "again from its checkpoints (nothing is simulated), add the large-m columns and "
        "the finite-moment orders, write tuning.csv, transfer.csv, risk_curves.csv, "
        "matched.csv, sensitivity.csv and bases.csv (for the gaussian family; tuning.csv for "
        "the logistic) and "
        "minibatch.csv (for a design with [minibatch]), and commit the folder again. "
        "For a run made with `study simulate --no-theory`, or "
        "after the theory's code changed. `study simulate` runs this step itself.",
    )
    th.add_argument("results", type=Path, help="results folder of a finished run")
    th.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    return th


def _plan_parser(sub) -> argparse.ArgumentParser:
    pl = sub.add_parser(
        "plan",
        help="how many replications a target Monte Carlo standard error needs",
        description="Run a short pilot of a design (its first replications, the same random "
        "streams) in a temporary folder, and say how many replications make the Monte Carlo "
        "standard error of every bias at most --target-mcse, in every cell where the bias "
        "has a finite variance: n = (SD/target)², with SD estimated by the pilot (Morris, "
        "White and Crowther 2019). Prints the deciding cell of each m and the replications "
        "it needs, at the pilot's SD and at its upper 95 % limit. Writes nothing.",
    )
    pl.add_argument("design", type=Path, help="design file, e.g. simulations/default.toml")
    pl.add_argument(
        "--target-mcse",
        type=float,
        required=True,
        metavar="X",
        help="the largest Monte Carlo standard error of a bias to allow, e.g. 0.005",
    )
    pl.add_argument(
        "--pilot",
        type=int,
        default=None,
        metavar="N",
        help="replications of the pilot, the design's first ones (default 256, one chunk)",
    )
    pl.add_argument("--jobs", "-j", type=int, default=2, help="worker processes (default 2)")
    return pl


def _plan(args) -> int:
    from study.plan import PILOT_REPLICATIONS, plan

    design = load_design(args.design)
    if args.jobs < 1:
        raise DesignError(f"option '--jobs': got {args.jobs}; expected an integer ≥ 1")
    pilot = PILOT_REPLICATIONS if args.pilot is None else args.pilot
    result = plan(design, args.target_mcse, pilot=pilot, jobs=args.jobs)
    print("\n".join(result.lines()))
    return 0


def _check_parser(sub) -> argparse.ArgumentParser:
    from study.check import FALSE_ALARM, STEP_TOL

    chk = sub.add_parser(
        "check",
        help="compare the simulation with theory, cell by cell",
        description="First an audit from the seeds: a second, plain implementation "
        "recomputes the first data set's estimates of every chunk (up to 64) of every cell "
        "and chunk 0's conditional means from the documented random streams, and any "
        "mismatch with the engine's records fails the check. Then, for every cell: "
        "z = (Monte Carlo − Rao–Blackwell) / SE of the difference "
        "for bias, variance and risk; and the gap between Rao–Blackwell and the large-m "
        "theory at every m large enough for the expansion (the bias with its 1/m term). "
        "Writes check.csv to the results folder. Exit status 1 "
        "when the audit finds a mismatch, when the largest |z| exceeds the Bonferroni limit "
        f"for a false-alarm rate of {100 * FALSE_ALARM:g} % (about 4.9 for 10,000 z-values), "
        "when a Rao–Blackwell number is further from the theory than the same Bonferroni "
        "limit (over the theory comparisons) times its standard error plus what the "
        f"expansion leaves out ({STEP_TOL:g}× the O(1/m²) term of a bias, {STEP_TOL:g}·E[h²]/m "
        "of a variance or risk, h a point's leverage; docs/checks.md), "
        "or when a cell holds non-finite or "
        "impossible values. Cells whose moments are infinite are flagged and left out. The "
        "folder's files must match the sizes and checksums its manifest.json records.",
    )
    chk.add_argument("results", type=Path, help="results folder, e.g. simulations/results/default")
    chk.add_argument(
        "--brief",
        action="store_true",
        help="print only the 20 largest |z| and the summary, not every comparison",
    )
    return chk


def _report_parsers(sub) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    rep = sub.add_parser(
        "report",
        help="write the report's figures, tables and numbers from results, then render it",
        description="Write report/_generated/ (figures as SVG and PNG, tables as Markdown) and "
        "report/_variables.yml from a results folder (and the section on logistic regression "
        "from a logistic design's, with --logistic), then render report/ to "
        "report/_output/report.html and report.pdf: with quarto when it is on PATH, else with "
        "the pandoc + typst fallback (PyPI packages). Says which renderer it used.",
    )
    rep.add_argument("results", type=Path, help="results folder, e.g. simulations/results/default")
    rep.add_argument(
        "--logistic",
        type=Path,
        metavar="DIR",
        help="results of a logistic design (e.g. simulations/results/logistic) for the section "
        "on logistic regression; without it the section says none was run",
    )
    rep.add_argument("--no-render", action="store_true", help="write the assets only")
    rep.add_argument(
        "--project",
        type=Path,
        default=REPORT_DIR,
        metavar="DIR",
        help=f"the Quarto project to write into and render (default: {REPORT_DIR})",
    )
    _add_renderer(rep)

    ren = sub.add_parser(
        "render",
        help="render the Quarto project (report/) to HTML and PDF",
        description="Render a Quarto project to <project>/_output/: with quarto when it is on "
        "PATH, else with the pandoc + typst fallback. The assets must exist (study report).",
    )
    ren.add_argument(
        "project",
        type=Path,
        nargs="?",
        default=REPORT_DIR,
        help=f"the Quarto project folder (default: {REPORT_DIR})",
    )
    _add_renderer(ren)
    return rep, ren


def _render(project: Path, renderer: str) -> int:
    import time

    from study.report.render import RenderError, render

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
    from study.report.assets import build_assets

    project = args.project
    if not (project / "_quarto.yml").is_file():
        raise DesignError(
            f"option '--project': got '{project}'; expected a Quarto project folder with "
            "_quarto.yml"
        )
    generated = project / GENERATED_DIR.name
    from study.folder import reading

    if _family(args.results) == "logistic":
        raise DesignError(
            f"argument RESULTS: {args.results} holds results of model.family = 'logistic'; "
            "give a gaussian design's results there and these with --logistic"
        )
    from study.folder import FolderError
    from study.paths import FITS_FILE

    with contextlib.ExitStack() as held:
        held.enter_context(reading(args.results, _needed_files(for_report=True)))
        if args.logistic is not None:
            needed = _needed_files(for_report=True, family="logistic") + (FITS_FILE,)
            try:
                held.enter_context(reading(args.logistic, needed))
            except FolderError as exc:  # its message names the positional argument
                raise FolderError(
                    str(exc).replace("argument RESULTS", "option '--logistic'", 1)
                ) from None
            family = _family(args.logistic)
            if family != "logistic":
                raise DesignError(
                    f"option '--logistic': {args.logistic} holds results of model.family = "
                    f"'{family}'; expected those of a logistic design"
                )
        names = build_assets(
            args.results, out_dir=generated, report_dir=project, logistic_dir=args.logistic
        )
    print(f"study: wrote {len(names)} report assets to {generated}/ and {project}/")
    if args.no_render:
        return 0
    return _render(project, args.renderer)


def _simulate(args) -> int:
    from study.folder import check_out_path, refuse_foreign

    if args.scheduler is not None and args.backend not in (None, "dask"):
        raise DesignError(
            f"option '--scheduler': given with --backend {args.backend}; a scheduler address "
            "needs --backend dask (or no --backend)"
        )
    design = load_design(args.design)
    out = check_out_path(args.out if args.out is not None else results_dir(design.name))
    refuse_foreign(out)
    parent = next(p for p in (out, *out.parents) if p.exists())
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DesignError(f"option '--out': got '{out}'; expected a folder that can be written")
    return _simulate_run(args, design, out)


def _simulate_run(args, design, out: Path) -> int:
    from study.engine import budget
    from study.engine.run import WorkerDied, release_workers
    from study.steps import simulate

    available_memory, free_disk = budget.machine_limits(out)
    # with [precision], what the run may reach: every m at max_replications
    sized = design
    if design.target_mcse is not None:
        sized = dataclasses.replace(design, replications=design.max_replications)
    done = {} if args.fresh else _checkpointed(out, design)
    estimate = budget.estimate(sized, jobs=args.jobs, done=done)
    refusal = budget.refusal(
        sized, estimate, jobs=args.jobs, available_memory=available_memory, free_disk=free_disk
    )
    if refusal is not None:
        raise DesignError(f"{args.design}: {refusal}")
    jobs = min(args.jobs, budget.max_jobs_for_memory(estimate, available_memory))
    if jobs < args.jobs:
        estimate = budget.estimate(sized, jobs=jobs, done=done)
    if args.dry_run or not args.quiet:
        capped = f" (--jobs {args.jobs} capped to {jobs} by memory)" if jobs < args.jobs else ""
        if sized is not design:
            capped += (
                f" (at most: [precision] may add replications up to {design.max_replications:,}"
                " for each m)"
            )
        print(f"study: {estimate.line()}{capped}", file=sys.stdout if args.dry_run else sys.stderr)
    if args.dry_run:
        return 0

    backend = args.backend or ("dask" if args.scheduler else "loky")
    options = dict(jobs=jobs, backend=backend, fresh=args.fresh, progress=not args.quiet)
    options |= dict(scheduler=args.scheduler)
    options |= dict(design_path=str(args.design), on_reject=_rejected, theory=not args.no_theory)
    try:
        with _signals_as_interrupts():
            report = simulate(design, out, **options)
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        print(
            f"study: interrupted ({signal.Signals(signum).name}); finished tasks are kept in "
            f"{out}/checkpoints — run the same command again to resume",
            file=sys.stderr,
        )
        return 128 + signum
    except WorkerDied as exc:
        print(f"study: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        release_workers()
    if report.n_declined:
        print(
            f"study: note: the compiled kernel declined batches holding {report.n_declined:,} "
            "fits (a numerically singular or non-finite system); NumPy fitted them instead, "
            f"leaving out data sets whose fit is not finite (counts per cell in {out}/fits.csv)",
            file=sys.stderr,
        )
    if report.precision is not None:
        print(_precision_line(report.precision), file=sys.stderr)
    resumed = f", {report.n_resumed} resumed" if report.n_resumed else ""
    print(
        f"study: results in {out}/ ({report.n_tasks} tasks{resumed}, {report.n_fits:,} fits) "
        f"in {report.wall_seconds:.1f} s"
    )
    return 0


def _checkpointed(out: Path, design) -> dict[int, int]:
    """The chunks of each m that the folder's checkpoints would resume, read from their
    names (nothing is read or moved before the run takes the folder); none unless the
    folder's marker says it holds this design's results of this engine version."""
    from study.engine import ENGINE_VERSION
    from study.engine.store import CheckpointStore
    from study.folder import read_marker

    marker = read_marker(out) if out.is_dir() else None
    if marker is None or (marker.get("design_hash"), marker.get("engine_version")) != (
        design.hash,
        ENGINE_VERSION,
    ):
        return {}
    return CheckpointStore(out, design).covered_chunks()


def _rejected(path, moved_to, reason):
    print(
        f"study: warning: checkpoint '{path}' rejected ({reason}); moved to "
        f"'{moved_to}'; chunks no other checkpoint holds are computed again",
        file=sys.stderr,
    )


def _theory(args) -> int:
    from study.folder import check_out_path
    from study.steps import theory

    out = check_out_path(args.results)
    with _signals_as_interrupts():
        report = theory(out, progress=False, on_reject=_rejected)
    if not args.quiet:
        print(f"study: theory added to {out}/ in {report.wall_seconds:.1f} s")
    return 0


def _family(results: Path) -> str:
    """The model family of a results folder's design, as its manifest says (gaussian when
    the manifest cannot be read: reading the folder then says what is wrong)."""
    import json

    try:
        manifest = json.loads((results / "manifest.json").read_text(encoding="utf-8"))
        return str(manifest["design"].get("model", {}).get("family", "gaussian"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "gaussian"


def _needed_files(*, for_report: bool = False, family: str = "gaussian") -> tuple[str, ...]:
    from study.paths import (
        BASES_FILE,
        DRAWS_FILE,
        MATCHED_FILE,
        RISK_CURVES_FILE,
        RISK_FILE,
        SENSITIVITY_FILE,
        SUMMARY_FILE,
        TRANSFER_FILE,
        TUNING_FILE,
    )

    # the theory step's files too: a run made with --no-theory is told to run it (the
    # logistic family's theory is columns of summary.csv and risk.csv, and tuning.csv)
    if family == "logistic":
        return (SUMMARY_FILE, RISK_FILE, DRAWS_FILE) + (TUNING_FILE,) * for_report
    needed = (SUMMARY_FILE, RISK_FILE, TUNING_FILE, TRANSFER_FILE, DRAWS_FILE)
    if for_report:
        needed += (RISK_CURVES_FILE, MATCHED_FILE, SENSITIVITY_FILE, BASES_FILE)
    return needed


def _check(args) -> int:
    from study.check import check, format_table, write_check
    from study.folder import reading

    with reading(args.results, _needed_files(family=_family(args.results))):
        result = check(args.results)
        try:
            where = f"every comparison: {write_check(result, args.results)}"
        except PermissionError:  # a read-only copy of the results: the verdict still stands
            where = "check.csv not written: the results folder is read-only"
    table = result.table
    if args.brief:  # the largest |z|; without z-values (logistic), the largest gap in SEs
        key = table.z if table.z.notna().any() else table.se_gap_asym
        table = table.reindex(key.abs().sort_values(ascending=False).index).head(20)
    print(format_table(table))
    print(f"({where})")
    bad = result.audit.mismatches if result.audit is not None else None
    if bad is not None and len(bad):
        print(f"audit mismatches ({len(bad)}; the first {min(len(bad), 20)}):")
        print(bad.head(20).to_string(index=False))
    print(result.summary_line())
    return 0 if result.ok else 1


def _precision_line(precision: dict) -> str:
    """What a run with [precision] reached, in one line (the manifest keeps every cell)."""
    target, rounds, unmet = precision["target_mcse"], precision["rounds"], precision["unmet"]
    left_out = precision["infinite_variance_cells"]
    apart = f"; {left_out} cells left out (no finite variance)" if left_out else ""
    if not unmet:
        return (
            f"study: precision: every bias MCSE ≤ {target:g} in every finite-variance cell "
            f"after {rounds} round{'s' * (rounds > 1)}{apart}"
        )
    return (
        f"study: precision: {len(unmet)} cells above the target {target:g} after {rounds} "
        f"rounds, e.g. {unmet[0]}{apart} (all in manifest.json)"
    )


def run() -> None:
    """The ``study`` command and ``python -m study``: :func:`main`, then exit with its code.
    First the garbage collector's objects are frozen: its last collections at exit would
    walk every object the run made (numba's alone take some tenths of a second)."""
    code = main()
    gc.freeze()
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    commands = {
        "simulate": _simulate,
        "theory": _theory,
        "check": _check,
        "plan": _plan,
        "report": _report,
        "render": lambda a: _render(a.project, a.renderer),
    }
    try:
        return commands[args.command](args)
    except DesignError as exc:
        print(f"study: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:  # a full disk, a folder without write permission, …
        where = f": {exc.filename}" if exc.filename else ""
        print(f"study: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("study: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if args.debug:
            raise
        log = _write_traceback()
        print(
            f"study: error: {exc.__class__.__name__}: {_one_line(exc)} (traceback in {log}; "
            "--debug shows it here)",
            file=sys.stderr,
        )
        return EXIT_FAILURE


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] + ("…" if len(text) > 300 else "")


def _write_traceback() -> str:
    """Write the current traceback to a new log file in the temporary folder; its path."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    fd, path = tempfile.mkstemp(prefix=f"study-error-{stamp}-", suffix=".log")
    with os.fdopen(fd, "w") as fh:
        fh.write(f"study {' '.join(sys.argv[1:])}\n\n")
        traceback.print_exc(file=fh)
    return path
