"""Report rendering from hand-built inputs that follow docs/architecture.md: an analytic
dataset, an attrition table and a results document built here with numpy."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from hospstudy.privacy import check_disclosure
from hospstudy.report.html import SECTION_TITLES, ReportInputs, published_reference, render_report
from hospstudy.report.results import Results
from hospstudy.report.tables import crude_outcomes, safe_attrition, smd_categorical, smd_continuous, table1
from hospstudy.report.labels import label

STUDY = {
    "study": {"name": "spinal_metastasis", "title": "Spinal metastasis surgery: cancer centers, volume and outcomes",
              "description": "Does treatment at a cancer center or a high-volume hospital change 30-day mortality?",
              "fiscal_years": [2012, 2020], "database": "DPC inpatient database (synthetic)",
              "references": ["published.toml: institutional_function"]},
    "codelists": {"spinal_metastasis": {"codes": ["C795"], "description": "Spinal metastasis"},
                  "spine_surgery": {"codes": ["K1421", "K1422", "K142-4"], "description": "Spine surgery"}},
    "cohort": {"index": {"procedures": "spine_surgery", "description": "first spine surgery of the admission"},
               "steps": [{"name": "spine_surgery", "description": "Admissions with spine surgery"},
                         {"name": "metastasis", "description": "Spinal metastasis diagnosis"},
                         {"name": "age", "description": "Aged 18 or over"},
                         {"name": "first", "description": "First admission per patient"}]},
    "exposures": {"cancer_center": {"kind": "field", "field": "cancer_center", "description": "Designated cancer care hospital"}},
    "covariates": {"age": {"kind": "field", "field": "age"}, "sex": {"kind": "field", "field": "sex"}},
    "outcomes": {"death_30d": {"kind": "flag", "description": "Death within 30 days of surgery"}},
    "analyses": {"outcomes": ["death_30d", "in_hospital_death", "complication", "unfavorable_ambulatory", "los_to_home"],
                 "exposures": ["cancer_center", "volume_per50"], "covariates": ["age", "sex", "charlson", "primary_site"],
                 "models": ["mixed_logit", "gee_logit", "logit"], "cluster": "hospital_id",
                 "volume": {"per": 50, "spline_knots": 4}, "weighting": {"methods": ["iptw", "overlap"]},
                 "competing_risks": {"outcome": "los_to_home"}, "profiling": {"outcome": "death_30d"},
                 "trends": {"proportions": ["death_30d", "in_hospital_death"], "continuous": ["postop_los"]}},
}


def make_analytic(n=3000, hospitals=120, seed=1, rare_site=True):
    rng = np.random.default_rng(seed)
    hosp = rng.integers(1, hospitals + 1, n)
    cc_h = rng.random(hospitals + 1) < 0.4
    fy = rng.integers(2012, 2021, n)
    vol_h = rng.gamma(4, 40, hospitals + 1).astype(int) + 12
    cc = cc_h[hosp]
    volume = vol_h[hosp] + (fy - 2016)
    sites = np.array(["lung", "breast", "prostate", "kidney", "liver", "other"])
    site = sites[rng.choice(6, n, p=[0.35, 0.2, 0.15, 0.12, 0.1, 0.08])]
    if rare_site:
        site[:4] = "thyroid"  # a level with 4 patients: must be suppressed everywhere
    lp = -2.7 + np.log(0.84) * cc + 0.03 * (rng.normal(size=n))
    death = rng.random(n) < 1 / (1 + np.exp(-lp))
    ih = death | (rng.random(n) < 0.03)
    los = rng.gamma(3, 10, n).round()
    home = ~ih & (rng.random(n) < 0.6)
    bmi = rng.normal(22, 3, n)
    bmi[rng.random(n) < 0.05] = np.nan
    q = pd.qcut(volume, 4, labels=False) + 1
    unf = pd.array(rng.random(n) < 0.4, dtype="boolean")
    unf[rng.random(n) < 0.02] = pd.NA
    return pd.DataFrame({
        "patient_id": [f"P{i:07d}" for i in range(n)], "admission_id": [f"A{i:08d}" for i in range(n)],
        "hospital_id": hosp.astype("int32"), "fiscal_year": fy.astype("int16"),
        "surgery_date": pd.to_datetime("2016-01-01"),
        "cancer_center": cc, "volume": volume, "volume_per50": volume / 50, "volume_quartile": q.astype(int),
        "age": rng.normal(65, 10, n).round(), "sex": np.where(rng.random(n) < 0.6, "M", "F"), "bmi": bmi,
        "charlson": rng.poisson(2, n), "primary_site": site, "emergency": rng.random(n) < 0.2,
        "surgery_type": np.where(rng.random(n) < 0.85, "fusion", "decompression"),
        "death_30d": death, "in_hospital_death": ih, "complication": rng.random(n) < 0.08,
        "unfavorable_ambulatory": unf, "discharged_home": home, "postop_los": los, "los_to_home": los,
        "los_to_home_event": np.where(home, 1, np.where(ih, 2, 0)),
    })


def make_attrition(final_adm, final_pat):
    # the age step removes 6 admissions (a small cell)
    adm = [2_000_000, 400_000, 3_300, 3_294, final_adm]
    pat = [1_500_000, 380_000, 3_150, 3_144, final_pat]
    rows = []
    for k, (name, desc) in enumerate([("database", "All admissions"), ("spine_surgery", "Admissions with spine surgery"),
                                       ("metastasis", "Spinal metastasis diagnosis"), ("age", "Aged 18 or over"),
                                       ("first", "First admission per patient")]):
        rows.append({"step": k, "name": name, "description": desc, "admissions": adm[k], "patients": pat[k],
                     "admissions_removed": 0 if k == 0 else adm[k - 1] - adm[k], "patients_removed": 0 if k == 0 else pat[k - 1] - pat[k]})
    return pd.DataFrame(rows)


def _row(analysis, outcome, exposure, model, scale, term, b, se, n=3000, events=180, clusters=120):
    return {"analysis": analysis, "outcome": outcome, "exposure": exposure, "model": model, "scale": scale, "term": term,
            "estimate": b, "std_error": se, "conf_low": b - 1.96 * se, "conf_high": b + 1.96 * se, "p_value": 0.04,
            "exp_estimate": float(np.exp(b)), "exp_conf_low": float(np.exp(b - 1.96 * se)), "exp_conf_high": float(np.exp(b + 1.96 * se)),
            "n": n, "events": events, "clusters": clusters}


def make_results(small_events=True):
    t = []
    for outcome in ("death_30d", "in_hospital_death", "complication"):
        for model, scale in (("mixed_logit", "conditional"), ("gee_logit", "marginal"), ("logit", "unclustered")):
            t.append(_row("mutual", outcome, "cancer_center", model, scale, "cancer_center[T.True]", np.log(0.84), 0.08,
                          events=7 if (small_events and outcome == "complication" and model == "logit") else 180))
            t.append(_row("mutual", outcome, "volume_per50", model, scale, "volume_per50", np.log(0.958), 0.015))
            t.append(_row("mutual", outcome, "volume_per50", model, scale, "age", 0.02, 0.005))  # a covariate: not shown
    for k in (2, 3, 4):
        t.append(_row("volume_quartile", "death_30d", "volume_quartile", "mixed_logit", "conditional", f"volume_quartile[T.{k}]", -0.05 * k, 0.1))
    for m in ("iptw", "overlap"):
        t.append(_row(m, "death_30d", "cancer_center", "logit", "weighted", "cancer_center[T.True]", np.log(0.85), 0.09))
    for m in ("cause_specific", "fine_gray"):
        t.append(_row(m, "los_to_home", "cancer_center", m, "unclustered", "cancer_center[T.True]", 0.02, 0.04))
    v = np.linspace(20, 400, 40)
    logor = -0.0008 * (v - 166)
    ns = np.array([3, 12, 25, 40, 60, 80, 100])
    return {
        "table": t,
        "extras": {
            "volume_curve": {"outcome": "death_30d", "volume": v.tolist(), "or": np.exp(logor).tolist(),
                             "conf_low": np.exp(logor - 0.2).tolist(), "conf_high": np.exp(logor + 0.2).tolist(), "reference_volume": 166},
            "balance": [{"covariate": c, "unweighted": s, "iptw": s / 5, "overlap": 0.0} for c, s in
                        (("age", 0.12), ("sex[M]", -0.05), ("charlson", 0.2), ("primary_site[lung]", 0.15))],
            "evalues": [{"outcome": "death_30d", "exposure": "cancer_center", "evalue_estimate": 1.55, "evalue_ci": 1.04}],
            "cumulative_incidence": [{"group": g, "time": list(range(0, 90, 5)), "cif_event": np.linspace(0, 0.6 + d, 18).tolist(),
                                      "cif_competing": np.linspace(0, 0.08, 18).tolist()} for g, d in (("True", 0.02), ("False", 0.0))],
            "funnel": {"outcome": "death_30d", "overall_rate": 0.062,
                       "hospitals": [{"hospital_id": i, "n": int(n), "rate": 0.06 + 0.001 * i} for i, n in enumerate(ns)],
                       "limits": [{"coverage": 0.95, "n": [10, 50, 100], "lower": [0, 0.01, 0.02], "upper": [0.2, 0.13, 0.11]},
                                  {"coverage": 0.998, "n": [10, 50, 100], "lower": [0, 0, 0.01], "upper": [0.3, 0.17, 0.13]}]},
            "hospital_variation": [{"outcome": "death_30d", "variance": 0.12, "mor": 1.39, "icc": 0.035, "clusters": 120}],
            "trends": [{"outcome": "death_30d", "test": "Cochran-Armitage", "statistic": -2.1, "p_value": 0.036},
                       {"outcome": "postop_los", "test": "Jonckheere-Terpstra", "statistic": -3.0, "p_value": 0.003}],
        },
        "failures": [{"analysis": "unfavorable_ambulatory/mixed_logit", "error": "did not converge"}],
    }


TRUTH = {"generator": {"seed": 1, "scale": 0.05},
         "effects": {"death_30d": {"cancer_center_or": 0.841, "volume_per50_log_or": float(np.log(0.958)), "hospital_sd": 0.3},
                     "complication": {"cancer_center_or": 1.0}, "los_to_home": {"cancer_center_hr": 1.0}}}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    df = make_analytic()
    (out / "private").mkdir()
    df.to_parquet(out / "private" / "analytic.parquet")
    inp = ReportInputs(study=STUDY, attrition=make_attrition(len(df), len(df)), analytic=df,
                       results=Results.from_dict(json.loads(json.dumps(make_results()))), truth=TRUTH,
                       run_info={"run_date": "2026-01-01T00:00:00Z", "seed": 1, "engine": "duckdb",
                                 "versions": {"hospstudy": "0.1.0"}, "input_hashes": {"admissions.parquet": "ab" * 32}},
                       published=published_reference())
    art = render_report(inp, out)
    return out, art, df


def test_every_artifact_written(rendered):
    out, art, _ = rendered
    assert (out / "report.html").stat().st_size > 10_000
    assert (out / "tables.xlsx").is_file() and (out / "attrition.csv").is_file()
    names = {p.name for p in (out / "figures").iterdir()}
    for fig in ("flow", "forest", "volume_curve", "love_plot", "cif", "funnel", "trends"):
        assert f"{fig}.svg" in names and f"{fig}.png" in names, fig


def test_every_section_in_order_and_no_network(rendered):
    out, art, _ = rendered
    html = (out / "report.html").read_text()
    pos = [html.index(f'id="{sid}"') for sid, _ in SECTION_TITLES]
    assert pos == sorted(pos)
    for _, title in SECTION_TITLES[1:]:
        assert title in html
    assert "SYNTHETIC DATA" in html
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:)?//""", html)
    assert "<script" not in html and "@import" not in html and "url(http" not in html
    assert "failed" in html and "did not converge" in html  # a failed analysis is named


