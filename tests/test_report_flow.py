"""The flow diagram and the attrition table (issue 10, item 2): exclusion boxes say what was
excluded, in full; steps that exclude no one are named in a note, not drawn; a small step is
shown with its neighbour instead of blanking cells. Counts written out by hand."""

import pandas as pd

from hospstudy.report.sections.flow import exclusion_text, flow_steps

STUDY = {"cohort": {"index": {"name": "surgery", "description": "admissions with surgery", "exclusion_label": "no surgery"},
                    "steps": [{"name": "dx", "description": "diagnosis recorded", "include": {}},
                              {"name": "adult", "description": "aged 18 or older", "exclusion_label": "aged under 18", "include": {}},
                              {"name": "period", "description": "in the study period", "include": {}},
                              {"name": "first", "description": "first per patient", "first_per_patient": True}]}}


def _attrition(rows):
    out, prev = [], None
    for k, (name, desc, adm, pat, hos) in enumerate(rows):
        r = {"step": k, "name": name, "description": desc, "admissions": adm, "patients": pat, "hospitals": hos}
        for u, v in (("admissions", adm), ("patients", pat), ("hospitals", hos)):
            r[f"{u}_removed"] = 0 if prev is None else prev[u] - v
        out.append(r)
        prev = r
    return pd.DataFrame(out)


A = _attrition([("database", "every admission", 100_000, 90_000, 300),
                ("surgery", "admissions with surgery", 5_000, 4_900, 200),
                ("dx", "diagnosis recorded", 1_200, 1_150, 150),
                ("adult", "aged 18 or older", 1_194, 1_144, 150),   # removes 6 admissions, 6 patients: small
                ("period", "in the study period", 1_194, 1_144, 150),  # removes no one
                ("first", "first per patient", 1_144, 1_144, 150)])  # removes 50 admissions, 0 patients


def test_exclusion_wording():
    assert exclusion_text({"exclusion_label": "aged under 18", "include": {}}, "aged 18 or older") == "aged under 18"
    assert exclusion_text({"include": {}}, "diagnosis recorded") == "not meeting: diagnosis recorded"
    assert exclusion_text({"exclude": {}}, "transfers in") == "transfers in"
    assert exclusion_text({"first_per_patient": True}, "first") == "later admissions of a patient already included"


def test_small_step_is_merged_with_its_neighbour_and_zero_steps_noted():
    first, shown, notes = flow_steps(A, STUDY, 10)
    assert first == {"admissions": 100_000, "patients": 90_000, "hospitals": 300}
    # step 3 (6 admissions, 6 patients) joins step 5 (50 admissions, 0 patients): still 6 patients,
    # so the pair joins step 2; step 1 stays alone
    assert [s.steps for s in shown] == [[1], [2, 3, 5]]
    assert shown[0].excluded == ["no surgery"]
    assert shown[1].excluded == ["not meeting: diagnosis recorded", "aged under 18", "later admissions of a patient already included"]
    assert shown[1].removed == {"admissions": 3_856, "patients": 3_756, "hospitals": 50}
    assert shown[1].remaining == {"admissions": 1_144, "patients": 1_144, "hospitals": 150}
    assert notes[1] == "Steps 2, 3 and 5 are shown together: one of them alone excluded fewer than 10 admissions, patients or hospitals."
    assert notes[0] == "Steps that excluded no one (not drawn): step 4 (not meeting: in the study period)."


def test_merging_leaves_no_small_removed_count():
    _, shown, _ = flow_steps(A, STUDY, 10)
    for s in shown:
        assert all(v == 0 or v >= 10 for v in s.removed.values()), s
    assert sum(s.removed["admissions"] for s in shown) + shown[-1].remaining["admissions"] == 100_000


def test_report_flow_section_has_no_cut_labels(tmp_path):
    from hospstudy.report.html import ReportInputs, render_report

    long = "hospital without a facility record in the fiscal year of surgery (exposures unknown), a long exclusion label"
    study = {"study": {"name": "x"}, "cohort": {"steps": [{"name": "dx", "exclusion_label": long, "include": {}}]}}
    att = _attrition([("database", "all", 1000, 900, 50), ("dx", "diagnosis recorded", 400, 380, 40)])
    art = render_report(ReportInputs(study=study, attrition=att), tmp_path)
    html = art.html.read_text(encoding="utf-8")
    flow = html.split('<section id="cohort-flow">', 1)[1].split("</section>", 1)[0]
    assert "…" not in flow
    svg = (tmp_path / "figures" / "flow.svg").read_text(encoding="utf-8")
    assert "…" not in svg and all(w in svg for w in long.replace("(", " ").replace(")", " ").replace(",", " ").split())
