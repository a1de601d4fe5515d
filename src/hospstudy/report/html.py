"""``OUT/report.html``: one self-contained, privacy-safe report (sections 1–12 of issue 5).

:func:`render_report` builds every table and figure from what is present — the attrition
table, the analytic dataset, the analyses' results, the study file, the database's
``truth.json`` and the published reference — and says plainly when a piece is absent or an
analysis failed. It writes ``report.html`` (inline CSS and SVG, no external resource and no
script, a Content-Security-Policy that forbids any request), ``tables.xlsx``,
``figures/*.svg|png`` and the disclosure-safe ``attrition.csv``.
:func:`build_report` re-renders from what a run stored in OUT (``hospstudy report OUT``).
"""

from __future__ import annotations

import html as _html
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from hospstudy.errors import InputError
from hospstudy.report import figures as F
from hospstudy.privacy import DEFAULT_THRESHOLD, fmt_count, suppress_table
from hospstudy.report.results import MODEL_LABELS, SCALE_LABELS, Results, classify, exposure_term_mask
from hospstudy.report.tables import (
    ReportTable, as_bool, attrition_table, crude_outcomes, fmt_ci, fmt_num, fmt_p, label, safe_attrition, table1, trends_table,
)

SECTION_TITLES = [
    ("overview", None),
    ("cohort-flow", "Cohort flow"),
    ("table1", "Baseline characteristics (Table 1)"),
    ("crude", "Crude outcomes"),
    ("adjusted", "Adjusted results"),
    ("volume", "Volume–outcome relationship"),
    ("weighting", "Propensity-score weighting"),
    ("los", "Length of stay until discharge home"),
    ("variation", "Hospital variation"),
    ("trends", "Trends by fiscal year"),
    ("reference", "Published figures and planted effects"),
    ("methods", "Methods and RECORD checklist"),
]

DEFAULT_COVARIATES = [
    "age", "age_group", "sex", "bmi", "bmi_group", "charlson", "barthel_adm", "walking_adm", "jcs_group", "emergency",
    "ambulance", "primary_site", "katagiri_group", "visceral_mets", "brain_mets", "spinal_level", "surgery_type",
    "teaching", "fiscal_year",
]
BINARY_OUTCOMES = ["death_30d", "in_hospital_death", "complication", "unfavorable_ambulatory", "discharged_home"]


@dataclass
class ReportInputs:
    """Everything the report reads. Any piece may be None: its sections then say so."""

    study: dict
    attrition: pd.DataFrame | None = None  # exact counts (suppressed here)
    analytic: pd.DataFrame | None = None
    results: Results | None = None
    truth: dict | None = None
    run_info: dict = field(default_factory=dict)
    published: dict | None = None
    threshold: int = DEFAULT_THRESHOLD


@dataclass
class ReportArtifacts:
    html: Path
    xlsx: Path
    figures: list[Path]
    tables: list[ReportTable]
    sections: list[str]


# --------------------------------------------------------------------------------------------
# HTML building blocks
# --------------------------------------------------------------------------------------------
def esc(x: Any) -> str:
    return _html.escape(str(x), quote=True)


def p(text: str) -> str:
    return f"<p>{esc(text)}</p>"


def absent(text: str) -> str:
    return f'<div class="absent">{esc(text)}</div>'


def failed(text: str) -> str:
    return f'<div class="failed">{esc(text)}</div>'


_NUMERIC_CELL = re.compile(r"^(<\d+|—|[-−]?\d[\d,]*(\.\d+)?%?)(\s*[(\[].*)?(;.*)?$")


def _is_num(s: str) -> bool:
    """Cells that read as numbers (right-aligned): counts, '<10', '—', estimates with intervals."""
    return bool(_NUMERIC_CELL.match(s.strip()))


_TEXT_COLUMNS = {"Role", "Variable", "Column", "Definition", "Level", "Criterion", "Term", "Adjustment", "Analysis", "Outcome", "Exposure", "Model", "Source", "Figure",
                 "Quartile", "Statistic", "Test", "Covariate", "List", "Description", "Codes", "File", "SHA-256"}


def table_html(t: ReportTable) -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in t.frame.columns)
    text_cols = {j for j, c in enumerate(t.frame.columns) if str(c) in _TEXT_COLUMNS}
    body = []
    starts = set(t.group_rows[1:]) if t.group_rows else set()
    for i, row in enumerate(t.frame.itertuples(index=False)):
        cells = "".join(
            f'<td class="num">{esc(v)}</td>' if j > 0 and j not in text_cols and _is_num(str(v)) else f"<td>{esc(v)}</td>"
            for j, v in enumerate(row)
        )
        body.append(f'<tr class="block">{cells}</tr>' if i in starts else f"<tr>{cells}</tr>")
    notes = "".join(f"<div>{esc(n)}</div>" for n in t.notes)
    return (f'<div class="scroll"><table id="tbl-{esc(t.key)}"><caption>{esc(t.title)}</caption><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div><div class=\"notes\">{notes}</div>")


def figure_html(svg: str, caption: str, name: str) -> str:
    return f'<figure id="fig-{esc(name)}">{svg}<figcaption>{esc(caption)}</figcaption></figure>'


def dl(items: list[tuple[str, str]]) -> str:
    return '<dl class="meta">' + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in items) + "</dl>"