def test_no_disclosure_violation_in_rendered_report(rendered):
    out, _, df = rendered
    found = check_disclosure(out)
    assert found == [], [str(v) for v in found]
    html = (out / "report.html").read_text()
    assert "<10" in html or "&lt;10" in html  # the thyroid level, the small attrition step
    assert df["patient_id"].iloc[0] not in html


def test_attrition_csv_is_suppressed(rendered):
    out, _, _ = rendered
    a = pd.read_csv(out / "attrition.csv", dtype=str)
    assert list(a.columns) == ["step", "name", "description", "admissions", "patients", "admissions_removed", "patients_removed"]
    row = a[a["name"] == "age"].iloc[0]
    assert row["admissions_removed"] == "<10" and row["admissions"] == "—"


def test_xlsx_has_one_sheet_per_table(rendered):
    import openpyxl

    out, art, _ = rendered
    wb = openpyxl.load_workbook(out / "tables.xlsx")
    assert len(wb.sheetnames) == len(art.tables)
    for key in ("attrition", "table1_cancer_center", "table1_volume_quartile", "adjusted", "published_vs_run", "planted_vs_estimated"):
        assert key in wb.sheetnames, key
    ws = wb["adjusted"]
    assert "Adjusted odds ratios" in ws["A1"].value and ws["A3"].value == "Outcome"


