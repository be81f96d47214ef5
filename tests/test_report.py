"""The report: assets from results, both renderings, no hand-typed results, conventions."""

import re
import shutil
import subprocess

import numpy as np
import pytest

from study.report.assets import build_assets
from study.report.render import render

from conftest import ROOT, run_cli

FIGURES = [
    "fig-curves",
    "fig-tail",
    "fig-bias",
    "fig-variance",
    "fig-mse",
    "fig-bias-sd",
    "fig-distributions",
    "fig-risk-lambda",
    "fig-tuned",
    "fig-matched",
    "fig-degrees",
    "fig-bases",
]
TABLES = [
    "tbl-scalings",
    "tbl-conventions",
    "tbl-check",
    "tbl-measures",
    "tbl-tuning",
    "tbl-benefit",
    "tbl-transfer",
    "tbl-tune-once",
    "tbl-sensitivity",
    "tbl-provenance",
]


LOGISTIC_FIGURES = ["fig-logistic-separation", "fig-logistic-bias", "fig-logistic-tuned"]


@pytest.fixture(scope="module")
def rendered(smoke_results, logistic_results, tmp_path_factory):
    root = tmp_path_factory.mktemp("repository")
    project = root / "report"
    project.mkdir()
    for name in ("report.qmd", "_quarto.yml", "references.bib"):
        shutil.copy(ROOT / "report" / name, project / name)
    # _quarto.yml names the Typst header by its place in the repository
    shutil.copytree(ROOT / "study" / "report" / "templates", root / "study/report/templates")
    names = build_assets(
        smoke_results,
        out_dir=project / "_generated",
        report_dir=project,
        logistic_dir=logistic_results,
    )
    result = render(project, renderer="fallback")
    return project, names, result


def test_assets_are_built_from_results(rendered):
    project, names, _ = rendered
    for fig in FIGURES + LOGISTIC_FIGURES:
        assert (project / "_generated" / f"{fig}.svg").stat().st_size > 1000
        assert (project / "_generated" / f"{fig}.png").stat().st_size > 1000
    for tbl in TABLES:
        text = (project / "_generated" / f"{tbl}.md").read_text()
        assert f"{{#{tbl}}}" in text and text.count("|") > 10
    assert "_variables.yml" in names