# --------------------------------------------------------------------------------------------
# the renderer
# --------------------------------------------------------------------------------------------
class _Builder:
    def __init__(self, inp: ReportInputs, out_dir: Path):
        self.inp = inp
        self.out = out_dir
        self.fig_dir = out_dir / "figures"
        self.tables: list[ReportTable] = []
        self.figures: list[Path] = []
        self.t = inp.threshold
        an = inp.study.get("analyses", {}) or {}
        self.analyses = an
        df = inp.analytic
        self.exposures = [e for e in an.get("exposures", ["cancer_center", "volume_per50"])]
        self.binary_exposure = next((e for e in self.exposures if df is not None and e in df.columns and _is_bool(df[e])), None)
        if self.binary_exposure is None and df is not None and "cancer_center" in df.columns:
            self.binary_exposure = "cancer_center"
        vol = an.get("volume", {}) or {}
        self.quartile_col = vol.get("quartile_column", "volume_quartile") or "volume_quartile"
        self.volume_col = vol.get("column", "volume")
        outs = list(an.get("outcomes", [])) or BINARY_OUTCOMES
        self.binary_outcomes = [o for o in outs if df is None or (o in df.columns and _is_bool(df[o]))]
        if df is not None and not self.binary_outcomes:
            self.binary_outcomes = [o for o in BINARY_OUTCOMES if o in df.columns]
        self.covariates = self._covariates()

    def _covariates(self) -> list[str]:
        df = self.inp.analytic
        study_cov = list((self.inp.study.get("covariates") or {}).keys())
        an_cov = list(self.analyses.get("covariates", []))
        order = study_cov or an_cov or DEFAULT_COVARIATES
        seen = []
        for c in order + [c for c in DEFAULT_COVARIATES if c not in order]:
            if df is not None and c in df.columns and c not in seen and c not in ("patient_id", "admission_id", "hospital_id"):
                seen.append(c)
        return seen

    def add_table(self, t: ReportTable) -> str:
        self.tables.append(t)
        return table_html(t)

    def add_figure(self, name: str, fig, caption: str) -> str:
        svg = F.save(fig, name, self.fig_dir)
        self.figures += [self.fig_dir / f"{name}.svg", self.fig_dir / f"{name}.png"]
        return figure_html(svg, caption, name)

    def guarded(self, what: str, fn: Callable[[], list[str]]) -> list[str]:
        """Run one part of a section; a failure becomes a plain message in the report."""
        try:
            return fn()
        except Exception as e:  # a report must render even when one of its parts cannot
            return [failed(f"{what} could not be rendered: {type(e).__name__}: {e}")]

    # -- 1 ------------------------------------------------------------------------------------
    def s_overview(self) -> list[str]:
        st = self.inp.study.get("study", {}) or {}
        ri = self.inp.run_info
        blocks = []
        if st.get("description"):
            blocks.append(f'<p class="question">{esc(st["description"])}</p>')
        fy = st.get("fiscal_years")
        items = [
            ("Study", st.get("name", "")),
            ("Data source", st.get("database") or ri.get("data_source", "")),
            ("Study period", f"fiscal years {fy[0]}–{fy[1]}" if fy else ""),
            ("Database", "synthetic (hospstudy synth)" if self.inp.truth is not None else "as supplied"),
            ("Run date (UTC)", ri.get("run_date", "")),
            ("Seed", str(ri.get("seed", ""))),
            ("Engine", ri.get("engine", "")),
            ("Software", ", ".join(f"{k} {v}" for k, v in (ri.get("versions") or {}).items())),
            ("Study file SHA-256", ri.get("study_sha256", "")),
            ("Disclosure threshold", f"counts of 1–{self.t - 1} shown as <{self.t}"),
        ]
        blocks.append(dl([(k, v) for k, v in items if v]))
        hashes = ri.get("input_hashes") or {}
        if hashes:
            rows = pd.DataFrame({"File": list(hashes), "SHA-256": list(hashes.values())})
            blocks.append(table_html(ReportTable("input_hashes", "Input files", rows)))
        else:
            blocks.append(absent("Input file hashes were not recorded (the report was rendered outside `hospstudy run`)."))
        return blocks

    # -- 2 ------------------------------------------------------------------------------------
    def s_flow(self) -> list[str]:
        if self.inp.attrition is None:
            return [absent("No attrition table: the cohort stage did not run.")]
        safe = safe_attrition(self.inp.attrition, self.t)
        steps = safe.to_dict("records")
        fig = F.flow_diagram(steps)
        return [self.add_figure("flow", fig, "Cohort flow diagram: admissions and patients remaining after each step, and those excluded."),
                self.add_table(attrition_table(self.inp.attrition, self.t))]

    # -- 3 ------------------------------------------------------------------------------------
    def s_table1(self) -> list[str]:
        df = self.inp.analytic
        if df is None:
            return [absent("No analytic dataset: Table 1 cannot be built.")]
        blocks = []
        cats = ["fiscal_year"] + list(self.analyses.get("categorical", []))
        orders = _level_orders(self.inp.study)
        for by in (self.binary_exposure, self.quartile_col):
            if by and by in df.columns:
                blocks.append(self.add_table(table1(df, by, self.covariates, self.t, categorical=cats, orders=orders)))
            elif by:
                blocks.append(absent(f"The analytic dataset has no column {by!r}: no Table 1 by it."))
        return blocks

    # -- 4 ------------------------------------------------------------------------------------
    def s_crude(self) -> list[str]:
        df = self.inp.analytic
        if df is None:
            return [absent("No analytic dataset: no crude comparisons.")]
        blocks = []
        for by in (self.binary_exposure, self.quartile_col):
            if by and by in df.columns:
                blocks.append(self.add_table(crude_outcomes(df, by, self.binary_outcomes, self.t)))
        return blocks or [absent("No exposure column found for crude comparisons.")]

    # -- results helpers ----------------------------------------------------------------------
    def _rows(self, kind: str) -> pd.DataFrame:
        r = self.inp.results
        if r is None or r.table.empty:
            return pd.DataFrame()
        t = r.table
        return t[(classify(t) == kind) & exposure_term_mask(t)]

    def _estimate_table(self, rows: pd.DataFrame, key: str, title: str, ratio: str = "OR") -> ReportTable:
        """One row per outcome × exposure term × adjustment set, one pair of columns (ratio with
        CI, p) per model, the model's scale (conditional / marginal / ...) in the header."""
        rows = rows.copy()
        rows["adjustment"] = [_adjustment(str(a), str(m)) for a, m in zip(rows["analysis"], rows["model"])]
        models = list(dict.fromkeys(rows["model"].astype(str)))
        scales = {m: str(rows.loc[rows["model"].astype(str) == m, "scale"].iloc[0]) for m in models}
        heads = {m: f"{MODEL_LABELS.get(m, m)}, {SCALE_LABELS.get(scales[m], scales[m])}" for m in models}
        rec = []
        for (outcome, exposure, adjustment, term), g in rows.groupby(["outcome", "exposure", "adjustment", "term"], sort=False, dropna=False):
            first = g.iloc[0]
            line = {"Outcome": label(str(outcome)), "Term": _term_label(str(term), str(exposure)), "Adjustment": str(adjustment),
                    "N": fmt_count(_int(first["n"]), self.t), "Events": fmt_count(_int(first["events"]), self.t)}
            for m in models:
                h = g[g["model"].astype(str) == m]
                if len(h):
                    x = h.iloc[0]
                    line[f"{heads[m]}: {ratio} (95% CI)"] = fmt_ci(*_ratio(x))
                    line[f"{heads[m]}: p"] = fmt_p(x["p_value"])
                else:
                    line[f"{heads[m]}: {ratio} (95% CI)"] = "not run"
                    line[f"{heads[m]}: p"] = ""
            rec.append(line)
        frame = pd.DataFrame(rec).fillna("")
        frame = frame.loc[:, [c for c in frame.columns if not (c in ("N", "Events") and (frame[c] == "").all())]]
        notes = ["Adjustment 'alone': each exposure with the covariates; 'mutual': the exposures together. "
                 "Random-intercept (mixed) models give conditional odds ratios: the effect for patients within the "
                 "same hospital. GEE and weighted models give marginal (population-averaged) odds ratios; plain "
                 "logistic regression ignores clustering. Marginal ORs are closer to 1 than conditional ones when "
                 "hospitals vary. 'not estimable': the model did not give a finite estimate and interval (e.g. separation)."]
        return ReportTable(key, title, frame, notes)

    # -- 5 ------------------------------------------------------------------------------------
    def s_adjusted(self) -> list[str]:
        r = self.inp.results
        if r is None:
            return [absent("No results: the analyses stage did not run.")]
        rows = self._rows("adjusted")
        blocks = [failed(m) for m in r.failed()] if r.failures else []
        if rows.empty:
            return blocks + [absent("No adjusted model results in results.json.")]
        blocks.append(self.add_table(self._estimate_table(rows, "adjusted", "Adjusted odds ratios: primary and sensitivity models")))
        forest = []
        primary = (list(self.analyses.get("models", [])) or [str(rows["model"].iloc[0])])[0]
        main = rows[rows["model"].astype(str) == primary]
        for _, x in (main if len(main) else rows).iterrows():
            est, lo, hi = _ratio(x)
            forest.append({"label": f"{label(str(x['outcome']))} — {_term_label(str(x['term']), str(x['exposure']))} ({x['analysis']})",
                           "estimate": est, "conf_low": lo, "conf_high": hi,
                           "group": f"{x['analysis']}"})
        blocks.append(self.add_figure("forest", F.forest_plot(forest),
                                      f"Forest plot of the adjusted odds ratios (95% CI) of each exposure by outcome, primary model "
                                      f"({MODEL_LABELS.get(primary, primary)}); colours: adjustment set."))
        return blocks

    # -- 6 ------------------------------------------------------------------------------------
    def s_volume(self) -> list[str]:
        r = self.inp.results
        blocks = []
        curve = r.extra("volume_curve", "spline", "spline_curve", "volume_spline") if r else None
        if isinstance(curve, dict) and curve.get("curves"):
            curve = curve["curves"][0] if isinstance(curve["curves"], list) else curve
        if isinstance(curve, list):
            want = (self.analyses.get("profiling") or {}).get("outcome", "death_30d")
            curve = next((c for c in curve if isinstance(c, dict) and c.get("outcome") == want), curve[0] if curve else None)
        if curve:
            v = _arr(curve, "volume", "x", "grid")
            est = _arr(curve, "or", "odds_ratio", "exp_estimate", "estimate")
            lo = _arr(curve, "conf_low", "or_low", "exp_conf_low", "lower")
            hi = _arr(curve, "conf_high", "or_high", "exp_conf_high", "upper")
            if curve.get("scale") == "log" or (est is not None and "log_or" in curve):
                est, lo, hi = np.exp(est), np.exp(lo), np.exp(hi)
            rug = self._volume_rug()
            ref = curve.get("reference_volume", curve.get("reference"))
            if v is not None and est is not None and lo is not None and hi is not None:
                nl = _float(curve.get("nonlinearity_p"))
                cap = (f"Odds ratio of {label(str(curve.get('outcome', 'death_30d'))).lower()} against annual hospital volume "
                       f"(restricted cubic spline{', ' + str(len(curve['knots'])) + ' knots' if curve.get('knots') else ''}, "
                       f"{curve.get('model', '')} {curve.get('result_scale', '')}; 95% CI band), relative to "
                       f"{ref if ref is not None else 'the reference'} cases"
                       + (f"; test of non-linearity p = {fmt_p(nl)}" if nl is not None else "")
                       + f". Ticks: volumes of hospital-years with at least {self.t} cases.")
                blocks.append(self.add_figure("volume_curve", F.volume_curve(v, est, lo, hi, rug, _float(ref)), cap))
            else:
                blocks.append(failed("The spline curve in results.json lacks volume, estimate or interval arrays."))
        else:
            msg = r.failed("spline") if r else []
            blocks += [failed(m) for m in msg] or [absent("No volume–outcome spline curve in the results (analysis absent or not run).")]
        rows = self._rows("quartile")
        if not rows.empty:
            blocks.append(self.add_table(self._estimate_table(rows, "volume_quartiles", "Volume quartiles: adjusted odds ratios (reference Q1)")))
        else:
            blocks.append(absent("No volume-quartile model results."))
        df = self.inp.analytic
        if df is not None and self.quartile_col in df.columns and self.volume_col in df.columns:
            q = df.groupby(self.quartile_col)[self.volume_col].agg(["min", "max", "median", "size"]).reset_index()
            hide = suppress_table(q["size"].to_numpy()[None, :], self.t, margins=(True, False))[0]
            frame = pd.DataFrame({"Quartile": [f"Q{int(x)}" for x in q[self.quartile_col]],
                                  "Volume range (cases/year)": [f"{fmt_count(int(a), self.t)}–{int(b)}" for a, b in zip(q["min"], q["max"])],
                                  "Median volume": [f"{m:.0f}" for m in q["median"]],
                                  "Patients": [fmt_count(int(n), self.t, h) for n, h in zip(q["size"], hide)]})
            blocks.append(self.add_table(ReportTable("quartile_ranges", "Volume quartiles: ranges and patients", frame)))
        return blocks

    def _volume_rug(self) -> list[float]:
        df = self.inp.analytic
        if df is None or self.volume_col not in df.columns:
            return []
        keys = [c for c in ("hospital_id", "fiscal_year") if c in df.columns]
        v = df.drop_duplicates(keys)[self.volume_col] if keys else df[self.volume_col]
        v = pd.to_numeric(v, errors="coerce").dropna()
        return sorted(v[v >= self.t].tolist())

    # -- 7 ------------------------------------------------------------------------------------
    def s_weighting(self) -> list[str]:
        r = self.inp.results
        if r is None:
            return [absent("No results: the analyses stage did not run.")]
        blocks = [failed(m) for m in r.failed("weight", "iptw", "overlap")]
        bal = r.extra("balance", "balance_table")
        if isinstance(bal, dict) and "rows" in bal:
            bal = bal["rows"]
        if isinstance(bal, dict):  # column-oriented
            bal = pd.DataFrame(bal).to_dict("records")
        if bal:
            frame = pd.DataFrame(bal)
            cov = next((c for c in ("covariate", "term", "variable") if c in frame.columns), frame.columns[0])
            methods = [c for c in frame.columns if c != cov and pd.api.types.is_numeric_dtype(frame[c])]
            rows = [{"covariate": str(x[cov]), **{m: x[m] for m in methods}} for _, x in frame.iterrows()]
            blocks.append(self.add_figure("love_plot", F.love_plot(rows, methods),
                                          "Love plot: absolute standardized mean differences before and after weighting (dashed line 0.1)."))
            show = frame[[cov] + methods].copy()
            for m in methods:
                show[m] = show[m].map(lambda v: fmt_num(abs(v), 3) if pd.notna(v) else "")
            show.columns = ["Covariate"] + [f"|SMD| {m}" for m in methods]
            blocks.append(self.add_table(ReportTable("balance", "Covariate balance", show)))
        else:
            blocks.append(absent("No balance diagnostics in the results (weighting not run)."))
        rows = self._rows("weighted")
        if not rows.empty:
            blocks.append(self.add_table(self._estimate_table(rows, "weighted", "Propensity-score weighted odds ratios")))
        else:
            blocks.append(absent("No weighted estimates in the results."))
        ev = r.extra("evalues", "e_values", "evalue")
        if ev:
            frame = pd.DataFrame(ev if isinstance(ev, list) else [ev])
            if {"odds_ratio", "conf_low", "conf_high"} <= set(frame.columns):
                frame["OR (95% CI)"] = [fmt_ci(a, b, c) for a, b, c in zip(frame["odds_ratio"], frame["conf_low"], frame["conf_high"])]
            for c in ("outcome", "exposure"):
                if c in frame.columns:
                    frame[c] = frame[c].map(lambda v: label(str(v)))
            if "model" in frame.columns:
                frame["model"] = frame["model"].map(lambda v: MODEL_LABELS.get(str(v), str(v)))
            wanted = [c for c in ("outcome", "exposure", "analysis", "model", "OR (95% CI)", "evalue", "evalue_estimate",
                                  "evalue_ci", "conversion") if c in frame.columns]
            keep = {c: _nice(c) for c in (wanted or [c for c in frame.columns if c != "hospital_id"])}
            frame = frame[list(keep)].rename(columns=keep)
            for c in frame.columns:
                if pd.api.types.is_float_dtype(frame[c]):
                    frame[c] = frame[c].map(lambda v: fmt_num(v, 2))
            blocks.append(self.add_table(ReportTable("evalues", "E-values (VanderWeele & Ding 2017)", frame.astype(str),
                                                     ["The E-value is the minimum strength of association, on the risk-ratio scale, that an unmeasured "
                                                      "confounder would need with both exposure and outcome to explain away the estimate (or its CI limit)."])))
        else:
            blocks.append(absent("No E-values in the results."))
        return blocks

    # -- 8 ------------------------------------------------------------------------------------
    def s_los(self) -> list[str]:
        r = self.inp.results
        if r is None:
            return [absent("No results: the analyses stage did not run.")]
        blocks = [failed(m) for m in r.failed("compet", "fine", "cause")]
        cif = r.extra("cumulative_incidence", "cif", "competing_risks")
        step = cif.get("min_events_per_step", 10) if isinstance(cif, dict) else self.t
        if isinstance(step, (int, float)) and step < self.t:
            # the analyses grouped the curves with a smaller threshold than this report's (a
            # re-render with a stricter one): the steps cannot be regrouped without the counts
            blocks.append(absent("The cumulative incidence curves were grouped with a smaller disclosure threshold than this "
                                 "report's and are not drawn; re-run the analyses with the current threshold "
                                 "(`hospstudy run`) to draw them."))
            cif = None
        curves = []
        if isinstance(cif, dict):
            cif = cif.get("curves", cif.get("groups", [cif]))
        cif = [c for c in (cif or []) if isinstance(c, dict)]
        exposures = [c.get("exposure") for c in cif if c.get("exposure")]
        if exposures:
            first = self.binary_exposure if self.binary_exposure in exposures else exposures[0]
            cif = [c for c in cif if c.get("exposure") in (None, first)]
        for c in cif:
            t = _arr(c, "time", "t", "days")
            group = str(c.get("group", c.get("label", "")))
            if t is None:
                continue
            for key, name, ls in (("cif_event", "discharge home", "-"), ("cif", "discharge home", "-"),
                                  ("cif_competing", "in-hospital death", "--")):
                y = _arr(c, key)
                if y is not None and len(y) == len(t):
                    if c.get("event") is not None and key == "cif":
                        name = "discharge home" if int(c["event"]) == 1 else "in-hospital death"
                        ls = "-" if int(c["event"]) == 1 else "--"
                    curves.append({"label": f"{_group_label(group)}: {name}", "time": t, "cif": y, "linestyle": ls})
        if curves:
            blocks.append(self.add_figure("cif", F.cif_plot(curves),
                                          "Cumulative incidence of discharge home (solid) with in-hospital death as a competing event (dashed), by exposure group; "
                                          f"for disclosure control each step groups at least {step} events and curves end where fewer than {step} patients remain at risk."))
        else:
            blocks.append(absent("No cumulative incidence curves in the results (competing-risks analysis absent or not run)."))
        rows = self._rows("competing")
        if not rows.empty:
            t = self._estimate_table(rows, "competing", "Discharge home: cause-specific and Fine–Gray hazard ratios", ratio="HR")
            t.notes = ["Cause-specific hazard ratios (Cox, in-hospital death censored) and Fine–Gray subdistribution hazard "
                       "ratios (in-hospital death as a competing event). HR > 1: earlier discharge home."]
            blocks.append(self.add_table(t))
        else:
            blocks.append(absent("No cause-specific or Fine–Gray estimates in the results."))
        return blocks

    # -- 9 ------------------------------------------------------------------------------------
    def s_variation(self) -> list[str]:
        r = self.inp.results
        if r is None:
            return [absent("No results: the analyses stage did not run.")]
        blocks = [failed(m) for m in r.failed("profil", "funnel", "variation")]
        hv = r.extra("hospital_variation", "variation", "mor")
        if hv:
            frame = pd.DataFrame(hv if isinstance(hv, list) else [hv])
            wanted = [c for c in ("outcome", "model", "mor", "mor_low", "mor_high", "icc", "random_sd", "variance", "clusters", "n") if c in frame.columns]
            frame = frame[wanted or [c for c in frame.columns if c != "hospital_id"]]
            shown = pd.DataFrame({_nice(c): [(fmt_num(v, 3) if isinstance(v, float) else (fmt_count(v, self.t) if c in ("clusters", "n", "hospitals")
                                              else (label(str(v)) if c == "outcome" else ("" if v is None else str(v)))))
                                             for v in frame[c]] for c in frame.columns})
            blocks.append(self.add_table(ReportTable("hospital_variation", "Hospital variation: median odds ratio and ICC", shown,
                                                     ["Median odds ratio (MOR): the median OR between two patients with identical covariates treated "
                                                      "at two randomly chosen hospitals. ICC on the latent scale (π²/3 residual variance)."])))
        else:
            blocks.append(absent("No median odds ratio / ICC in the results."))
        fun = r.extra("funnel", "profiling")
        if isinstance(fun, dict) and (fun.get("hospitals") or fun.get("points")):
            pts = pd.DataFrame(fun.get("hospitals") or fun.get("points"))
            ncol = next((c for c in ("n", "cases", "patients") if c in pts.columns), None)
            rcol = next((c for c in ("rsr", "rate", "risk_standardized_rate", "rsmr", "standardized_rate") if c in pts.columns), None)
            if ncol and rcol:
                n = pd.to_numeric(pts[ncol], errors="coerce")
                keep = n >= self.t
                dropped = int((~keep).sum())
                if isinstance(fun.get("hospitals_not_drawn"), int):
                    dropped += int(fun["hospitals_not_drawn"])
                limits = fun.get("limits", [])
                if isinstance(limits, dict):
                    limits = [{"coverage": k, **v} for k, v in limits.items()]
                limits = [_numeric_limits(l, self.t) for l in limits if isinstance(l, dict)]
                overall = _float(fun.get("overall_rate", fun.get("overall", fun.get("target"))))
                fig = F.funnel_plot(n[keep], pd.to_numeric(pts.loc[keep, rcol]), overall if overall is not None else float("nan"),
                                    [l for l in limits if _arr(l, "n") is not None])
                outcome = label(str(fun.get("outcome", "death_30d"))).lower()
                cap = (f"Funnel plot of risk-standardized {outcome} by hospital (anonymous), with control limits. "
                       f"Hospitals with fewer than {self.t} patients are not drawn ({fmt_count(dropped, self.t)} hospitals).")
                blocks.append(self.add_figure("funnel", fig, cap))
            else:
                blocks.append(failed("The funnel data in results.json lack a cases or rate column."))
        else:
            blocks.append(absent("No funnel-plot data in the results (profiling absent or not run)."))
        return blocks

    # -- 10 -----------------------------------------------------------------------------------
    def s_trends(self) -> list[str]:
        df = self.inp.analytic
        if df is None or "fiscal_year" not in df.columns:
            return [absent("No analytic dataset with fiscal years: no trends.")]
        r = self.inp.results
        tests = {}
        tr = r.extra("trends", "trend_tests") if r else None
        if isinstance(tr, dict) and "tests" in tr:
            tr = tr["tests"]
        if isinstance(tr, dict):
            tr = [{"outcome": k, **(v if isinstance(v, dict) else {"p_value": v})} for k, v in tr.items()]
        for x in tr or []:
            if isinstance(x, dict):
                key = x.get("outcome", x.get("column", x.get("variable")))
                tests[key] = {"p_value": x.get("p_value"), "test": x.get("test", x.get("method", ""))}
        tspec = self.analyses.get("trends", {}) or {}
        props = [c for c in tspec.get("proportions", ["death_30d", "in_hospital_death"]) if c in df.columns]
        cont = [c for c in tspec.get("continuous", ["postop_los"]) if c in df.columns]
        t = trends_table(df, "fiscal_year", props, cont, tests, self.t)
        blocks = [self.add_table(t)]
        if not tests:
            blocks.append(absent("No trend tests in the results (trends analysis absent or not run)."))
        years = sorted(df["fiscal_year"].dropna().unique().tolist())
        counts = np.array([(df["fiscal_year"] == y).sum() for y in years])
        shown_counts = [None if 0 < c < self.t else int(c) for c in counts]
        series = {}
        for out in props:
            ev = np.array([as_bool(df.loc[df["fiscal_year"] == y, out]).sum() for y in years])
            hide = suppress_table(np.vstack([ev, counts - ev]), self.t)
            series[label(out)] = [None if hide[0, i] or shown_counts[i] is None or counts[i] == 0 else ev[i] / counts[i]
                                  for i in range(len(years))]
        blocks.append(self.add_figure("trends", F.trends_plot([int(y) for y in years], shown_counts, series),
                                      "Patients per fiscal year (bars) and outcome proportions (lines); suppressed values are not drawn."))
        return blocks

    # -- 11 -----------------------------------------------------------------------------------
    def s_reference(self) -> list[str]:
        blocks = []
        if self.inp.published is not None and _names_published(self.inp.study):
            blocks.append(self.add_table(published_vs_run(self.inp.published, self.inp.analytic, self.inp.results, self.analyses, self.t)))
        else:
            blocks.append(absent("The study file names no published reference: no published-vs-this-run comparison."))
        if self.inp.truth is not None:
            t = planted_vs_estimated(self.inp.truth, self.inp.results, self.analyses)
            blocks.append(self.add_table(t) if not t.frame.empty else absent("truth.json holds no planted effect that matches an estimate of this run."))
        else:
            blocks.append(absent("Not a synthetic database (no truth.json): no planted-vs-estimated comparison."))
        return blocks

    # -- 12 -----------------------------------------------------------------------------------
    def s_methods(self) -> list[str]:
        return [methods_html(self.inp.study, self.t), self.add_table(record_checklist())]

    def build(self) -> tuple[list[dict], str]:
        st = self.inp.study.get("study", {}) or {}
        title = st.get("title") or st.get("name") or "hospstudy report"
        parts = [self.s_overview, self.s_flow, self.s_table1, self.s_crude, self.s_adjusted, self.s_volume, self.s_weighting,
                 self.s_los, self.s_variation, self.s_trends, self.s_reference, self.s_methods]
        sections = []
        for k, ((sid, stitle), fn) in enumerate(zip(SECTION_TITLES, parts), start=1):
            sections.append({"id": sid, "number": k, "title": stitle or title, "blocks": self.guarded(stitle or "Overview", fn)})
        return sections, title