def test_planted_vs_estimated_matches_truth(rendered):
    _, art, _ = rendered
    t = next(t for t in art.tables if t.key == "planted_vs_estimated").frame
    assert len(t) == 4
    assert set(t["Planted"]) == {"OR 0.841", "OR 0.958", "OR 1.000", "HR 1.000"}
    by = dict(zip(t["Planted"], t["Planted value inside CI"]))
    # the hand-built results estimate OR 0.84 (0.72-0.98) for complications, where 1.0 was planted
    assert by["OR 1.000"] == "no"
    assert by["OR 0.841"] == "yes" and by["OR 0.958"] == "yes"
    assert by["HR 1.000"] == "yes"  # cause-specific HR 1.02 (0.94-1.10)
    assert t.loc[t["Planted"] == "OR 0.841", "Model"].iloc[0].startswith("Random-intercept logistic (conditional, exposures mutually adjusted)")


def test_published_vs_run_lists_every_adjusted_figure(rendered):
    _, art, _ = rendered
    t = next(t for t in art.tables if t.key == "published_vs_run").frame
    figs = " ".join(t["Figure"])
    for w in ("Patients", "30-day mortality", "cancer center", "per 50 cases", "Fusion share, fiscal 2012"):
        assert w in figs
    assert "0.841 (0.709–0.999)" in " ".join(t["Published"])


