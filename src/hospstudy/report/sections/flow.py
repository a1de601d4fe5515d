"""Cohort flow: the flow diagram and the attrition table, from the exact attrition counts.

Each exclusion box states what the step excluded: the step's ``exclusion_label`` from the study
file, else its description negated in plain words (``not meeting: ...``), in full (wrapped, never
cut). Steps that exclude no one are not drawn; a note names them. Disclosure control hides as
few cells as the rule allows: a step that removes 1–9 admissions, patients or hospitals is
shown together with its neighbour (and the note says so), so every number shown is either 0,
at least the threshold, or a remaining total whose neighbours differ by at least the
threshold; only when the whole chain removes fewer than the threshold are counts hidden."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from hospstudy.privacy import fmt_count
from hospstudy.report import figures as F
from hospstudy.report.format import absent
from hospstudy.report.sections import Context, SectionSpec
from hospstudy.report.tables import ReportTable

UNITS = ("admissions", "patients", "hospitals")


@dataclass
class FlowStep:
    """One displayed step: one or more consecutive steps of the study shown together."""

    steps: list[int]
    names: list[str]
    excluded: list[str]  # what each step excluded, in words
    removed: dict[str, int]
    remaining: dict[str, int]


def exclusion_text(step: dict | None, description: str) -> str:
    """What a step excluded, in words: its ``exclusion_label``, else derived from its kind."""
    step = step or {}
    if step.get("exclusion_label"):
        return str(step["exclusion_label"])
    if step.get("first_per_patient"):
        return "later admissions of a patient already included"
    if step.get("exclude") is not None:
        return description
    return f"not meeting: {description}" if description else "not meeting the step's criterion"


def flow_steps(attrition: pd.DataFrame, study: dict, threshold: int) -> tuple[dict, list[FlowStep], list[str]]:
    """(the database row, the displayed steps, notes) from the exact attrition table."""
    a = attrition.sort_values("step").reset_index(drop=True)
    units = [u for u in UNITS if u in a.columns]
    cohort = study.get("cohort") or {}
    by_name = {s.get("name"): s for s in (cohort.get("steps") or []) if isinstance(s, dict)}
    if isinstance(cohort.get("index"), dict):
        by_name.setdefault(cohort["index"].get("name", "index_event"), {**cohort["index"], "include": True})
    first = {u: int(a.loc[0, u]) for u in units}
    raw = []
    for r in a.iloc[1:].itertuples(index=False):
        d = r._asdict()
        desc = str(d.get("description") or d.get("name"))
        raw.append(FlowStep([int(d["step"])], [str(d["name"])], [exclusion_text(by_name.get(d["name"]), desc)],
                            {u: int(d[f"{u}_removed"]) for u in units}, {u: int(d[u]) for u in units}))
    notes = []
    zero = [s for s in raw if not any(s.removed.values())]
    if zero:
        notes.append("Steps that excluded no one (not drawn): " + "; ".join(
            f"step {s.steps[0]} ({s.excluded[0]})" for s in zero) + ".")
    shown = [s for s in raw if any(s.removed.values())]

    def small(s):
        return any(0 < v < threshold for v in s.removed.values())

    merged = True
    while merged and len(shown) > 1:
        merged = False
        for i, s in enumerate(shown):
            if small(s):
                j = i + 1 if i + 1 < len(shown) else i - 1
                lo, hi = sorted((i, j))
                a_, b_ = shown[lo], shown[hi]
                shown[lo:hi + 1] = [FlowStep(a_.steps + b_.steps, a_.names + b_.names, a_.excluded + b_.excluded,
                                             {u: a_.removed[u] + b_.removed[u] for u in units}, b_.remaining)]
                merged = True
                break
    for s in shown:
        if len(s.steps) > 1:
            notes.append(f"Steps {', '.join(map(str, s.steps[:-1]))} and {s.steps[-1]} are shown together: one of them alone "
                         f"excluded fewer than {threshold} admissions, patients or hospitals.")
    return first, shown, notes


def build(ctx: Context) -> list[str]:
    if ctx.inp.attrition is None:
        return [absent("No attrition table: the cohort stage did not run.")]
    first, shown, notes = flow_steps(ctx.inp.attrition, ctx.inp.study, ctx.t)
    t = ctx.t
    # the one case merging cannot solve: the whole chain removes 1..t-1 of a unit
    hide = {u: len(shown) == 1 and 0 < shown[0].removed.get(u, 0) < t for u in first}
    units = list(first)
    boxes = [{"title": "All admissions in the database", **{u: fmt_count(first[u], t) for u in units}}]
    for k, s in enumerate(shown):
        title = "Study cohort" if k == len(shown) - 1 else f"After step {s.steps[-1]}"
        boxes.append({"title": title, "excluded": "; ".join(s.excluded),
                      **{u: fmt_count(s.remaining[u], t, hide[u]) for u in units},
                      **{f"{u}_removed": fmt_count(s.removed[u], t) for u in units}})
    fig = F.flow_diagram(boxes, units)
    cap = ("Cohort flow diagram: admissions, patients and hospitals remaining after each step (left) and those each step "
           "excluded (right). " + " ".join(notes))
    rows = []
    for k, s in enumerate(shown):
        b = boxes[k + 1]
        rows.append({"Step": ", ".join(map(str, s.steps)), "Excluded": "; ".join(s.excluded),
                     **{f"{u.capitalize()} excluded": b[f"{u}_removed"] for u in units},
                     **{f"{u.capitalize()} remaining": b[u] for u in units}})
    frame = pd.DataFrame(rows)
    table = ReportTable("attrition", "Cohort selection", frame,
                        notes + [f"Counts of 1–{t - 1} are shown as <{t}. Before step 1: "
                                 + "; ".join(f"{boxes[0][u]} {u}" for u in units) + "."])
    return [ctx.add_figure("flow", fig, cap), ctx.add_table(table)]


SECTION = SectionSpec("cohort-flow", "Cohort flow", build, record=("6.1", "12.2", "13.1"))

