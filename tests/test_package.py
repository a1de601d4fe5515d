"""The package installs, its CLI answers, and errors follow one shape."""

import subprocess
import sys

import pytest

from hospstudy import __version__
from hospstudy.data.schema import TABLES, arrow_schema, fiscal_year
from hospstudy.errors import InputError, HospstudyError, param_error


def test_cli_help_and_version():
    r = subprocess.run([sys.executable, "-m", "hospstudy.cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    assert "hospstudy" in r.stdout.lower()
    r = subprocess.run([sys.executable, "-m", "hospstudy.cli", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and __version__ in r.stdout


@pytest.mark.parametrize(
    "y,m,d,fy", [(2013, 3, 31, 2012), (2013, 4, 1, 2013), (2020, 2, 29, 2019), (2020, 12, 31, 2020)]
)
def test_fiscal_year_edges(y, m, d, fy):
    import datetime as dt

    assert fiscal_year(dt.date(y, m, d)) == fy


def test_schema_covers_design():
    assert set(TABLES) == {"facilities", "admissions", "diagnoses", "procedures", "billing"}
    assert arrow_schema("admissions").field("adl_adm").nullable
    assert not arrow_schema("admissions").field("admission_id").nullable


def test_error_template_is_both_ours_and_builtin():
    e = param_error("mixed_logit", "nagq", "an integer in [1, 25]", 40)
    assert isinstance(e, ValueError) and isinstance(e, HospstudyError)
    assert str(e) == "The 'nagq' parameter of mixed_logit must be an integer in [1, 25]. Got 40 instead."
    assert issubclass(InputError, ValueError)


def test_cli_errors_keep_square_brackets():
    """Error messages quote field paths like steps[2]; rich must not eat them as markup."""
    code = (
        "from hospstudy.console import fail\n"
        "fail(\"cohort.steps[2].codes: unknown code list 'x'; known: [a, b]\", 2)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 2
    assert "steps[2]" in r.stderr and "[a, b]" in r.stderr
    assert "Traceback" not in r.stderr


def test_python_dash_m_is_the_cli():
    r = subprocess.run([sys.executable, "-m", "hospstudy", "validate", "/nonexistent-hospstudy-db"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "no such database folder" in r.stderr and "Traceback" not in r.stderr