def test_sections_say_when_absent(tmp_path):
    df = make_analytic(n=400, hospitals=30)
    art = render_report(ReportInputs(study={"study": {"name": "x"}}, analytic=df, published=published_reference()), tmp_path)
    html = art.html.read_text()
    assert html.count('class="absent"') >= 8
    assert "No results: the analyses stage did not run." in html
    assert "SYNTHETIC DATA" not in html
    assert check_disclosure(tmp_path) == []


def test_rendering_is_reproducible(tmp_path, rendered):
    out, _, df = rendered
    a = (out / "figures" / "forest.svg").read_bytes()
    inp = ReportInputs(study=STUDY, attrition=make_attrition(len(df), len(df)), analytic=df,
                       results=Results.from_dict(make_results()), truth=TRUTH,
                       run_info={"run_date": "2026-01-01T00:00:00Z", "seed": 1, "engine": "duckdb",
                                 "versions": {"hospstudy": "0.1.0"}, "input_hashes": {"admissions.parquet": "ab" * 32}},
                       published=published_reference())
    render_report(inp, tmp_path)
    assert (tmp_path / "figures" / "forest.svg").read_bytes() == a
    assert (tmp_path / "report.html").read_bytes() == (out / "report.html").read_bytes()
    assert (tmp_path / "figures" / "flow.png").read_bytes() == (out / "figures" / "flow.png").read_bytes()
    assert (tmp_path / "tables.xlsx").read_bytes() == (out / "tables.xlsx").read_bytes()


