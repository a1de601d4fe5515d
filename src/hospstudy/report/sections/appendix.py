"""Appendix: how this run can be reproduced (run date, seed, engine, software, the study
file's and the input files' checksums)."""

from __future__ import annotations

import pandas as pd

from hospstudy.report.format import absent, dl
from hospstudy.report.sections import Context, SectionSpec
from hospstudy.report.tables import ReportTable


def build(ctx: Context) -> list[str]:
    st = ctx.inp.study.get("study", {}) or {}
    ri = ctx.inp.run_info
    items = [
        ("Study file", st.get("name", "")),
        ("Study file SHA-256", ri.get("study_sha256", "")),
        ("Run date (UTC)", ri.get("run_date", "")),
        ("Seed", str(ri.get("seed", ""))),
        ("Engine", ri.get("engine", "")),
        ("Software", ", ".join(f"{k} {v}" for k, v in (ri.get("versions") or {}).items())),
    ]
    blocks = [dl([(k, v) for k, v in items if v])]
    hashes = ri.get("input_hashes") or {}
    if hashes:
        rows = pd.DataFrame({"File": list(hashes), "SHA-256": list(hashes.values())})
        blocks.append(ctx.add_table(ReportTable("input_hashes", "Input files and their SHA-256 checksums", rows)))
    elif ri.get("input_hashes_note"):
        blocks.append(absent(ri["input_hashes_note"]))
    else:
        blocks.append(absent("Input file checksums were not recorded (the report was rendered outside `hospstudy run`)."))
    return blocks


SECTION = SectionSpec("appendix", "Appendix: reproducing this run", build, record=("22.1",))
