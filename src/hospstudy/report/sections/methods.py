"""Methods, written from the settings objects that ran: the validated ``[analyses]`` table
(:class:`hospstudy.models.spec.AnalysesSpec`: models, quadrature points, GEE working
correlation, reference levels, adjustment sets, ...), the cohort's steps as the attrition
table numbers them, and the study file's definitions and code lists. Nothing here is typed
by hand about a particular study, so Methods cannot disagree with the tables."""

from __future__ import annotations

import pandas as pd
from markupsafe import Markup

from hospstudy.errors import StudyFileError
from hospstudy.models.spec import AnalysesSpec
from hospstudy.report.format import esc, table_html
from hospstudy.report.labels import label, level_label
from hospstudy.report.sections import Context, SectionSpec
from hospstudy.report.tables import ReportTable


def build(ctx: Context) -> list[str]:
    return [methods_html(ctx.inp.study, ctx.t, ctx.inp.attrition, add=ctx.add_table)]


SECTION = SectionSpec("methods", "Methods", build, record=("6.1", "7.1"))


def _spec(study: dict) -> AnalysesSpec | None:
    an = study.get("analyses")
    if not an:
        return None
    try:
        return AnalysesSpec.from_table(an)
    except (StudyFileError, ValueError):
        return None


def _join(items: list[str]) -> str:
    items = [i for i in items if i]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


_PROPER = ("BMI", "Charlson", "Barthel", "Japan", "Katagiri", "Fine", "GEE", "ICU", "Q")


def _lower(name: str) -> str:
    """A label as it reads inside a sentence: units after a comma dropped ('Age, years' → 'age'),
    the first letter lower-cased unless it starts a proper name or an abbreviation."""
    s = name.split(", ", 1)[0]
    if s.startswith(_PROPER) or s[:2].isupper() or s[:1].isdigit():
        return s
    return s[:1].lower() + s[1:]


def cohort_text(study: dict, attrition: pd.DataFrame | None) -> list[str]:
    st = study.get("study", {}) or {}
    fy = st.get("fiscal_years")
    out = [f"We used the {st.get('database') or 'administrative inpatient database'}"
           + (f", fiscal years {fy[0]}–{fy[1]} (April to March)" if fy else "") + "."]
    idx = ((study.get("cohort") or {}).get("index") or {})
    if idx.get("description"):
        out.append(f"The index event was {idx['description']}.")
    if attrition is not None and len(attrition):
        a = attrition.sort_values("step")
        first = a.iloc[0]
        steps = a.iloc[1:]
        out.append(f"Starting from {first['description'] or first['name']} (step {int(first['step'])} of the flow diagram), the "
                   f"cohort was selected in {len(steps)} ordered steps, numbered as in the flow diagram: "
                   + "; ".join(f"({int(r.step)}) {r.description or r.name}" for r in steps.itertuples()) + ".")
    else:
        steps = (study.get("cohort") or {}).get("steps", []) or []
        if steps:
            out.append(f"The cohort was selected in {len(steps)} ordered steps: "
                       + "; ".join(f"({i}) {s.get('description') or s.get('name')}" for i, s in enumerate(steps, 1)) + ".")
    return out


_MODEL_TEXT = {
    "mixed_logit": ("random-intercept logistic regression with the hospital as random effect, fitted by maximum likelihood "
                    "with adaptive Gauss–Hermite quadrature ({q}); its odds ratios are conditional (within hospital)"),
    "gee_logit": ("logistic regression by generalized estimating equations with {corr} working correlation within hospitals "
                  "and robust (sandwich) standard errors; its odds ratios are marginal (population-averaged)"),
    "logit": "ordinary logistic regression by maximum likelihood, ignoring clustering (unclustered standard errors)",
}


