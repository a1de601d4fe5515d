"""``OUT/report.html``: one self-contained, privacy-safe report.

:func:`render_report` builds the sections of :mod:`hospstudy.report.sections` (one module each,
in the order of the study's ``[report] sections``) from what is present — the attrition table,
the analytic dataset, the analyses' results, the study file, the database's ``truth.json`` and
the published reference — and says plainly when a piece is absent or an analysis failed. It
writes ``report.html`` (inline CSS and SVG, no external resource and no script, a
Content-Security-Policy that forbids any request; rendered with autoescaping, so only our own
markup reaches the page unescaped), ``tables.xlsx``, ``figures/*.svg|png`` and the
disclosure-safe ``attrition.csv``. :func:`build_report` re-renders from what a run stored in OUT
(``hospstudy report OUT``).
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import pandas as pd

from hospstudy.errors import InputError
from hospstudy.privacy import DEFAULT_THRESHOLD
from hospstudy.report.labels import study_labels
from hospstudy.report.results import Results
from hospstudy.report.sections import Context, build_sections, section_titles
from hospstudy.report.sections.checklist import RECORD_ITEMS, record_checklist  # noqa: F401  (public)
from hospstudy.report.sections.methods import methods_html  # noqa: F401  (public)
from hospstudy.report.sections.reference import planted_vs_estimated, published_vs_run  # noqa: F401  (public)
from hospstudy.report.tables import ReportTable, safe_attrition

#: (id, title) of the default sections, in order (the overview's title is the study's).
SECTION_TITLES = section_titles()


@dataclass
class ReportInputs:
    """Everything the report reads. Any piece may be None: its sections then say so."""

    study: dict
    attrition: pd.DataFrame | None = None  # exact counts (suppressed here)
    analytic: pd.DataFrame | None = None
    results: Results | None = None
    truth: dict | None = None
    run_info: dict = field(default_factory=dict)
    published: dict | None = None
    threshold: int = DEFAULT_THRESHOLD


@dataclass
class ReportArtifacts:
    html: Path
    xlsx: Path
    figures: list[Path]
    tables: list[ReportTable]
    sections: list[str]


# --------------------------------------------------------------------------------------------
# entry points
# --------------------------------------------------------------------------------------------
def _template():
    import jinja2

    text = resources.files("hospstudy.report").joinpath("templates/report.html.j2").read_text(encoding="utf-8")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.from_string(text)


def render_report(inputs: ReportInputs, out_dir: str | Path) -> ReportArtifacts:
    """Write report.html, tables.xlsx, figures/ and attrition.csv into ``out_dir``.

    Every count shown has passed the disclosure rules of :mod:`hospstudy.privacy`
    at ``inputs.threshold``. Sections whose inputs are absent say so in the report.
    """
    from hospstudy.report.xlsx import write_tables

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if (out_dir / "figures").is_dir():
        for f in (out_dir / "figures").iterdir():
            if f.suffix in (".svg", ".png"):
                f.unlink()
    st = inputs.study.get("study", {}) or {}
    title = st.get("title") or st.get("name") or "hospstudy report"
    ctx = Context(inputs, out_dir)
    with study_labels((inputs.study.get("report") or {}).get("labels")):
        sections = build_sections(ctx)
    html = _template().render(title=title, sections=sections, synthetic=inputs.truth is not None)
    path = out_dir / "report.html"
    path.write_text(html, encoding="utf-8")
    if inputs.attrition is not None:
        safe_attrition(inputs.attrition, inputs.threshold).to_csv(out_dir / "attrition.csv", index=False)
    tables = [t for sec in sections for t in sec.tables]
    xlsx = write_tables(tables, out_dir / "tables.xlsx", title=title, synthetic=inputs.truth is not None)
    return ReportArtifacts(path, xlsx, ctx.figures, tables, [s.title for s in sections])


def published_reference() -> dict:
    """The published figures copied into hospstudy (``report/published.toml``)."""
    text = resources.files("hospstudy.report").joinpath("published.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def load_inputs(out_dir: str | Path) -> ReportInputs:
    """What ``hospstudy run`` stored in OUT: run.json, study.toml, private/analytic.parquet,
    private/attrition.csv, private/analyses/results.json (else results.json) and the
    database's truth.json (the copy in private/, else the data folder recorded in run.json)."""
    out_dir = Path(out_dir)
    run_path = out_dir / "run.json"
    if not run_path.is_file():
        raise InputError(f"{out_dir}: no run.json; this folder was not written by `hospstudy run`")
    run_info = json.loads(run_path.read_text(encoding="utf-8"))
    study_path = out_dir / "study.toml"
    try:
        study = tomllib.loads(study_path.read_text(encoding="utf-8"))
    except (FileNotFoundError, tomllib.TOMLDecodeError) as e:
        raise InputError(f"{study_path}: cannot read the stored study file ({e})") from None
    priv = out_dir / "private"
    attrition = pd.read_csv(priv / "attrition.csv") if (priv / "attrition.csv").is_file() else None
    analytic = pd.read_parquet(priv / "analytic.parquet") if (priv / "analytic.parquet").is_file() else None
    res_path = next((p for p in (priv / "analyses" / "results.json", out_dir / "results.json") if p.is_file()), None)
    results = Results.load(res_path) if res_path else None
    truth = None
    data_dir = run_info.get("data")
    if (priv / "truth.json").is_file():
        truth = json.loads((priv / "truth.json").read_text(encoding="utf-8"))
    elif data_dir and (Path(data_dir) / "truth.json").is_file():
        truth = json.loads((Path(data_dir) / "truth.json").read_text(encoding="utf-8"))
    return ReportInputs(study, attrition, analytic, results, truth, run_info, published_reference(),
                        int(run_info.get("threshold", DEFAULT_THRESHOLD)))


def build_report(out_dir: str | Path) -> ReportArtifacts:
    """Re-render the report of a run from what it stored in ``out_dir``."""
    return render_report(load_inputs(out_dir), out_dir)

