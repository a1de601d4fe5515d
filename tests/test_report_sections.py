"""The report's structure: sections a study file can reorder or drop, the label map a study
can extend, and autoescaping (issue 11, class 9: a study's text never reaches the page as
markup)."""

import copy
import json
import re

import pytest

from hospstudy.errors import StudyFileError
from hospstudy.report.html import ReportInputs, published_reference, render_report
from hospstudy.report.labels import CODE_LIKE, code_like, label, level_label, study_labels
from hospstudy.report.results import Results
from hospstudy.report.sections import DEFAULT_ORDER, section_order
from test_report import STUDY, TRUTH, make_analytic, make_attrition, make_results

ATTACK = "<img src=x onerror=alert(1)>"


def _inputs(study, n=600, hospitals=30):
    df = make_analytic(n=n, hospitals=hospitals)
    return ReportInputs(study=study, attrition=make_attrition(len(df), len(df)), analytic=df,
                        results=Results.from_dict(json.loads(json.dumps(make_results()))), truth=TRUTH,
                        run_info={"run_date": "2026-01-01T00:00:00Z", "seed": 1}, published=published_reference())


def _visible(html: str) -> str:
    html = re.sub(r"<style.*?</style>", "", html, flags=re.S)
    return re.sub(r"<[^>]+>", " ", html)


def test_class_9_autoescape_study_text_is_text(tmp_path):
    study = copy.deepcopy(STUDY)
    study["study"]["title"] = ATTACK
    study["study"]["description"] = "<script>alert(2)</script>"
    study["cohort"]["steps"][2]["description"] = f"Aged 18 or over {ATTACK}"
    study["codelists"]["spinal_metastasis"]["description"] = ATTACK
    study["report"] = {"labels": {"death_30d": ATTACK}}
    html = render_report(_inputs(study), tmp_path).html.read_text(encoding="utf-8")
    assert "<img" not in html and "<script" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html  # shown, as text
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html
    # our own markup still renders: tables, figures (inline SVG), sections
    assert html.count("<svg") >= 5 and "<table" in html and '<section id="methods">' in html


def test_sections_follow_the_study_order_and_drop_the_rest(tmp_path):
    study = copy.deepcopy(STUDY)
    study["report"] = {"sections": ["table1", "cohort-flow", "checklist"]}
    art = render_report(_inputs(study), tmp_path)
    html = art.html.read_text(encoding="utf-8")
    ids = re.findall(r'<section id="([\w-]+)">', html)
    assert ids == ["overview", "table1", "cohort-flow", "checklist"]
    heads = re.findall(r"<h2>(\d+)\. ([^<]+)</h2>", html)
    assert [int(n) for n, _ in heads] == [2, 3, 4]
    assert 'id="fig-forest"' not in html and not (tmp_path / "figures" / "forest.svg").exists()
    # the checklist points only to sections rendered: no Methods (dropped) for the code lists
    check = html.split('<section id="checklist">', 1)[1]
    assert "(Methods)" not in check and "Section 3 (Cohort flow): flow diagram" in check
    assert "7.1</td><td>Complete list of codes and algorithms for exposures, outcomes, confounders</td><td>Not in this report" in check


@pytest.mark.parametrize("bad, words", [
    (["overview", "tabel1"], "unknown section(s) ['tabel1']"),
    (["table1", "table1"], "['table1'] named more than once"),
    ("table1", "must be a list of section names"),
])
def test_bad_section_lists_are_named_errors(bad, words):
    with pytest.raises(StudyFileError) as e:
        section_order({"report": {"sections": bad}})
    assert words in str(e.value)


def test_default_order_holds_every_registered_section():
    assert [s.id for s in section_order({})] == list(DEFAULT_ORDER)