def analyses_text(spec: AnalysesSpec, study: dict) -> list[str]:
    out = []
    q = "nAGQ = 1, the Laplace approximation" if spec.nagq == 1 else f"nAGQ = {spec.nagq} quadrature points"
    descr = [_MODEL_TEXT[m].format(q=q, corr=spec.gee_corr) for m in spec.models]
    out.append(f"Each binary outcome ({_join([_lower(label(o)) for o in spec.binary_outcomes])}) was modelled on the exposures "
               f"({_join([_lower(label(e)) for e in spec.exposures])}) by " + "; by ".join(descr) + ". "
               f"The {_lower(label(spec.primary_model))} model is primary; the others are sensitivity analyses.")
    adj = []
    if "alone" in spec.adjustment:
        adj.append("each exposure alone with the covariates")
    if "mutual" in spec.adjustment:
        adj.append("all exposures together with the covariates (mutually adjusted)")
    answer = "mutually adjusted" if "mutual" in spec.adjustment else "single-exposure"
    out.append(f"Adjustment sets: {_join(adj)}; the study question is answered by the {answer} primary model.")
    if spec.covariates:
        cov = [_lower(label(c)) for c in spec.covariates]
        out.append(f"Covariates: {_join(cov)}.")
        cats = [c for c in spec.covariates if c in spec.reference]
        if cats:
            out.append("Reference levels: " + "; ".join(f"{_lower(label(c))}: {level_label(c, spec.reference[c])}" for c in cats)
                       + "; other categorical covariates take their most frequent level as reference"
                       + (f"; {_join([_lower(label(c)) for c in spec.categorical])} entered as categories" if spec.categorical else "")
                       + ".")
    missing_levels = [c for c in spec.covariates
                      if isinstance((study.get("covariates") or {}).get(c), dict) and (study["covariates"][c].get("missing_label"))]
    miss = ("Missing data: complete-case analysis, a patient with a missing value in any variable of a model is left out of "
            "that model")
    if missing_levels:
        miss += f"; missing values of {_join([_lower(label(c)) for c in missing_levels])} form their own category, so those patients stay in"
    among = [o for o in spec.binary_outcomes if isinstance((study.get("outcomes") or {}).get(o), dict) and study["outcomes"][o].get("among")]
    if among:
        miss += (f"; {_join([_lower(label(o)) for o in among])} is defined only for the patients its definition names "
                 "(see Definitions), and its models use those patients")
    out.append(miss + ".")
    pct = f"{100 * spec.conf_level:g}%"
    out.append(f"Intervals are {pct} confidence intervals; tests are two-sided.")
    v = spec.volume
    if v is not None:
        parts = [f"annual hospital volume entered linearly per {v.per:g} cases"]
        if v.quartiles:
            parts.append(f"in quartiles (reference Q{v.quartile_reference})")
        if v.spline:
            ref = "the median volume" if v.reference_volume == "median" else f"{v.reference_volume:g} cases"
            parts.append(f"as a restricted cubic spline with {v.spline_knots} knots at Harrell's percentiles, by "
                         f"{_lower(label(v.model))} regression, relative to {ref}")
        out.append("Volume: " + _join(parts) + ".")
    w = spec.weighting
    if w is not None:
        meth = _join([{"iptw": "inverse probability of treatment weights (average treatment effect"
                       + (", stabilized" if w.stabilized else "") + ")", "overlap": "overlap weights"}[m] for m in w.methods])
        out.append(f"Propensity scores for {_lower(label(w.exposure))} came from a logistic model of the covariates; {meth} "
                   + (f"(patients with a score outside [{w.trim:g}, {1 - w.trim:g}] dropped) " if w.trim else "")
                   + "gave weighted logistic models with cluster-robust standard errors; balance was checked by standardized "
                   "mean differences" + ("; E-values quantify robustness to unmeasured confounding" if w.evalues else "") + ".")
    cr = spec.competing_risks
    if cr is not None:
        states = [cr.state_label(k) for k in cr.causes]
        exps = _join([_lower(label(e)) for e in (cr.exposures or spec.exposures)])
        models = []
        if "cause_specific" in cr.models:
            models.append(f"cause-specific Cox models of {states[0]} (Efron ties; patients leaving by another state censored at that time)")
        if "fine_gray" in cr.models:
            models.append(f"Fine–Gray subdistribution hazard models of {states[0]} with {_join(states[1:])} competing")
        out.append(f"{label(cr.outcome)}: time from surgery to leaving hospital, in {len(states)} competing states "
                   f"({_join(states)}); none is treated as censoring. Aalen–Johansen cumulative incidence curves by exposure "
                   f"group, and {_join(models)}, on {exps}"
                   + (", adjusted for the covariates" if cr.adjusted else ", unadjusted")
                   + ", with robust standard errors clustered by hospital.")
    if spec.hospital_variation:
        out.append("Hospital variation: the random-intercept variance of the primary model gives the median odds ratio and the "
                   "intraclass correlation (latent scale).")
    pr = spec.profiling
    if pr is not None:
        out.append(f"Risk-standardized {_lower(label(pr.outcome))} per hospital (observed over expected from a logistic case-mix "
                   f"model, times the overall rate) is shown in a funnel plot with {_join([f'{100 * c:g}%' for c in pr.limits])} "
                   f"{'exact binomial' if pr.method == 'exact' else 'normal-approximation'} control limits.")
    tr = spec.trends
    if tr is not None:
        out.append(f"Trends over {_lower(label(tr.by))}: Cochran–Armitage test for {_join([_lower(label(c)) for c in tr.proportions])}"
                   + (f"; Jonckheere–Terpstra test for {_join([_lower(label(c)) for c in tr.continuous])}" if tr.continuous else "")
                   + ".")
    return out


def methods_html(study: dict, threshold: int, attrition: pd.DataFrame | None = None, add=table_html) -> Markup:
    """Methods paragraphs, then the definitions and code lists (``add`` renders a table: the
    context's, so that they reach tables.xlsx as sheets)."""
    paragraphs = [" ".join(cohort_text(study, attrition))]
    spec = _spec(study)
    if spec is not None:
        paragraphs.append(" ".join(analyses_text(spec, study)))
    paragraphs.append(f"Counts of patients or hospitals below {threshold} are suppressed (shown as <{threshold}), with complementary "
                      "suppression where a total would reveal them, following the DPC and NDB publication rules; no identifier "
                      "leaves the private folder.")
    blocks = [f"<p>{esc(x)}</p>" for x in paragraphs if x]
    defs = []
    for sec, word in (("exposures", "Exposure"), ("covariates", "Covariate"), ("outcomes", "Outcome")):
        for k, v in (study.get(sec, {}) or {}).items():
            if isinstance(v, dict) and v.get("keep") is False:
                continue
            defs.append([word, label(k), k, v.get("description", "") if isinstance(v, dict) else ""])
    if defs:
        blocks.append(add(ReportTable("definitions", "Definitions (from the study file)",
                                      pd.DataFrame(defs, columns=["Role", "Variable", "Column", "Definition"]))))
    lists = study.get("codelists", {}) or {}
    if lists:
        rows = []
        for name, v in lists.items():
            if isinstance(v, dict):
                codes = " ".join(map(str, v.get("codes", []))) or (f"file {v.get('file')}" if v.get("file") else "")
                rows.append([name, v.get("description", ""), codes])
            else:
                rows.append([name, "", " ".join(map(str, v)) if isinstance(v, list) else str(v)])
        blocks.append(add(ReportTable("codelists", "Code lists (ICD-10 and K-codes; * = prefix)",
                                      pd.DataFrame(rows, columns=["List", "Description", "Codes"]))))
    return Markup("".join(blocks))
