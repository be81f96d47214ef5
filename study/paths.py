"""Where things live. Every default path of the package comes from here.

Paths are relative to the working directory, which is the repository root when the
Makefile runs the package; every command that writes takes an option to override them.
"""

from __future__ import annotations

from pathlib import Path

SIMULATIONS_DIR = Path("simulations")
RESULTS_ROOT = SIMULATIONS_DIR / "results"
REPORT_DIR = Path("report")
GENERATED_DIR = REPORT_DIR / "_generated"

SUMMARY_FILE = "summary.csv"
RISK_FILE = "risk.csv"
DRAWS_FILE = "draws.npz"
MANIFEST_FILE = "manifest.json"
TUNING_FILE = "tuning.csv"
TRANSFER_FILE = "transfer.csv"
RISK_CURVES_FILE = "risk_curves.csv"
MATCHED_FILE = "matched.csv"
SENSITIVITY_FILE = "sensitivity.csv"
BASES_FILE = "bases.csv"
MINIBATCH_FILE = "minibatch.csv"  # only for a design with [minibatch]
FITS_FILE = "fits.csv"
CHECK_FILE = "check.csv"
CHECKPOINT_DIR = "checkpoints"
# the files the theory step writes (`study theory`; left out by --no-theory)
THEORY_FILES = (
    TUNING_FILE,
    TRANSFER_FILE,
    RISK_CURVES_FILE,
    MATCHED_FILE,
    SENSITIVITY_FILE,
    BASES_FILE,
    MINIBATCH_FILE,
)
RESULT_FILES = (
    SUMMARY_FILE,
    RISK_FILE,
    DRAWS_FILE,
    FITS_FILE,
    MANIFEST_FILE,
    *THEORY_FILES,
    CHECK_FILE,
)


def results_dir(name: str, root: Path = RESULTS_ROOT) -> Path:
    """Results folder of the design called ``name``."""
    return root / name