def test_table1_counts_smd_and_suppression():
    df = make_analytic(n=2000, hospitals=80)
    t = table1(df, "cancer_center", ["age", "sex", "bmi", "primary_site", "emergency"]).frame
    cc = df["cancer_center"]
    col_cc = next(c for c in t.columns if c.startswith("Cancer center"))
    males = int(((df["sex"] == "M") & cc).sum())
    row = t[(t["Level"] == "Male")].iloc[0]
    assert row[col_cc].startswith(f"{males:,} (")
    assert t.loc[t["Characteristic"] == "Emergency admission", "Level"].tolist() == ["Yes"]  # as the other levels: capitalised
    thy = t[t["Level"] == "Thyroid"].iloc[0]
    assert thy.iloc[2] == "<10" and all(v in ("<10", "—") for v in thy.iloc[3:5])
    # secondary suppression: at least one other primary_site cell in each group column is hidden
    block = t.iloc[t.index[t["Characteristic"] == "Primary tumor site"][0]:]
    block = block[(block["Characteristic"] == "") | (block["Characteristic"] == "Primary tumor site")].head(7)
    for col in t.columns[3:5]:
        assert (block[col].isin(["<10", "—"])).sum() >= 2
    age = t[t["Characteristic"] == "Age, years"].iloc[0]
    expected = smd_continuous(df.loc[cc, "age"], df.loc[~cc, "age"])
    assert age["SMD"] == f"{expected:.2f}"
    miss = t[(t["Level"] == "Missing")]
    assert len(miss) >= 1 and miss.iloc[0].iloc[2] == f"{int(df['bmi'].isna().sum()):,}"


def test_smd_categorical_equals_binary_smd_for_two_levels():
    p1, p2 = 0.3, 0.45
    binary = abs(p1 - p2) / np.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / 2)
    assert smd_categorical(np.array([1 - p1, p1]), np.array([1 - p2, p2])) == pytest.approx(binary)


def test_crude_outcomes_tests_agree_with_scipy():
    from scipy import stats

    df = make_analytic(n=1500, hospitals=60)
    t = crude_outcomes(df, "cancer_center", ["death_30d"]).frame
    d = t[t["Outcome"] == "30-day mortality"].iloc[0]
    tab = pd.crosstab(df["death_30d"], df["cancer_center"]).to_numpy()
    p = stats.chi2_contingency(tab, correction=False)[1]
    assert d["Test"] == "chi-square" and d["p"] == (f"{p:.3f}" if p >= 0.001 else "<0.001")
    los = t[t["Outcome"].str.startswith("Postoperative length")].iloc[0]
    p2 = stats.mannwhitneyu(df.loc[df.cancer_center, "postop_los"], df.loc[~df.cancer_center, "postop_los"]).pvalue
    assert los["Test"] == "Wilcoxon rank-sum" and los["p"] == (f"{p2:.3f}" if p2 >= 0.001 else "<0.001")


def test_fisher_for_sparse_two_by_two():
    df = make_analytic(n=300, hospitals=20)
    df["complication"] = False
    df.loc[df.index[:3], "complication"] = True
    t = crude_outcomes(df, "cancer_center", ["complication"]).frame
    assert t.iloc[0]["Test"] == "Fisher"
    assert t.iloc[0].iloc[2] == "<10"


def test_safe_attrition_totals_unchanged_for_large_steps():
    a = make_attrition(3000, 3000)
    s = safe_attrition(a)
    assert s.loc[0, "admissions"] == "2,000,000" and s.loc[1, "admissions_removed"] == "1,600,000"