def test_no_table_caption_ends_in_an_abbreviation_pandoc_knows(rendered):
    """A caption ending in e.g. "c." makes pandoc glue the {#tbl-…} label to it with a
    non-breaking space: under Quarto the table loses its caption and number and every
    reference to it shows ?@tbl-…. Checked against pandoc's own list of abbreviations."""
    import pypandoc

    listing = subprocess.run(
        [pypandoc.get_pandoc_path(), "--print-default-data-file", "abbreviations"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert "c." in listing and "e.g." in listing
    project, _, _ = rendered
    for tbl in TABLES:
        text = (project / "_generated" / f"{tbl}.md").read_text()
        caption = re.search(r"^: (.*) \{#tbl-[a-z-]+\}$", text, re.M)
        assert caption, tbl
        last = caption[1].split()[-1]
        assert last not in listing, (tbl, last)


def test_every_figure_table_and_reference_in_the_qmd_exists():
    qmd = (ROOT / "report" / "report.qmd").read_text()
    assert sorted(re.findall(r"\{#(fig-[a-z-]+)\}", qmd)) == sorted(FIGURES)
    assert sorted(re.findall(r"_generated/(tbl-[a-z-]+)\.md", qmd)) == sorted(TABLES)
    for ref in set(re.findall(r"@((?:fig|tbl)-[a-z-]+)", qmd)):
        assert ref in FIGURES + TABLES, ref


def test_html_is_complete_and_self_contained(rendered):
    _, _, result = rendered
    assert result.renderer == "fallback"
    html = result.html.read_text()
    assert "{{<" not in html and "_generated/" not in html
    assert not re.search(r"@(fig|tbl|sec|eq)-|\{#(fig|tbl|sec|eq)-", html)
    figures = len(FIGURES) + len(LOGISTIC_FIGURES) + ("fig-minibatch" in html)
    for n in range(1, figures + 1):
        assert f"Figure&nbsp;{n}" in html or f"Figure\u00a0{n}" in html
    assert "Logistic regression and neural networks" in html
    assert html.count("<table") == len(TABLES)
    assert html.count("<svg") + html.count("data:image") >= figures
    assert not re.search(r'<img[^>]+src="(?!data:)', html)
    # formulas as MathML, readable offline; nothing loaded from a CDN
    assert "<math" in html and "mathjax" not in html.lower()
    assert not re.search(r'<script[^>]+src="https?:', html)


def test_quarto_is_told_to_write_mathml():
    """Real Quarto's self-contained HTML loads MathJax from a CDN unless told otherwise."""
    import yaml

    config = yaml.safe_load((ROOT / "report" / "_quarto.yml").read_text())
    assert config["format"]["html"]["html-math-method"] == "mathml"
    assert config["format"]["html"]["embed-resources"] is True


def test_pdf_has_every_figure_and_table(rendered):
    from pypdf import PdfReader

    _, _, result = rendered
    reader = PdfReader(result.pdf)
    text = "\n".join(page.extract_text() for page in reader.pages)
    assert len(reader.pages) >= 5
    for n in range(1, len(FIGURES) + 1):
        assert re.search(rf"Figure\s*{n}:", text), n
    for n in range(1, len(TABLES) + 1):
        assert re.search(rf"Table\s*{n}:", text), n
    assert "{{<" not in text
    # no reference or label left as text, in the PDF as in the HTML
    assert not re.search(r"\?@|@(fig|tbl|sec|eq)-|\{#", text)


def test_no_result_is_typed_into_the_text():
    """Numbers in the prose come from variables: none with a decimal point or two digits,
    apart from citation years and constants of the design or the method (λ = 0, m = 3,
    ±1.96·MCSE, the 30 curves of a figure)."""
    qmd = (ROOT / "report" / "report.qmd").read_text()
    prose = re.sub(r"^---.*?---", "", qmd, flags=re.S)
    prose = re.sub(r"\$\$.*?\$\$|\$[^$]*\$", "", prose, flags=re.S)  # maths
    prose = re.sub(r"\{\{<.*?>\}\}|\{#[^}]*\}|\]\([^)]*\)", "", prose)  # shortcodes, labels
    numbers = re.findall(r"\d+(?:[.,]\d+)*", prose)
    constants = {"0", "1", "2", "3", "5", "30", "1.96"}  # λ = 0, m = 3, 1.96·MCSE, …
    allowed = constants | {n for n in numbers if re.fullmatch(r"(19|20)\d\d", n)}
    assert set(numbers) <= allowed, set(numbers) - allowed


def test_variables_are_all_defined(rendered):
    project, _, _ = rendered
    import yaml

    variables = yaml.safe_load((project / "_variables.yml").read_text())
    qmd = (ROOT / "report" / "report.qmd").read_text()
    for key in re.findall(r"\{\{< var ([a-z_.0-9]+) >\}\}", qmd):
        value = variables
        for part in key.split("."):
            value = value[part]
        assert isinstance(value, str) and value and value != "nan", key


def test_report_cli_refuses_missing_results(tmp_path):
    proc = run_cli("report", tmp_path / "nothing")
    assert proc.returncode == 2 and "expected a results folder" in proc.stderr


# --- the conventions table, row by row, where the library is installable ----------------


def test_render_cli_refuses_a_folder_without_quarto_project(tmp_path):
    proc = run_cli("render", tmp_path)
    assert proc.returncode == 2 and "_quarto.yml" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def _transfer(rows):
    import pandas as pd

    cols = ["m0", "m", "degree", "scaling", "risk_ratio", "risk_ratio_se"]
    return pd.DataFrame(rows, columns=cols)


def test_tune_once_takes_the_worst_pair_in_each_direction():
    from study.report import tables

    transfer = _transfer(
        [
            # degree 5 under m: upwards the worst is 10 → 1,000, downwards 1,000 → 10
            (10, 100, 5, "m", 1.02, 0.001),
            (10, 1000, 5, "m", 1.10, 0.002),
            (100, 1000, 5, "m", 1.05, 0.001),
            (1000, 10, 5, "m", 2.50, 0.03),
            (100, 10, 5, "m", 1.30, 0.01),
            (1000, 100, 5, "m", 1.20, 0.004),
            (10, 10, 5, "m", 1.0, 0.0),  # the same m is neither direction
            (100, 100, 5, "m", 1.0, 0.0),
            (10, 1000, 5, "none", 40.0, 1.5),
            (1000, 10, 5, "none", 3.0, 0.2),
        ]
    )
    worst = tables.tune_once(transfer)
    up, down = worst.loc[(5, "m", "up")], worst.loc[(5, "m", "down")]
    assert (up.m0, up.m, up.extra, up.se) == (10, 1000, pytest.approx(0.10), 0.002)
    assert (down.m0, down.m, down.extra) == (1000, 10, pytest.approx(1.5))
    assert tables.tune_once_cell(up) == "+10.00 (0.20) % at 10 → 1,000"
    assert tables.tune_once_cell(down) == "2.500 (0.030)× at 1,000 → 10"
    text = tables.table_tune_once(transfer)
    assert "| 5 | up | +10.00 (0.20) % at 10 → 1,000 | 40.0 (1.5)× at 10 → 1,000 |" in text
    assert "| 5 | down | 2.500 (0.030)× at 1,000 → 10 | 3.00 (0.20)× at 1,000 → 10 |" in text
    assert "{#tbl-tune-once}" in text


def test_an_extra_risk_that_is_rounding_is_shown_as_such():
    from study.report import tables

    assert tables.extra_risk(4e-14, 2e-10) == "< 0.05 %"
    # a small extra risk with a large error is shown with it
    assert tables.extra_risk(1e-4, 0.01) == "+0.0 (1.0) %"
    # a gain beyond the rounding carries its own minus sign, and no plus before it
    assert tables.extra_risk(-0.01, 0.001) == "−1.00 (0.10) %"


def test_the_scalings_table_says_what_each_scaling_computes():
    """Its header, and each row's α and penalty read as formulas, against study.scaling at
    an m, λ and k where every scaling gives a different number."""
    from study.report.tables import table_scalings
    from study.scaling import alpha

    lines = table_scalings().splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["scaling", "penalty as written", "α = m·c"]
    m, lam, k = 37, 0.3, 3
    seen = set()
    for line in lines[2:6]:
        name, penalty, formula = (c.strip() for c in line.strip("|").split("|"))
        scaling = name.strip("`")
        as_python = formula.replace("√m", f"{m}**0.5").replace("·", "*")
        value = eval(as_python, {}, {"m": m, "λ": lam, "k": k})  # noqa: S307
        assert value == pytest.approx(alpha(lam, m=m, degree=k, scaling=scaling)), scaling
        # the penalty as written, (λ/2d)Σw², divides by d = m·λ/α
        divisor = penalty.removeprefix("(λ/2").removesuffix(")Σw²") or "1"
        d = eval(divisor.replace("√m", f"{m}**0.5"), {}, {"m": m, "k": k})  # noqa: S307
        assert m * lam / d == pytest.approx(value), scaling
        seen.add(scaling)
    assert seen == {"none", "m", "sqrt-m", "k"}


def test_the_check_table_shows_the_median_gap_to_theory_to_two_figures(smoke_results):
    """The last column of the check table: the median relative gap between Rao–Blackwell
    and the large-m theory at the largest m, over the comparisons the check counts, to two
    significant figures, recomputed here from check.csv's rows."""
    import math

    from study.check import check, counted_comparisons
    from study.numbers import fmt
    from study.report.tables import table_check

    result = check(smoke_results)
    table = result.table
    text = table_check(table, result)
    used = table[counted_comparisons(table)]
    for measure, name in (("bias", "bias"), ("var", "variance"), ("risk", "prediction risk")):
        big = used[(used.measure == measure) & (used.m == used.m.max()) & used.asym.notna()]
        gaps = [abs(r - a) / abs(a) for r, a in zip(big.rb, big.asym, strict=True) if a != 0]
        median = float(np.median(gaps)) if gaps else math.nan
        (row,) = [ln for ln in text.splitlines() if ln.startswith(f"| {name} |")]
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[-1] == fmt(median, 2), (name, cells[-1], median)
        assert fmt(median, 2) != fmt(median, 3), name  # the number of figures shows


def test_the_sensitivity_table_shows_the_numbers_of_sensitivity_csv(smoke_results):
    import pandas as pd

    from study.numbers import fmt
    from study.report.tables import table_sensitivity

    sens = pd.read_csv(smoke_results / "sensitivity.csv")
    degree = int(sens.degree.iloc[0])
    text = table_sensitivity(sens, degrees=[degree])
    rows = [ln for ln in text.splitlines() if ln.startswith(f"| {degree} |")]
    mine = sens[sens.degree == degree]
    assert len(rows) == len(mine)
    for row, (_, r) in zip(rows, mine.iterrows(), strict=True):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == fmt(r.noise_sd, 3) and cells[3] == fmt(r.alpha_m0, 3)
        assert cells[5] == fmt(r.alpha_limit, 3)


def test_report_refuses_a_gaussian_folder_as_logistic_in_one_line(smoke_results, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "_quarto.yml").write_text("project:\n  type: default\n")
    proc = run_cli(
        "report", smoke_results, "--logistic", smoke_results, "--no-render", "--project", project
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--logistic" in lines[0] and "gaussian" in lines[0]
    assert not (project / "_generated").exists()
