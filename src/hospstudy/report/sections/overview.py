"""Section 1: the study, its data source and the run (title, period, engine, versions, input checksums)."""

from __future__ import annotations

from hospstudy.report.format import dl, esc
from hospstudy.report.sections import Context, SectionSpec


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
    return blocks


SECTION = SectionSpec("overview", None, build, record=("1.1", "1.2"))
