"""Methods, generated from the study file's settings, with definitions and code lists."""

from __future__ import annotations

import pandas as pd

from hospstudy.report.format import esc, table_html
from hospstudy.report.labels import label
from hospstudy.report.results import MODEL_LABELS
from hospstudy.report.sections import Context, SectionSpec
from hospstudy.report.tables import ReportTable


def build(ctx: Context) -> list[str]:
    return [methods_html(ctx.inp.study, ctx.t)]


SECTION = SectionSpec("methods", "Methods", build, record=("6.1", "7.1"))


def methods_html(study: dict, threshold: int) -> str:
    from markupsafe import Markup

    st = study.get("study", {}) or {}
    parts = []
    fy = st.get("fiscal_years")
    parts.append(f"We used {st.get('database') or 'an administrative inpatient database in the DPC layout'}"
                 + (f", fiscal years {fy[0]}–{fy[1]}" if fy else "") + ".")
    coh = study.get("cohort", {}) or {}
    idx = coh.get("index", {}) or {}
    if idx:
        parts.append(f"The index event was {idx.get('description') or 'the first qualifying procedure of the admission'} "
                     f"(code list '{idx.get('procedures', '')}').")
    steps = coh.get("steps", []) or []
    if steps:
        parts.append("The cohort was selected in " + str(len(steps)) + " ordered steps: "
                     + "; ".join(f"({i}) {s.get('description') or s.get('name')}" for i, s in enumerate(steps, 1)) + ".")
    defs = []
    for sec, word in (("exposures", "Exposure"), ("covariates", "Covariate"), ("outcomes", "Outcome")):
        for k, v in (study.get(sec, {}) or {}).items():
            if isinstance(v, dict) and v.get("keep") is False:
                continue
            defs.append([word, label(k), k, v.get("description", "") if isinstance(v, dict) else ""])
    if defs:
        parts.append(f"The study file defines {sum(d[0] == 'Exposure' for d in defs)} exposures, "
                     f"{sum(d[0] == 'Covariate' for d in defs)} covariates and {sum(d[0] == 'Outcome' for d in defs)} "
                     "outcome columns (definitions below).")
    paragraphs = [" ".join(parts)]
    parts = []
    an = study.get("analyses", {}) or {}
    if an:
        models = ", ".join(MODEL_LABELS.get(m, m) for m in an.get("models", []))
        parts.append(f"Each outcome was modelled on each exposure ({', '.join(label(e) for e in an.get('exposures', []))}) "
                     f"adjusting for {', '.join(label(c) for c in an.get('covariates', []))}; models: {models} "
                     f"(clustered by {'hospital' if an.get('cluster', 'hospital_id') == 'hospital_id' else an['cluster']}); the first is primary. "
                     "Random-intercept odds ratios are conditional on the hospital; GEE and weighted ones are marginal.")
        if an.get("volume"):
            v = an["volume"]
            parts.append(f"Volume entered linearly per {v.get('per', 50)} cases, in quartiles and as a restricted cubic spline "
                         f"with {v.get('spline_knots', 4)} knots.")
        if an.get("weighting"):
            parts.append("Propensity-score weighting (" + ", ".join(an["weighting"].get("methods", ["iptw", "overlap"])) +
                         ") was checked by standardized mean differences; E-values quantify robustness to unmeasured confounding.")
        if an.get("competing_risks"):
            parts.append("Length of stay until discharge home was analysed with in-hospital death as a competing event "
                         "(cumulative incidence, cause-specific Cox and Fine–Gray models).")
        if an.get("profiling"):
            parts.append("Hospital variation: median odds ratio, intraclass correlation and funnel plots of risk-standardized rates.")
        if an.get("trends"):
            parts.append("Trends over fiscal years: Cochran–Armitage (proportions) and Jonckheere–Terpstra (continuous) tests.")
    paragraphs.append(" ".join(parts))
    paragraphs.append(f"Counts of patients or hospitals below {threshold} are suppressed (shown as <{threshold}) with complementary "
                      "suppression, following the DPC/NDB publication rules; no identifier leaves the private folder.")
    lists = study.get("codelists", {}) or {}
    blocks = [f"<p>{esc(x)}</p>" for x in paragraphs if x]
    if defs:
        blocks.append(table_html(ReportTable("definitions", "Definitions (from the study file)",
                                             pd.DataFrame(defs, columns=["Role", "Variable", "Column", "Definition"]))))
    if lists:
        rows = []
        for name, v in lists.items():
            if isinstance(v, dict):
                codes = " ".join(map(str, v.get("codes", []))) or (f"file {v.get('file')}" if v.get("file") else "")
                rows.append([name, v.get("description", ""), codes])
            else:
                rows.append([name, "", " ".join(map(str, v)) if isinstance(v, list) else str(v)])
        blocks.append(table_html(ReportTable("codelists", "Code lists (ICD-10 and K-codes; * = prefix)", pd.DataFrame(rows, columns=["List", "Description", "Codes"]))))
    return Markup("".join(blocks))