# --------------------------------------------------------------------------------------------
# published vs this run; planted vs estimated
# --------------------------------------------------------------------------------------------
def _names_published(study: dict) -> bool:
    refs = (study.get("study") or {}).get("references", ()) or ()
    text = json.dumps(study.get("study", {})) + " ".join(map(str, refs))
    return "published" in text.lower() or bool(refs)


def _primary_row(results: Results | None, outcome: str, exposure: str, analyses: dict, kind: str = "adjusted") -> pd.Series | None:
    """The primary estimate of an outcome × exposure: the first model of ``[analyses] models``
    (``cause_specific`` for competing risks), mutually adjusted when that analysis exists."""
    if results is None or results.table.empty:
        return None
    t = results.table
    rows = t[(classify(t) == kind) & exposure_term_mask(t) & (t["outcome"] == outcome) & (t["exposure"] == exposure)]
    if rows.empty:
        return None
    models = (["cause_specific", "fine_gray"] if kind == "competing"
              else list(analyses.get("models", [])) or ["mixed_logit", "gee_logit", "logit"])
    for m in models:
        h = rows[rows["model"] == m]
        if len(h):
            mutual = h[h["analysis"].astype(str).str.contains("mutual")]
            return (mutual if len(mutual) else h).iloc[0]
    return rows.iloc[0]


