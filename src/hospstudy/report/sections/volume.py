"""Volume–outcome: the spline curve, volume quartiles and their ranges."""

from __future__ import annotations

import numpy as np
import pandas as pd

from hospstudy.report import figures as F
from hospstudy.privacy import fmt_count, suppress_table
from hospstudy.report.format import absent, array, failed, fmt_p, to_float
from hospstudy.report.labels import label
from hospstudy.report.sections import Context, SectionSpec
from hospstudy.report.sections._results import estimate_table, result_rows
from hospstudy.report.tables import ReportTable


def build(ctx: Context) -> list[str]:
    r = ctx.inp.results
    blocks = []
    curve = r.extra("volume_curve", "spline", "spline_curve", "volume_spline") if r else None
    if isinstance(curve, dict) and curve.get("curves"):
        curve = curve["curves"][0] if isinstance(curve["curves"], list) else curve
    if isinstance(curve, list):
        want = (ctx.analyses.get("profiling") or {}).get("outcome", "death_30d")
        curve = next((c for c in curve if isinstance(c, dict) and c.get("outcome") == want), curve[0] if curve else None)
    if curve:
        v = array(curve, "volume", "x", "grid")
        est = array(curve, "or", "odds_ratio", "exp_estimate", "estimate")
        lo = array(curve, "conf_low", "or_low", "exp_conf_low", "lower")
        hi = array(curve, "conf_high", "or_high", "exp_conf_high", "upper")
        if curve.get("scale") == "log" or (est is not None and "log_or" in curve):
            est, lo, hi = np.exp(est), np.exp(lo), np.exp(hi)
        rug = _volume_rug(ctx)
        ref = curve.get("reference_volume", curve.get("reference"))
        if v is not None and est is not None and lo is not None and hi is not None:
            nl = to_float(curve.get("nonlinearity_p"))
            cap = (f"Odds ratio of {label(str(curve.get('outcome', 'death_30d'))).lower()} against annual hospital volume "
                   f"(restricted cubic spline{', ' + str(len(curve['knots'])) + ' knots' if curve.get('knots') else ''}, "
                   f"{curve.get('model', '')} {curve.get('result_scale', '')}; 95% CI band), relative to "
                   f"{ref if ref is not None else 'the reference'} cases"
                   + (f"; test of non-linearity p = {fmt_p(nl)}" if nl is not None else "")
                   + f". Ticks: volumes of hospital-years with at least {ctx.t} cases.")
            blocks.append(ctx.add_figure("volume_curve", F.volume_curve(v, est, lo, hi, rug, to_float(ref)), cap))
        else:
            blocks.append(failed("The spline curve in results.json lacks volume, estimate or interval arrays."))
    else:
        msg = r.failed("spline") if r else []
        blocks += [failed(m) for m in msg] or [absent("No volume–outcome spline curve in the results (analysis absent or not run).")]
    rows = result_rows(ctx, "quartile")
    if not rows.empty:
        blocks.append(ctx.add_table(estimate_table(ctx, rows, "volume_quartiles", "Volume quartiles: adjusted odds ratios (reference Q1)")))
    else:
        blocks.append(absent("No volume-quartile model results."))
    df = ctx.inp.analytic
    if df is not None and ctx.quartile_col in df.columns and ctx.volume_col in df.columns:
        q = df.groupby(ctx.quartile_col)[ctx.volume_col].agg(["min", "max", "median", "size"]).reset_index()
        hide = suppress_table(q["size"].to_numpy()[None, :], ctx.t, margins=(True, False))[0]
        frame = pd.DataFrame({"Quartile": [f"Q{int(x)}" for x in q[ctx.quartile_col]],
                              "Volume range (cases/year)": [f"{fmt_count(int(a), ctx.t)}–{int(b)}" for a, b in zip(q["min"], q["max"])],
                              "Median volume": [f"{m:.0f}" for m in q["median"]],
                              "Patients": [fmt_count(int(n), ctx.t, h) for n, h in zip(q["size"], hide)]})
        blocks.append(ctx.add_table(ReportTable("quartile_ranges", "Volume quartiles: ranges and patients", frame)))
    return blocks

def _volume_rug(ctx) -> list[float]:
    df = ctx.inp.analytic
    if df is None or ctx.volume_col not in df.columns:
        return []
    keys = [c for c in ("hospital_id", "fiscal_year") if c in df.columns]
    v = df.drop_duplicates(keys)[ctx.volume_col] if keys else df[ctx.volume_col]
    v = pd.to_numeric(v, errors="coerce").dropna()
    return sorted(v[v >= ctx.t].tolist())


SECTION = SectionSpec("volume", "Volume–outcome relationship", build, record=())
