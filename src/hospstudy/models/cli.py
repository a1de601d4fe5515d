"""CLI: ``hospstudy analyze STUDY.toml --cohort OUT/private/analytic.parquet --out OUT``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hospstudy.console import console


def _load_study(path: Path):
    """The study's [analyses] settings and its disclosure threshold. A whole study file is
    validated by the cohort stage's ``Study.load`` (every section, all problems at once); a
    file holding only an [analyses] table (to re-run analyses with other settings) is
    validated by that table and its [report] table alone."""
    from hospstudy.cohort import Study
    from hospstudy.cohort.spec import read_study_file, report_settings
    from hospstudy.errors import StudyFileError
    from hospstudy.models.analyses import load_spec

    doc = read_study_file(path)
    if "study" in doc or "cohort" in doc:
        study = Study.from_dict(doc, path)
        return load_spec(study), study.report.disclosure_threshold
    if "analyses" not in doc:
        raise StudyFileError(f"{path}: the study file has no analyses section", ["analyses: missing"])
    return load_spec(doc["analyses"]), report_settings(doc, path).disclosure_threshold


def _read_analytic(path: Path):
    import pandas as pd

    from hospstudy.errors import InputError

    if not path.exists():
        raise InputError(f"{path}: no analytic dataset here (run `hospstudy cohort` first)")
    try:
        return pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a file that is not Parquet
        raise InputError(f"{path}: cannot read the analytic dataset as Parquet ({type(e).__name__}: {e})") from None


def register(app: typer.Typer) -> None:
    @app.command()
    def analyze(
        study: Path = typer.Argument(..., help="Study file (TOML) whose analyses section says what to run."),
        cohort: Path = typer.Option(..., "--cohort", help="The analytic dataset, OUT/private/analytic.parquet."),
        out: Path = typer.Option(..., "--out", help="Output folder: results.parquet/.csv/.json (aggregate, small counts suppressed)."),
        seed: int = typer.Option(0, "--seed", help="Recorded with the results (the analyses are deterministic)."),
        threshold: Optional[int] = typer.Option(None, "--threshold", min=1, help="Counts from 1 to THRESHOLD-1 are written as <THRESHOLD; curve steps and funnel points rest on at least THRESHOLD patients or events (default: the study's [report] disclosure_threshold, else 10)."),
    ):
        """Run the study's analyses on an analytic dataset; write one tidy results table."""
        from hospstudy.models.analyses import run_analyses

        spec, study_threshold = _load_study(study)
        threshold = study_threshold if threshold is None else threshold
        data = _read_analytic(cohort)
        console.print(f"analyses of [bold]{study}[/] on {len(data):,} patients")
        res = run_analyses(spec, data, seed=seed, disclosure_threshold=threshold)
        public = res.write(out, threshold=threshold)
        res.write(out / "private" / "analyses", threshold=None)
        ok = res.table["error"].isna().sum()
        console.print(f"[green]✓[/] {ok:,} estimates, {len(res.failures)} failed analyses "
                      f"({res.meta['seconds']:.1f} s) → [bold]{public['json']}[/]")
        for f in res.failures:
            console.print(f"  [yellow]failed:[/] {f['analysis']} {f['outcome']} {f['exposure']} {f['model']}: {f['error']}",
                          soft_wrap=True)