def published_vs_run(published: dict, df: pd.DataFrame | None, results: Results | None, analyses: dict,
                     threshold: int = DEFAULT_THRESHOLD) -> ReportTable:
    """One row per published figure of the flagship's sources, beside this run's value."""
    src = (published.get("source") or {})
    inst = src.get("institutional_function", {})
    trends = src.get("trends", {})
    rows = []

    def add(source, figure, pub, run):
        rows.append({"Source": source, "Figure": figure, "Published": pub, "This run": run})

    cohort, outs, adj = inst.get("cohort", {}), inst.get("outcomes", {}), inst.get("adjusted", {})
    have = df is not None
    pct = lambda x: f"{100 * x:.1f}%"  # noqa: E731

    def safe_rate(flags) -> str:
        """A proportion, unless it and its denominator would reveal a small count of patients
        with or without the event."""
        flags = np.asarray(flags, dtype=bool)
        if not len(flags):
            return "no data"
        k = int(flags.sum())
        if 0 < k < threshold or 0 < len(flags) - k < threshold or len(flags) < threshold:
            return f"suppressed (a count below {threshold})"
        return pct(k / len(flags))

    def rate(col, frame=None):
        frame = df if frame is None else frame
        if not have or col not in frame.columns:
            return "not computed"
        return safe_rate(frame[col].dropna().astype(bool))

    if cohort:
        add("Yamada 2025", "Patients", f"{cohort.get('patients', ''):,}", fmt_count(len(df), threshold) if have else "not computed")
        if "patients_cancer_center" in cohort:
            add("Yamada 2025", "Patients at cancer centers", f"{cohort['patients_cancer_center']:,}",
                _count_with_complement(as_bool(df["cancer_center"]), threshold) if have and "cancer_center" in df.columns else "not computed")
        if "median_annual_spine_surgery_volume" in cohort:
            run = "not computed"
            if have and "volume" in df.columns:
                keys = [c for c in ("hospital_id", "fiscal_year") if c in df.columns]
                run = (f"{df['volume'].median():.0f} (median over patients); "
                       f"{df.drop_duplicates(keys)['volume'].median():.0f} (over hospital-years)")
            add("Yamada 2025", "Median annual spine-surgery volume per hospital", str(cohort["median_annual_spine_surgery_volume"]), run)
    mapping = [("in_hospital_mortality", "In-hospital mortality", "in_hospital_death"), ("mortality_30d", "30-day mortality", "death_30d"),
               ("discharged_home", "Discharged home", "discharged_home"), ("postoperative_complications", "Postoperative complications", "complication"),
               ("unfavorable_ambulatory_status", "Unfavorable ambulatory status", "unfavorable_ambulatory")]
    for key, name, col in mapping:
        if key in outs:
            add("Yamada 2025", name, pct(outs[key]), rate(col))
    if "median_postoperative_los_days" in outs:
        add("Yamada 2025", "Median postoperative length of stay, days", str(outs["median_postoperative_los_days"]),
            f"{df['postop_los'].median():.0f}" if have and "postop_los" in df.columns else "not computed")
    for exp, pre, name in (("cancer_center", "cancer_center", "30-day mortality OR, cancer center"),
                           ("volume_per50", "volume_per_50", "30-day mortality OR, per 50 cases of volume")):
        if f"{pre}_or" in adj:
            ci = adj.get(f"{pre}_ci", [float("nan")] * 2)
            row = _primary_row(results, "death_30d", exp, analyses)
            run = "not estimated" if row is None else f"{fmt_ci(*_ratio(row), digits=3)}; p {fmt_p(row['p_value'])} ({row['model']}, {row['scale']})"
            add("Yamada 2025", name, f"{adj[f'{pre}_or']:.3f} ({ci[0]:.3f}–{ci[1]:.3f}); p {adj.get(f'{pre}_p', '')}", run)
    if trends and have and "fiscal_year" in df.columns:
        for y in (2012, 2020):
            sub = df[df["fiscal_year"] == y]
            if f"surgeries_{y}" in trends:
                add("Yamada 2024", f"Surgeries, fiscal {y}", f"{trends[f'surgeries_{y}']:,}", fmt_count(len(sub), threshold) if len(sub) else "no data")
            if f"fusion_share_{y}" in trends and "surgery_type" in sub.columns:
                add("Yamada 2024", f"Fusion share, fiscal {y}", pct(trends[f"fusion_share_{y}"]), safe_rate(sub["surgery_type"] == "fusion"))
            if f"in_hospital_mortality_{y}" in trends and "in_hospital_death" in sub.columns:
                add("Yamada 2024", f"In-hospital mortality, fiscal {y}", pct(trends[f"in_hospital_mortality_{y}"]),
                    rate("in_hospital_death", sub))
            if f"los_days_{y}" in trends and "postop_los" in sub.columns:
                add("Yamada 2024", f"Length of stay, fiscal {y} (here: postoperative, median)", str(trends[f"los_days_{y}"]),
                    f"{sub['postop_los'].median():.0f}" if len(sub) else "no data")
    notes = ["Published figures: Yamada et al., Clin Spine Surg 2025 (institutional function) and Int J Clin Oncol 2024 (trends), "
             "copied into hospstudy (report/published.toml). On synthetic data the agreement shows calibration, not a replication."]
    return ReportTable("published_vs_run", "Published vs this run", pd.DataFrame(rows), notes)


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    else:
        out[prefix] = d
    return out