@pytest.mark.parametrize("seed", range(20))
def test_overall_column_does_not_reveal_hidden_cells(seed):
    from test_disclosure import _recoverable

    from hospstudy.report.tables import _suppress_with_overall

    rng = np.random.default_rng(100 + seed)
    table = rng.choice([0, 2, 5, 9, 15, 60, 400], size=(rng.integers(2, 8), rng.integers(2, 5)))
    hide, total_hide = _suppress_with_overall(table, 10)
    aug = np.hstack([table, table.sum(axis=1, keepdims=True)])
    mask = np.hstack([hide, total_hide[:, None]])
    small = (aug > 0) & (aug < 10)
    assert mask[small].all()
    # each row ties its groups to its overall; each column sums to a published total
    assert not _recoverable(aug, mask).any()


def test_published_vs_run_never_reveals_a_small_count():
    from hospstudy.report.html import published_vs_run

    df = make_analytic(n=300, hospitals=20)
    df.loc[df["fiscal_year"] == 2012, "surgery_type"] = "fusion"
    df.loc[df.index[df["fiscal_year"] == 2012][:3], "surgery_type"] = "decompression"  # 3 non-fusion in 2012
    df["complication"] = False
    df.loc[df.index[:4], "complication"] = True  # 4 complications overall
    df["cancer_center"] = True
    df.loc[df.index[:2], "cancer_center"] = False  # 2 patients outside cancer centers
    t = published_vs_run(published_reference(), df, None, {}, 10).frame.set_index("Figure")["This run"]
    assert t["Fusion share, fiscal 2012"].startswith("suppressed")
    assert t["Postoperative complications"].startswith("suppressed")
    assert t["Patients at cancer centers"] == "—"
    assert t["30-day mortality OR, cancer center"] == "not estimated"


def _with_ambulatory_missing_for_deaths(df, unknown=40):
    u = df["unfavorable_ambulatory"].astype("boolean").copy()
    u[:] = np.random.default_rng(5).random(len(df)) < 0.4
    u[df["in_hospital_death"].to_numpy()] = pd.NA
    alive = np.flatnonzero(~df["in_hospital_death"].to_numpy())
    u[alive[:unknown]] = pd.NA
    df["unfavorable_ambulatory"] = u
    return df


CRUDE_CONT = ["postop_los", ("time_to_home", "los_to_home", "discharged_home", "Time to discharge home, days")]


def test_crude_outcomes_state_each_denominator_and_time_to_home():
    df = _with_ambulatory_missing_for_deaths(make_analytic(n=1500, hospitals=60))
    t = crude_outcomes(df, "cancer_center", ["death_30d", "unfavorable_ambulatory", "discharged_home"],
                       continuous=CRUDE_CONT).frame.set_index("Outcome")
    dead = df["in_hospital_death"].to_numpy()
    n_amb = int(df["unfavorable_ambulatory"].notna().sum())
    assert n_amb == len(df) - dead.sum() - 40
    assert t.loc["Unfavorable ambulatory status", "Denominator"] == (
        f"All patients, excluding in-hospital deaths and those with the outcome unknown (n = {n_amb:,})")
    ev = int(df["unfavorable_ambulatory"].fillna(False).sum())
    assert t.loc["Unfavorable ambulatory status"].iloc[1] == f"{ev:,} ({100 * ev / n_amb:.1f}%)"
    assert t.loc["30-day mortality", "Denominator"] == f"All patients (n = {len(df):,})"
    home = df["discharged_home"].to_numpy()
    assert t.loc["Discharged home"].iloc[1] == f"{home.sum():,} ({100 * home.mean():.1f}%)"
    row = t.loc["Time to discharge home, days"]
    q1, med, q3 = np.percentile(df.loc[home, "los_to_home"], [25, 50, 75])
    assert row.iloc[1] == f"{med:.0f} [{q1:.0f}–{q3:.0f}]" and row["Denominator"] == f"Patients discharged home (n = {home.sum():,})"
    cc = df["cancer_center"].to_numpy()
    p = stats_p = __import__("scipy.stats", fromlist=["x"]).mannwhitneyu(
        df.loc[home & cc, "los_to_home"], df.loc[home & ~cc, "los_to_home"]).pvalue
    assert row["p"] == (f"{stats_p:.3f}" if p >= 0.001 else "<0.001")


