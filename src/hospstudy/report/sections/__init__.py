"""The report's sections: one module each, in an order a study file can change.

Each module defines ``SECTION``, a :class:`SectionSpec`: its id, title, the function that
builds it from the run's stored inputs (through a :class:`Context`) and the RECORD checklist
items it answers. :data:`DEFAULT_ORDER` is the flagship's order; a study file reorders or
drops sections with ``[report] sections = ["overview", "flow", ...]`` (:func:`section_order`).

A section's function returns its blocks (HTML made with :mod:`hospstudy.report.format`); the
tables and figures it adds through the context are recorded on its :class:`Section`, so the
checklist, the xlsx workbook and the numbering see exactly what was rendered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pandas as pd
from markupsafe import Markup

from hospstudy.errors import StudyFileError
from hospstudy.report import figures as F
from hospstudy.report.format import absent, failed, figure_html, is_bool, table_html
from hospstudy.report.spec import DEFAULT_SECTIONS
from hospstudy.report.tables import ReportTable

if TYPE_CHECKING:
    from hospstudy.report.html import ReportInputs

DEFAULT_COVARIATES = [
    "age", "age_group", "sex", "bmi", "bmi_group", "charlson", "barthel_adm", "walking_adm", "jcs_group", "emergency",
    "ambulance", "primary_site", "katagiri_group", "visceral_mets", "brain_mets", "spinal_level", "surgery_type",
    "teaching", "fiscal_year",
]
#: Sections whose tables are numbered as supplementary (Table S1, ...).
SUPPLEMENTARY_SECTIONS = ("cohort-flow", "methods", "checklist", "appendix")
BINARY_OUTCOMES = ["death_30d", "in_hospital_death", "complication", "unfavorable_ambulatory", "discharged_home"]


@dataclass(frozen=True)
class SectionSpec:
    """One section: ``build(ctx)`` returns its blocks; ``record`` the checklist items it answers.
    ``last``: built after every other section (it reads what they rendered)."""

    id: str
    title: str | None
    build: Callable[["Context"], list[str]]
    record: tuple[str, ...] = ()
    last: bool = False


@dataclass
class Section:
    """A rendered section: what the template and the checklist read."""

    id: str
    number: int
    title: str
    blocks: list[Markup] = field(default_factory=list)
    tables: list[ReportTable] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    record: tuple[str, ...] = ()
    failed: bool = False


class Context:
    """The run's stored inputs and the settings every section derives from them."""

    def __init__(self, inp: "ReportInputs", out_dir: Path):
        self.inp = inp
        self.out = out_dir
        self.fig_dir = out_dir / "figures"
        self.tables: list[ReportTable] = []
        self.figures: list[Path] = []
        self.sections: list[Section] = []
        self.current: Section | None = None
        self.t = inp.threshold
        an = inp.study.get("analyses", {}) or {}
        self.analyses = an
        df = inp.analytic
        self.exposures = [e for e in an.get("exposures", ["cancer_center", "volume_per50"])]
        self.binary_exposure = next((e for e in self.exposures if df is not None and e in df.columns and is_bool(df[e])), None)
        if self.binary_exposure is None and df is not None and "cancer_center" in df.columns:
            self.binary_exposure = "cancer_center"
        vol = an.get("volume", {}) or {}
        self.quartile_col = vol.get("quartile_column", "volume_quartile") or "volume_quartile"
        self.volume_col = vol.get("column", "volume")
        outs = list(an.get("outcomes", [])) or BINARY_OUTCOMES
        self.binary_outcomes = [o for o in outs if df is None or (o in df.columns and is_bool(df[o]))]
        if df is not None and not self.binary_outcomes:
            self.binary_outcomes = [o for o in BINARY_OUTCOMES if o in df.columns]
        self.covariates = self._covariates()
        self._n_tables = {False: 0, True: 0}
        self._n_figures = 0

    def _covariates(self) -> list[str]:
        df = self.inp.analytic
        study_cov = list((self.inp.study.get("covariates") or {}).keys())
        an_cov = list(self.analyses.get("covariates", []))
        order = study_cov or an_cov or DEFAULT_COVARIATES
        seen = []
        for c in order + [c for c in DEFAULT_COVARIATES if c not in order]:
            if df is not None and c in df.columns and c not in seen and c not in ("patient_id", "admission_id", "hospital_id"):
                seen.append(c)
        return seen

    def add_table(self, t: ReportTable) -> Markup:
        """Number the table (Table n, or Table Sn for supplementary ones), record it on the
        current section and return its HTML. Sections are built in display order, so the
        numbers follow the page."""
        supplementary = t.key.startswith("supp_") or (self.current is not None and self.current.id in SUPPLEMENTARY_SECTIONS)
        self._n_tables[supplementary] += 1
        t.title = f"Table {'S' if supplementary else ''}{self._n_tables[supplementary]}. {t.title}"
        self.tables.append(t)
        if self.current is not None:
            self.current.tables.append(t)
        return table_html(t)

    def add_figure(self, name: str, fig, caption: str) -> Markup:
        svg = F.save(fig, name, self.fig_dir)
        self.figures += [self.fig_dir / f"{name}.svg", self.fig_dir / f"{name}.png"]
        self._n_figures += 1
        if self.current is not None:
            self.current.figures.append(name)
        return figure_html(svg, f"Figure {self._n_figures}. {caption}", name)


