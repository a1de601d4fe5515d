"""Section 1: the study, its data source, and a key-results box (cohort size and the primary estimates, one line each)."""

from __future__ import annotations

from markupsafe import Markup

from hospstudy.privacy import fmt_count
from hospstudy.report.format import dl, esc, fmt_ci, ratio
from hospstudy.report.labels import label
from hospstudy.report.sections import Context, SectionSpec
from hospstudy.report.sections._results import adjustment, model_label, primary_row


def build(ctx: Context) -> list[str]:
    st = ctx.inp.study.get("study", {}) or {}
    ri = ctx.inp.run_info
    blocks = []
    if st.get("description"):
        blocks.append(f'<p class="question">{esc(st["description"])}</p>')
    fy = st.get("fiscal_years")
    items = [
        ("Data source", st.get("database") or ri.get("data_source", "")),
        ("Study period", f"fiscal years {fy[0]}–{fy[1]}" if fy else ""),
        ("Database", "synthetic (hospstudy synth)" if ctx.inp.truth is not None else "as supplied"),
        ("Disclosure threshold", f"counts of 1–{ctx.t - 1} shown as <{ctx.t}"),
    ]
    blocks.append(dl([(k, v) for k, v in items if v]))
    key = key_results(ctx)
    if key:
        blocks.insert(0, Markup('<div class="keyresults" id="key-results"><h3>Key results</h3><ul>'
                                + "".join(f"<li>{esc(x)}</li>" for x in key) + "</ul></div>"))
    return blocks


def key_results(ctx: Context) -> list[str]:
    """One line each: the cohort's size, then the primary estimate (primary model, mutually
    adjusted where run) of every exposure on the first outcome, and on the competing-risks
    outcome's event of interest."""
    lines = []
    df = ctx.inp.analytic
    st = ctx.inp.study.get("study", {}) or {}
    if df is not None:
        n_h = int(df["hospital_id"].nunique()) if "hospital_id" in df.columns else None
        fy = st.get("fiscal_years")
        lines.append(f"{fmt_count(len(df), ctx.t)} patients" + (f" in {fmt_count(n_h, ctx.t)} hospitals" if n_h else "")
                     + (f", fiscal years {fy[0]}–{fy[1]}" if fy else "") + ".")
    res = ctx.inp.results
    if res is None:
        return lines
    outcomes = ctx.binary_outcomes[:1]
    for o in outcomes:
        for e in ctx.exposures:
            row = primary_row(res, o, e, ctx.analyses)
            if row is not None:
                lines.append(f"{label(o)}, {_lower(label(e))}: OR {fmt_ci(*ratio(row))} "
                             f"({model_label(str(row['model']))}, {adjustment(str(row['analysis']), str(row['model']))}).")
    cr = ctx.analyses.get("competing_risks") or {}
    if cr.get("outcome"):
        names = (cr.get("state_labels") or {})
        event = names.get(str(cr.get("event", 1)), names.get(cr.get("event", 1), "the event of interest"))
        for e in ctx.exposures:
            row = primary_row(res, cr["outcome"], e, ctx.analyses, kind="competing")
            if row is not None:
                lines.append(f"{str(event).capitalize()}, {_lower(label(e))}: HR {fmt_ci(*ratio(row))} "
                             f"({model_label(str(row['model']))}, {adjustment(str(row['analysis']), str(row['model']))}).")
    return lines


def _lower(s: str) -> str:
    return s if s[:2].isupper() else s[:1].lower() + s[1:]


SECTION = SectionSpec("overview", None, build, record=("1.1", "1.2"))