def test_crude_denominator_hides_its_size_when_it_reveals_a_small_count():
    # 3 patients alive with the outcome unknown: the denominator's n would reveal them
    df = _with_ambulatory_missing_for_deaths(make_analytic(n=800, hospitals=40), unknown=3)
    t = crude_outcomes(df, "cancer_center", ["unfavorable_ambulatory"], continuous=()).frame
    den = t.iloc[0]["Denominator"]
    assert den == "All patients, excluding in-hospital deaths and those with the outcome unknown"
    # the unknown row itself is suppressed in the table's arithmetic: no cell shows 3
    assert not any(re.search(r"(?<![\d,.])3(?![\d,.%])", str(v)) for v in t.iloc[0])


def test_table1_hospitals_volume_walking_levels_and_missing_agree():
    df = make_analytic(n=1500, hospitals=60)
    rng = np.random.default_rng(3)
    walk = rng.integers(0, 4, len(df)).astype(float)
    walk[:25] = np.nan
    df["walking_adm"] = walk
    grp = np.where(rng.random(len(df)) < 0.5, "<18.5", "18.5-24.9").astype(object)
    grp[30:70] = "missing"
    df["bmi_group"] = grp
    t = table1(df, "cancer_center", ["age", "walking_adm", "bmi_group"], categorical=["walking_adm"],
               missing_levels={"bmi_group": "missing"}, hospital_col="hospital_id", volume_col="volume").frame
    cc = df["cancer_center"].to_numpy()
    hosp = t[t["Characteristic"] == "Hospitals"].iloc[0]
    n_cc, n_oth = df.loc[cc, "hospital_id"].nunique(), df.loc[~cc, "hospital_id"].nunique()
    assert (hosp.iloc[2], hosp.iloc[3], hosp.iloc[4]) == (f"{df.hospital_id.nunique()}", f"{n_cc}", f"{n_oth}")
    vol = t[t["Characteristic"] == label("volume")].iloc[0]
    q1, med, q3 = np.percentile(df.loc[cc, "volume"], [25, 50, 75])
    assert vol.iloc[3] == f"{med:.0f} [{q1:.0f}–{q3:.0f}]"
    # walking level: one row per level, no median
    start = t.index[t["Characteristic"] == label("walking_adm")][0]
    block = t.iloc[start:start + 5]
    assert list(block["Level"]) == ["0, unable to walk", "1, wheelchair", "2, walks with help", "3, walks independently", "Missing"]
    assert block.iloc[0]["Missing"] == "25" and block.iloc[4].iloc[2] == "25"
    # the study's missing group is the Missing row, and the Missing column agrees with it
    start = t.index[t["Characteristic"] == label("bmi_group")][0]
    block = t.iloc[start:start + 3]
    assert sorted(block["Level"][:2]) == ["18.5–24.9", "under 18.5"] and block.iloc[2]["Level"] == "Missing"
    assert "missing" not in set(t["Level"])
    assert block.iloc[0]["Missing"] == "40" == block.iloc[2].iloc[2]
    for _, r in t.iterrows():  # every Missing column value equals its variable's Missing row
        if r["Missing"] not in ("", "0"):
            nxt = t.loc[r.name:]
            miss_row = nxt[nxt["Level"] == "Missing"].iloc[0]
            assert miss_row.iloc[2] == r["Missing"]


def test_table1_hospital_counts_suppressed_with_their_total():
    df = make_analytic(n=600, hospitals=40)
    cc_h = df.groupby("hospital_id")["cancer_center"].first()
    few = cc_h[cc_h].index[:4]  # cancer centers: 4 hospitals only
    df = df[~df["cancer_center"] | df["hospital_id"].isin(few)]
    t = table1(df, "cancer_center", ["age"], hospital_col="hospital_id").frame
    hosp = t[t["Characteristic"] == "Hospitals"].iloc[0]
    assert hosp.iloc[3] == "<10"
    # overall minus the other hospitals would give the 4: one of them is hidden
    assert "—" in (hosp.iloc[2], hosp.iloc[4])