def planted_vs_estimated(truth: dict, results: Results | None, analyses: dict) -> ReportTable:
    """Planted effects of the synthetic database beside this run's primary estimates.

    A planted effect is a number of ``truth.json`` at ``effects.<outcome>.<exposure>_or`` (odds
    ratio; ``_log_or`` for a log odds ratio) or ``..._hr`` (hazard ratio, matched to the
    cause-specific model), for every outcome × exposure the results estimate. Planted nulls
    (OR 1) are listed too: the pipeline should not find effects that were not planted.
    """
    effects = truth.get("effects", {}) if isinstance(truth, dict) else {}
    rows = []
    if results is None or results.table.empty or not isinstance(effects, dict):
        return ReportTable("planted_vs_estimated", "Planted vs estimated", pd.DataFrame())
    t = results.table
    pairs = t.loc[exposure_term_mask(t), ["outcome", "exposure"]].drop_duplicates().astype(str)
    for outcome, exposure in pairs.itertuples(index=False):
        planted_block = effects.get(outcome)
        if not isinstance(planted_block, dict):
            continue
        for suffix, kind, ratio in (("_or", "adjusted", "OR"), ("_log_or", "adjusted", "OR"), ("_hr", "competing", "HR")):
            value = planted_block.get(exposure + suffix)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            planted = math.exp(value) if suffix == "_log_or" else float(value)
            row = _primary_row(results, outcome, exposure, analyses, kind)
            if row is None:
                continue
            est, lo, hi = _ratio(row)
            covered = bool(lo <= planted <= hi) if np.isfinite([lo, hi]).all() else None
            rows.append({"Outcome": label(outcome), "Exposure": label(exposure), "Planted": f"{ratio} {planted:.3f}",
                         f"Estimated (95% CI)": fmt_ci(est, lo, hi, 3),
                         "Model": f"{MODEL_LABELS.get(str(row['model']), row['model'])} ({row['scale']}, {row['analysis']})",
                         "Planted value inside CI": "" if covered is None else ("yes" if covered else "no")})
    notes = ["Planted values are conditional (within-hospital) effects of the data-generating model (truth.json, "
             "effects.<outcome>.<exposure>_or); the random-intercept model estimates the same quantity, GEE and "
             "weighted models a marginal one closer to 1. A 95% CI misses the planted value in 1 run of 20 by design."]
    return ReportTable("planted_vs_estimated", "Planted vs estimated (synthetic database)", pd.DataFrame(rows), notes)


