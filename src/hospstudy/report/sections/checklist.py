"""The RECORD checklist: each item points to the sections of this report that answer it, or
says that the authors must write it. Built after every other section, from what they
rendered: an item is never "answered" by a section that was dropped or failed."""

from __future__ import annotations

import pandas as pd

from hospstudy.report.sections import Context, SectionSpec
from hospstudy.report.tables import ReportTable

#: (item, recommendation, what answers it when no section claims it)
RECORD_ITEMS = [
    ("1.1", "Type of data and databases used named in title/abstract", "To be written in the title and abstract"),
    ("1.2", "Geographic region and timeframe", "To be written in the abstract"),
    ("1.3", "Linkage between databases", "Not applicable: one database, no linkage"),
    ("6.1", "Methods of study population selection (codes and algorithms)", "Not in this report"),
    ("6.2", "Validation studies of the codes", "Not answered: cite validation studies of the codes in the manuscript"),
    ("6.3", "Linkage flow diagram", "Not applicable: no linkage"),
    ("7.1", "Complete list of codes and algorithms for exposures, outcomes, confounders", "Not in this report"),
    ("12.1", "Extent of investigator access to the database", "Not answered: the authors must state their access to the database"),
    ("12.2", "Data cleaning methods", "Not in this report"),
    ("12.3", "Linkage methods", "Not applicable: no linkage"),
    ("13.1", "Selection of persons in the population, flow diagram", "Not in this report"),
    ("19.1", "Limitations: misclassification, missing data, unmeasured confounding",
     "Not written: the authors must write the limitations"),
    ("22.1", "Access to protocol, raw data or programming code", "Not in this report"),
]

#: What a section contributes to an item (shown after its number and title).
WHAT = {
    ("overview", "1.1"): "data source named", ("overview", "1.2"): "study period",
    ("cohort-flow", "6.1"): "selection steps", ("methods", "6.1"): "codes and algorithms",
    ("methods", "7.1"): "definitions and code lists", ("cohort-flow", "12.2"): "records excluded at each step",
    ("cohort-flow", "13.1"): "flow diagram", ("table1", "19.1"): "missing values per variable (material for the limitations, which the authors must write)",
    ("weighting", "19.1"): "E-values for unmeasured confounding (material for the limitations, which the authors must write)",
    ("appendix", "22.1"): "study file checksum, software versions, seed, input checksums",
}


def build(ctx: Context) -> list[str]:
    return [ctx.add_table(record_checklist(ctx.sections))]


def record_checklist(sections=()) -> ReportTable:
    """The checklist for the sections rendered (``Section`` objects with ``record`` tags)."""
    rows = []
    for item, rec, fallback in RECORD_ITEMS:
        where = [f"Section {s.number} ({s.title if s.number > 1 else 'overview'}): {WHAT.get((s.id, item), 'see there')}"
                 for s in sorted(sections, key=lambda s: s.number) if item in s.record and not s.failed]
        rows.append([item, rec, "; ".join(where) if where else fallback])
    frame = pd.DataFrame(rows, columns=["RECORD item", "Recommendation", "Where this report answers it"])
    return ReportTable("record_checklist", "RECORD checklist (Benchimol et al. 2015)", frame,
                       ["Items this report cannot answer say what the manuscript must add."])


SECTION = SectionSpec("checklist", "RECORD checklist", build, last=True)