def test_study_labels_extend_and_override_the_map():
    assert label("death_30d") == "30-day mortality" and level_label("sex", "M") == "Male"
    # levels written in lower case read like the others; American spelling; codes stay as written
    assert [level_label("primary_site", v) for v in ("lung", "unknown", "oesophagus", "head_neck", "C795", "Q1")] == [
        "Lung", "Unknown", "Esophagus", "Head and neck", "C795", "Q1"]
    with study_labels({"death_30d": "Death within 30 days", "sex=M": "Men", "my_col": "My column"}):
        assert label("death_30d") == "Death within 30 days"
        assert level_label("sex", "M") == "Men" and label("my_col") == "My column"
    assert label("death_30d") == "30-day mortality" and label("my_col") == "My col"


def test_no_code_like_identifier_in_visible_text(tmp_path):
    html = render_report(_inputs(copy.deepcopy(STUDY)), tmp_path).html.read_text(encoding="utf-8")
    text = _visible(html.split('<section id="methods">', 1)[0])  # Methods lists column names on purpose
    found = code_like(text)
    assert found == [], found


def test_study_file_with_an_unknown_section_fails_at_load(tmp_path):
    from hospstudy.report.spec import report_settings

    with pytest.raises(StudyFileError) as e:
        report_settings({"report": {"sections": ["overview", "tabel1"]}}, tmp_path / "s.toml")
    assert "report.sections" in str(e.value) and "unknown section(s) ['tabel1']" in str(e.value)
    ok = report_settings({"report": {"sections": ["overview", "table1"], "labels": {"sex=M": "Men"}}})
    assert ok.sections == ("overview", "table1") and ok.labels == {"sex=M": "Men"}


def _methods_text(study, attrition=None):
    from hospstudy.report.sections.methods import methods_html

    html = str(methods_html(study, 10, attrition))
    return re.sub(r"<[^>]+>", " ", html.split("<table", 1)[0])


def test_methods_are_written_from_the_settings_that_ran():
    study = copy.deepcopy(STUDY)
    study["analyses"].update({"nagq": 7, "gee_corr": "independence", "models": ["gee_logit", "mixed_logit", "logit"],
                              "reference": {"sex": "F"}})
    text = _methods_text(study)
    assert "nAGQ = 7 quadrature points" in text and "independence working correlation" in text
    assert "The GEE logistic model is primary" in text
    assert "ordinary logistic regression by maximum likelihood, ignoring clustering" in text
    assert "sex: Female" in text and "complete-case analysis" in text
    assert "study question is answered by the mutually adjusted primary model" in text
    study["analyses"].update({"nagq": 1, "adjustment": ["alone"]})
    text = _methods_text(study)
    assert "nAGQ = 1, the Laplace approximation" in text and "single-exposure primary model" in text
    for leak in ("docs/", "The study file defines", "clustered by hospital); the first is primary"):
        assert leak not in text


def test_methods_number_the_steps_as_the_flow_diagram_does():
    att = make_attrition(3000, 3000)
    text = _methods_text(copy.deepcopy(STUDY), att)
    n = len(att) - 1
    assert f"selected in {n} ordered steps, numbered as in the flow diagram" in text
    assert f"({n}) First admission per patient" in text and "(step 0 of the flow diagram)" in text


def test_xlsx_numbers_are_numbers_and_definitions_have_sheets(tmp_path):
    import openpyxl

    art = render_report(_inputs(copy.deepcopy(STUDY)), tmp_path)
    wb = openpyxl.load_workbook(art.xlsx)
    assert {"definitions", "codelists"} <= set(wb.sheetnames)
    numeric_text, numbers = [], 0
    for ws in wb.worksheets:
        for row in ws.iter_rows(min_row=4, min_col=2):
            for c in row:
                if isinstance(c.value, (int, float)):
                    numbers += 1
                elif isinstance(c.value, str) and re.fullmatch(r"-?[\d,]+(\.\d+)?%?", c.value.strip()):
                    numeric_text.append((ws.title, c.coordinate, c.value))
    assert numeric_text == [] and numbers > 100
    ws = wb["attrition"]
    header = [c.value for c in ws[3]]
    col = header.index("Admissions excluded") + 1
    assert isinstance(ws.cell(row=4, column=col).value, int) and ws.cell(row=4, column=col).number_format == "#,##0"