# --------------------------------------------------------------------------------------------
# methods and RECORD
# --------------------------------------------------------------------------------------------
def methods_html(study: dict, threshold: int) -> str:
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
    return "".join(blocks)


RECORD_ITEMS = [
    ("1.1", "Type of data and databases used named in title/abstract", "Section 1 (data source)"),
    ("1.2", "Geographic region and timeframe", "Section 1 (study period)"),
    ("1.3", "Linkage between databases", "Not applicable: one database (DPC layout)"),
    ("6.1", "Methods of study population selection (codes and algorithms)", "Section 2 flow diagram; Section 12 code lists"),
    ("6.2", "Validation studies of the codes", "Section 12 (code list sources); docs/"),
    ("6.3", "Linkage flow diagram", "Not applicable: no linkage"),
    ("7.1", "Complete list of codes and algorithms for exposures, outcomes, confounders", "Section 12 methods and code lists"),
    ("12.1", "Extent of investigator access to the database", "Section 1 (database, input file hashes)"),
    ("12.2", "Data cleaning methods", "Section 2 (validation and attrition)"),
    ("12.3", "Linkage methods", "Not applicable"),
    ("13.1", "Selection of persons in the population, flow diagram", "Section 2"),
    ("19.1", "Limitations: misclassification, missing data, unmeasured confounding", "Sections 3 (missing counts), 7 (E-values)"),
    ("22.1", "Access to protocol, raw data or programming code", "Section 1 (study file hash, software versions, seed)"),
]