def _registry() -> dict[str, SectionSpec]:
    from hospstudy.report.sections import (
        adjusted, appendix, checklist, crude, flow, los, methods, overview, reference, table1, trends, variation, volume, weighting,
    )

    mods = (overview, flow, table1, crude, adjusted, volume, weighting, los, variation, trends, reference, methods, checklist, appendix)
    return {m.SECTION.id: m.SECTION for m in mods}


DEFAULT_ORDER = DEFAULT_SECTIONS


def registry() -> dict[str, SectionSpec]:
    """Every section hospstudy can render, by id."""
    return _registry()


def section_order(study: dict) -> list[SectionSpec]:
    """The sections to render, in order: ``[report] sections`` of the study file, else
    :data:`DEFAULT_ORDER`. The overview always comes first (it carries the title)."""
    reg = _registry()
    want = (study.get("report") or {}).get("sections")
    if want is None:
        ids = list(DEFAULT_ORDER)
    else:
        if not isinstance(want, (list, tuple)) or not all(isinstance(x, str) for x in want):
            msg = f"report.sections: must be a list of section names from {list(DEFAULT_ORDER)}; got {want!r}"
            raise StudyFileError(msg, [msg])
        unknown = [x for x in want if x not in reg]
        if unknown:
            msg = f"report.sections: unknown section(s) {unknown}; allowed {list(DEFAULT_ORDER)}"
            raise StudyFileError(msg, [msg])
        dup = sorted({x for x in want if list(want).count(x) > 1})
        if dup:
            msg = f"report.sections: {dup} named more than once"
            raise StudyFileError(msg, [msg])
        ids = ["overview"] + [x for x in want if x != "overview"]
    return [reg[i] for i in ids]


def build_sections(ctx: Context) -> list[Section]:
    """Build every section of the study's order; a section that fails says so in the report
    instead of stopping it. Sections marked ``last`` are built after the others."""
    specs = section_order(ctx.inp.study)
    st = ctx.inp.study.get("study", {}) or {}
    title = st.get("title") or st.get("name") or "hospstudy report"
    built: dict[str, Section] = {}
    number = {s.id: k for k, s in enumerate(specs, start=1)}
    for spec in sorted(specs, key=lambda s: s.last):
        sec = Section(spec.id, number[spec.id], spec.title or title, record=spec.record)
        ctx.current = sec
        try:
            blocks = spec.build(ctx)
        except Exception as e:  # a report must render even when one of its parts cannot
            blocks = [failed(f"{spec.title or 'Overview'} could not be rendered: {type(e).__name__}: {e}")]
            sec.failed = True
        sec.blocks = [Markup(b) for b in blocks]
        ctx.current = None
        built[spec.id] = sec
        ctx.sections.append(sec)
    return [built[s.id] for s in specs]


def section_titles(study: dict | None = None) -> list[tuple[str, str | None]]:
    """(id, title) of the sections rendered for ``study`` (the default order without one)."""
    return [(s.id, s.title) for s in section_order(study or {})]


def from_results(*failure_words: str):
    """A section built from the analyses' results: without results it says so (one grey box);
    with them its blocks start with the failures of its analyses (names containing one of
    ``failure_words``; every failure when none is given). The wrapped ``build(ctx, results)``
    gets the results."""
    import functools

    def wrap(build):
        @functools.wraps(build)
        def section(ctx: Context) -> list[str]:
            r = ctx.inp.results
            if r is None:
                return [absent("No results: the analyses stage did not run.")]
            return [failed(m) for m in r.failed(*failure_words)] + build(ctx, r)

        return section

    return wrap


def frame_of(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows).fillna("")