def test_figures_at_300_dpi_and_japanese_text_has_glyphs(tmp_path):
    import warnings

    from PIL import Image

    from hospstudy.report import figures as F

    fig, ax = F._figure()
    ax.set_title("脊椎転移の手術 (spinal metastasis)")
    ax.plot([0, 1], [0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns "Glyph ... missing from font(s)" for an empty box
        svg = F.save(fig, "ja", tmp_path)
    assert "<text" not in svg  # Japanese drawn as paths: no font needed in the reader's browser
    dpi = Image.open(tmp_path / "ja.png").info["dpi"]
    assert min(dpi) >= 299.9
    fig, ax = F._figure()
    ax.set_title("Latin only")
    assert "<text" in F.save(fig, "latin", tmp_path)  # searchable text kept when no font is missing


def test_key_results_box_at_the_top(tmp_path):
    html = render_report(_inputs(copy.deepcopy(STUDY)), tmp_path).html.read_text(encoding="utf-8")
    overview = html.split('<section id="overview">', 1)[1].split("</section>", 1)[0]
    box = overview.split('id="key-results"', 1)[1].split("</div>", 1)[0]
    lines = re.findall(r"<li>([^<]+)</li>", box)
    assert lines[0].startswith("600 patients in 30 hospitals, fiscal years 2012–2020")
    # the hand-built results: mixed_logit, mutual, OR 0.84 (1.96 x 0.08 on the log scale)
    assert "30-day mortality, cancer center: OR 0.84 (0.72–0.98) (Random-intercept logistic, exposures mutually adjusted)." in lines
    assert "SHA-256" not in overview  # checksums live in the appendix


def test_crude_section_has_discharge_home_and_time_to_home_with_denominators(tmp_path):
    study = copy.deepcopy(STUDY)
    study.setdefault("analyses", {})["outcomes"] = ["death_30d", "in_hospital_death", "unfavorable_ambulatory"]
    study["report"] = {"sections": ["crude"]}
    html = render_report(_inputs(study), tmp_path).html.read_text(encoding="utf-8")
    crude = _visible(html.split('<section id="crude">', 1)[1])
    assert "Discharged home" in crude and "Time to discharge home, days" in crude
    assert "Patients discharged home (n = " in crude and "Denominator" in crude


def test_volume_curve_for_every_outcome_with_range_and_adjustment(tmp_path):
    import numpy as np

    inp = _inputs(copy.deepcopy(STUDY))
    vol = inp.analytic["volume"].to_numpy(float)
    hy = inp.analytic.drop_duplicates(["hospital_id", "fiscal_year"])["volume"].to_numpy(float)
    lo, hi = np.quantile(hy, [0.01, 0.99])
    assert (round(lo), round(hi)) != tuple(np.round(np.quantile(vol, [0.01, 0.99])))  # the data tell them apart
    curves = []
    for o, basis in (("complication", "hospital-years"), ("death_30d", "hospital-years"), ("in_hospital_death", "patients")):
        v = np.unique(np.round(np.linspace(lo, hi, 60), 1))  # the profiling outcome (death) comes first
        curves.append({"outcome": o, "model": "mixed_logit", "volume": v.tolist(), "or": [1.0] * len(v),
                       "conf_low": [0.8] * len(v), "conf_high": [1.25] * len(v), "reference_volume": float(np.median(vol)),
                       "knots": [1, 2, 3, 4], "nonlinearity_p": 0.4, "range_basis": basis})
    inp.results.extras["volume_curve"] = curves
    inp.study["report"] = {"sections": ["volume"]}
    html = render_report(inp, tmp_path).html.read_text(encoding="utf-8")
    assert (tmp_path / "figures" / "volume_curve.svg").exists() and (tmp_path / "figures" / "volume_curve_complication.svg").exists()
    caps = re.findall(r"<figcaption>(.*?)</figcaption>", html, flags=re.S)
    caps = [__import__("html").unescape(_visible(c)) for c in caps]
    assert len(caps) == 3 and "30-day mortality" in caps[0] and "complication" in caps[2]
    for c in caps[0], caps[2]:
        assert (f"The curve spans {lo:.0f}–{hi:.0f} cases: the 1st to the 99th percentile of the hospital-years' annual "
                "volume, each hospital-year counted once;") in c
    # a range the data do not bear out for the basis the results claim is stated without a source
    assert "percentile" not in caps[1] and f"The curve spans {lo:.0f}–{hi:.0f} cases." in caps[1]
    for c in caps:
        assert "Adjusted for cancer center and the covariates (age, sex, Charlson" in c
        assert "within the curve's range" in c


def _grouped_inputs(choice=None):
    """Inputs whose study cuts age and BMI into groups (the models use age and the BMI group)."""
    import numpy as np
    import pandas as pd

    study = copy.deepcopy(STUDY)
    study["covariates"].update({
        "age_group": {"kind": "cut", "of": "age", "breaks": [50, 80], "labels": ["<50", "50-79", ">=80"]},
        "bmi": {"kind": "bmi"},
        "bmi_group": {"kind": "cut", "of": "bmi", "breaks": [18.5, 30], "labels": ["<18.5", "18.5-29.9", ">=30"]},
    })
    study["analyses"]["covariates"] = ["age", "sex", "bmi_group"]
    study["report"] = {"sections": ["table1"], **({"table1_variables": choice} if choice is not None else {})}
    inp = _inputs(study)
    df = inp.analytic
    df["age_group"] = pd.cut(df["age"], [-np.inf, 50, 80, np.inf], right=False, labels=["<50", "50-79", ">=80"]).astype(str)
    df["bmi_group"] = pd.cut(df["bmi"], [-np.inf, 18.5, 30, np.inf], right=False,
                             labels=["<18.5", "18.5-29.9", ">=30"]).astype(object).where(df["bmi"].notna())
    assert (df["age_group"] == ">=80").sum() >= 10 and (df["bmi_group"] == "<18.5").sum() >= 10
    return inp


def _table1_variables(tmp_path, choice=None) -> tuple[list[str], str]:
    rep = render_report(_grouped_inputs(choice), tmp_path)
    t = next(t for t in rep.tables if t.key.startswith("table1_"))
    names = [c for c in t.frame["Characteristic"] if c]
    return names, __import__("html").unescape(_visible(rep.html.read_text(encoding="utf-8")))


def test_table1_shows_each_variable_once_in_the_form_the_study_chooses(tmp_path):
    names, text = _table1_variables(tmp_path / "default")
    # as modelled: age as a number (the models use age), BMI as groups (the models use bmi_group)
    assert "Age, years" in names and "Age group" not in names
    assert "BMI group, kg/m²" in names and "BMI, kg/m²" not in names
    assert "under 18.5" in text and "30 or more" in text and code_like(text) == []
    names, text = _table1_variables(tmp_path / "both", "both")
    assert {"Age, years", "Age group", "BMI group, kg/m²", "BMI, kg/m²"} <= set(names)
    assert "80 or older" in text and "under 50" in text and code_like(text) == []
    names, _ = _table1_variables(tmp_path / "continuous", "continuous")
    assert "BMI, kg/m²" in names and "BMI group, kg/m²" not in names and "Age group" not in names
    names, _ = _table1_variables(tmp_path / "grouped", "grouped")
    assert "Age group" in names and "Age, years" not in names and "BMI, kg/m²" not in names
    names, _ = _table1_variables(tmp_path / "list", ["sex", "age_group"])
    assert names[-2:] == ["Sex", "Age group"] and "Age, years" not in names


def test_code_like_catches_comparison_levels_not_the_reports_own_notation():
    assert code_like("BMI >=30, age <50, 1.5-2") == [">=", "<50"]
    assert code_like("<10 patients; p <0.001; 18.5–24.9") == []
    assert code_like("<5 patients", threshold=5) == [] and code_like("<5 patients") == ["<5"]
    assert level_label("age_group", ">=80") == "80 or older" and level_label("bmi_group", "<=17") == "17 or less"


def test_propensity_diagnostics_and_funnel_outliers_are_shown(tmp_path):
    inp = _inputs(copy.deepcopy(STUDY))
    ex = inp.results.extras
    ex["weights"] = [{"method": "iptw", "estimand": "ATE", "stabilized": True, "trim": None, "groups": [
        {"group": "treated", "ps_min": 0.05, "ps_max": 0.95, "weight_min": 0.54, "weight_max": 11.107, "ess": 261.68},
        {"group": "control", "ps_min": 0.02, "ps_max": 0.92, "weight_min": 0.5, "weight_max": 6.09, "ess": 275.08}]}]
    pts = [{"n": 20 + i, "rsr": 0.05, "flag": "within"} for i in range(12)]
    pts += [{"n": 30, "rsr": 0.25, "flag": "above 99.8%"}, {"n": 40, "rsr": 0.16, "flag": "above 95%"}]
    ex["funnel"] = {"outcome": "death_30d", "overall_rate": 0.06, "points": pts, "hospitals_not_drawn": 0,
                    "flags": [{"flag": "within", "hospitals": 12}, {"flag": "above 95%", "hospitals": "<10"},
                              {"flag": "above 99.8%", "hospitals": "<10"}],
                    "limits": [{"coverage": 0.95, "n": [10, 50], "lower": [0, 0.01], "upper": [0.2, 0.13]},
                               {"coverage": 0.998, "n": [10, 50], "lower": [0, 0], "upper": [0.3, 0.17]}]}
    inp.study["report"] = {"sections": ["weighting", "variation"]}
    rep = render_report(inp, tmp_path)
    t = {x.key: x for x in rep.tables}
    w = t["weights"].frame
    assert list(w["Group"]) == ["Cancer center", "Other hospital"]
    assert list(w["Effective sample size"]) == ["261.7", "275.1"] and list(w["Largest weight"]) == ["11.11", "6.09"]
    o = t["funnel_outliers"].frame
    assert list(o["Position"]) == ["Above the 95% control limit", "Above the 99.8% control limit"]
    assert list(o["Hospitals"]) == ["<10", "<10"]
    svg = (tmp_path / "figures" / "funnel.svg").read_text(encoding="utf-8")
    assert "Above the 99.8% limit" in svg and "Risk-standardized 30-day mortality, %" in svg


def test_figures_name_the_outcome_and_use_percent(tmp_path):
    rep = render_report(_inputs(copy.deepcopy(STUDY)), tmp_path)
    fig = tmp_path / "figures"
    assert "Risk-standardized 30-day mortality, %" in (fig / "funnel.svg").read_text(encoding="utf-8")
    assert "Patients with the outcome, %" in (fig / "trends.svg").read_text(encoding="utf-8")
    cif = (fig / "cif.svg").read_text(encoding="utf-8")
    assert "in each state, %" in cif and ">100<" in cif  # the axis runs to 100 (percent), not to 1
    assert "Odds ratio of 30-day mortality" in (fig / "volume_curve.svg").read_text(encoding="utf-8")
    assert rep.html.exists()


def test_ratio_ticks_keep_1_clear_of_crowding_labels():
    from hospstudy.report.figures import _ratio_ticks

    wide = _ratio_ticks(0.3, 3)
    assert 1 in wide and 0.9 not in wide and 1.1 not in wide and len(wide) >= 4
    assert _ratio_ticks(0.8, 1.25) == [0.8, 0.9, 1, 1.1, 1.25]  # a narrow axis keeps its neighbours of 1


def test_png_writer_round_trips_the_drawn_pixels(tmp_path):
    import numpy as np
    from PIL import Image

    from hospstudy.report import figures as F

    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, size=(37, 53, 4), dtype=np.uint8)  # odd sizes, every byte value
    F._write_png(tmp_path / "x.png", rgba, 300)
    im = Image.open(tmp_path / "x.png")
    assert im.mode == "RGBA" and im.size == (53, 37) and min(im.info["dpi"]) >= 299.9
    assert (np.asarray(im) == rgba).all()
    fig = F.funnel_plot([20, 30], [0.1, 0.2], 0.15, [])
    F.save(fig, "f", tmp_path)
    assert Image.open(tmp_path / "f.png").size == (1920, 1080)  # 6.4 x 3.6 in at 300 dpi