def record_checklist() -> ReportTable:
    frame = pd.DataFrame(RECORD_ITEMS, columns=["RECORD item", "Recommendation", "Where this report answers it"])
    return ReportTable("record_checklist", "RECORD checklist (Benchimol et al. 2015)", frame)


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------
def _is_bool(s: pd.Series) -> bool:
    return str(s.dtype) in ("bool", "boolean") or (s.dropna().map(type).eq(bool).all() and s.notna().any())


def _int(v) -> int | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if not np.isfinite(f) else int(round(f))


def _float(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


def _arr(d: dict, *names: str):
    for n in names:
        if n in d and d[n] is not None:
            a = np.asarray(d[n], dtype=float)
            if a.ndim == 1 and a.size:
                return a
    return None


def _ratio(x: pd.Series) -> tuple[float, float, float]:
    est = x.get("exp_estimate")
    if est is None or not np.isfinite(float(est)):
        return float(np.exp(x["estimate"])), float(np.exp(x["conf_low"])), float(np.exp(x["conf_high"]))
    return float(est), float(x["exp_conf_low"]), float(x["exp_conf_high"])


def _term_label(term: str, exposure: str) -> str:
    if term == exposure:
        return label(exposure)
    if "[T." in term:
        lvl = term.split("[T.", 1)[1].rstrip("]")
        if exposure.endswith("quartile"):
            return f"Q{lvl} vs Q1"
        return f"{label(exposure)}: {lvl}"
    return term


def _level_orders(study: dict) -> dict[str, list]:
    """Level order of categorical columns as the study file defines them: the labels of a
    'cut' (then its missing label), the values of a 'case' in order (then its default)."""
    out: dict[str, list] = {}
    for sec in ("exposures", "covariates", "outcomes"):
        for name, d in (study.get(sec) or {}).items():
            if not isinstance(d, dict):
                continue
            if d.get("labels"):
                out[name] = list(d["labels"]) + ([d["missing_label"]] if d.get("missing_label") else [])
            elif d.get("cases"):
                vals = [c.get("value") for c in d["cases"] if isinstance(c, dict)]
                out[name] = list(dict.fromkeys(vals + ([d["default"]] if d.get("default") is not None else [])))
    return out


def _count_with_complement(flags: np.ndarray, threshold: int) -> str:
    """A count published beside its total: hidden when it or the rest of the total is small."""
    k, n = int(np.sum(flags)), len(flags)
    if 0 < n - k < threshold and not 0 < k < threshold:
        return fmt_count(k, threshold, True)
    return fmt_count(k, threshold)


def _adjustment(analysis: str, model: str) -> str:
    """The adjustment set of a result row: the analysis name without its model's name
    (``cause_specific_mutual`` → ``mutual``; ``cause_specific`` → ``alone``)."""
    rest = analysis.replace(model, "").strip("_ ")
    return {"weighting_iptw": "IPTW", "weighting_overlap": "overlap weights"}.get(rest, rest or "alone")


def _numeric_limits(lim: dict, threshold: int) -> dict:
    """Funnel limits with the x values that publication suppressed (``"<10"``) dropped."""
    n = pd.to_numeric(pd.Series(lim.get("n", [])), errors="coerce")
    keep = (n >= threshold).to_numpy()
    out = dict(lim)
    out["n"] = n[keep].tolist()
    for k in ("lower", "upper"):
        v = pd.to_numeric(pd.Series(lim.get(k, [])), errors="coerce")
        out[k] = v[keep].tolist() if len(v) == len(n) else []
    return out


def _group_label(g: str) -> str:
    if "=" in g:
        col, lvl = g.split("=", 1)
        if col == "cancer_center":
            return "Cancer center" if lvl in ("1", "True", "true") else "Other hospital"
        return f"{label(col)} {lvl}"
    return {"True": "Cancer center", "False": "Other hospital", "1": "Cancer center", "0": "Other hospital"}.get(g, g)


def _nice(c: str) -> str:
    return {"mor": "MOR", "icc": "ICC", "evalue": "E-value (estimate)", "odds_ratio": "OR", "random_sd": "Random-intercept SD", "evalue_estimate": "E-value (estimate)", "evalue_ci": "E-value (CI limit)",
            "mor_low": "MOR lower", "mor_high": "MOR upper", "clusters": "Hospitals", "n": "N", "outcome": "Outcome", "model": "Model", "exposure": "Exposure",
            "analysis": "Adjustment", "conversion": "OR to RR conversion", "variance": "Random-intercept variance"}.get(c, c.replace("_", " "))


# --------------------------------------------------------------------------------------------
# entry points
# --------------------------------------------------------------------------------------------
def _template():
    import jinja2

    text = resources.files("hospstudy.report").joinpath("templates/report.html.j2").read_text(encoding="utf-8")
    env = jinja2.Environment(autoescape=False, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.from_string(text)


def render_report(inputs: ReportInputs, out_dir: str | Path) -> ReportArtifacts:
    """Write report.html, tables.xlsx, figures/ and attrition.csv into ``out_dir``.

    Every count shown has passed the disclosure rules of :mod:`hospstudy.report.disclosure`
    at ``inputs.threshold``. Sections whose inputs are absent say so in the report.
    """
    from hospstudy.report.xlsx import write_tables

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if (out_dir / "figures").is_dir():
        for f in (out_dir / "figures").iterdir():
            if f.suffix in (".svg", ".png"):
                f.unlink()
    b = _Builder(inputs, out_dir)
    sections, title = b.build()
    html = _template().render(title=title, sections=sections, synthetic=inputs.truth is not None)
    path = out_dir / "report.html"
    path.write_text(html, encoding="utf-8")
    if inputs.attrition is not None:
        safe_attrition(inputs.attrition, inputs.threshold).to_csv(out_dir / "attrition.csv", index=False)
    xlsx = write_tables(b.tables, out_dir / "tables.xlsx", title=title, synthetic=inputs.truth is not None)
    return ReportArtifacts(path, xlsx, b.figures, b.tables, [s["title"] for s in sections])


def published_reference() -> dict:
    """The published figures copied into hospstudy (``report/published.toml``)."""
    text = resources.files("hospstudy.report").joinpath("published.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def load_inputs(out_dir: str | Path) -> ReportInputs:
    """What ``hospstudy run`` stored in OUT: run.json, study.toml, private/analytic.parquet,
    private/attrition.csv, private/analyses/results.json (else results.json) and the
    database's truth.json (the copy in private/, else the data folder recorded in run.json)."""
    out_dir = Path(out_dir)
    run_path = out_dir / "run.json"
    if not run_path.is_file():
        raise InputError(f"{out_dir}: no run.json; this folder was not written by `hospstudy run`")
    run_info = json.loads(run_path.read_text(encoding="utf-8"))
    study_path = out_dir / "study.toml"
    try:
        study = tomllib.loads(study_path.read_text(encoding="utf-8"))
    except (FileNotFoundError, tomllib.TOMLDecodeError) as e:
        raise InputError(f"{study_path}: cannot read the stored study file ({e})") from None
    priv = out_dir / "private"
    attrition = pd.read_csv(priv / "attrition.csv") if (priv / "attrition.csv").is_file() else None
    analytic = pd.read_parquet(priv / "analytic.parquet") if (priv / "analytic.parquet").is_file() else None
    res_path = next((p for p in (priv / "analyses" / "results.json", out_dir / "results.json") if p.is_file()), None)
    results = Results.load(res_path) if res_path else None
    truth = None
    data_dir = run_info.get("data")
    if (priv / "truth.json").is_file():
        truth = json.loads((priv / "truth.json").read_text(encoding="utf-8"))
    elif data_dir and (Path(data_dir) / "truth.json").is_file():
        truth = json.loads((Path(data_dir) / "truth.json").read_text(encoding="utf-8"))
    return ReportInputs(study, attrition, analytic, results, truth, run_info, published_reference(),
                        int(run_info.get("threshold", DEFAULT_THRESHOLD)))


def build_report(out_dir: str | Path) -> ReportArtifacts:
    """Re-render the report of a run from what it stored in ``out_dir``."""
    return render_report(load_inputs(out_dir), out_dir)
