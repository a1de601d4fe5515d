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


def _curves(ctx: Context) -> list[dict]:
    """The spline curves of results.json, one per outcome, the profiling outcome (else 30-day
    death) first, then in the study's outcome order."""
    r = ctx.inp.results
    curve = r.extra("volume_curve", "spline", "spline_curve", "volume_spline") if r else None
    if isinstance(curve, dict) and curve.get("curves"):
        curve = curve["curves"]
    if isinstance(curve, dict):
        curve = [curve]
    curves = [c for c in (curve or []) if isinstance(c, dict)]
    first = (ctx.analyses.get("profiling") or {}).get("outcome", "death_30d")
    order = [first, *ctx.binary_outcomes]
    return sorted(curves, key=lambda c: order.index(c.get("outcome")) if c.get("outcome") in order else len(order))


def adjustment_text(ctx: Context) -> str:
    """The spline model's adjustment set, from the settings that ran it: the exposures other
    than volume and the covariates."""
    from hospstudy.report.sections.methods import _join, _lower, _spec

    spec = _spec(ctx.inp.study)
    if spec is None:
        return ""
    v = spec.volume
    others = [e for e in spec.exposures if v is None or e not in (v.linear_exposure, v.column, v.quartile_column)]
    parts = [_join([_lower(label(e)) for e in others])] if others else []
    if spec.covariates:
        parts.append(f"the covariates ({_join([_lower(label(c)) for c in spec.covariates])})")
    return f"Adjusted for {_join(parts)}." if parts else "Unadjusted."


_RANGE_UNITS = {"hospital-years": ("hospital_id", "fiscal_year"), "hospitals": ("hospital_id",), "patients": ()}


def _range_text(ctx: Context, v: np.ndarray, basis: str | None) -> str:
    """Where the curve's x-range comes from, checked against the data: the analyses draw it from
    the 1st to the 99th percentile of the hospital-years' annual volume (``range_basis`` of the
    curve: each hospital-year once, not once per patient)."""
    lo, hi = float(np.nanmin(v)), float(np.nanmax(v))
    df = ctx.inp.analytic
    keys = _RANGE_UNITS.get(str(basis)) if basis else None
    if df is not None and ctx.volume_col in df.columns and keys is not None and set(keys) <= set(df.columns):
        units = df.drop_duplicates(list(keys)) if keys else df
        vol = pd.to_numeric(units[ctx.volume_col], errors="coerce").dropna()
        if len(vol):
            p1, p99 = np.quantile(vol, [0.01, 0.99])
            if abs(p1 - lo) <= 0.05 + 1e-9 and abs(p99 - hi) <= 0.05 + 1e-9:
                of = {"hospital-years": "the hospital-years' annual volume, each hospital-year counted once",
                      "hospitals": "the hospitals' annual volume", "patients": "the patients' annual hospital volume"}[str(basis)]
                return (f"The curve spans {lo:.0f}–{hi:.0f} cases: the 1st to the 99th percentile of {of}; "
                        "the extremes are not drawn because few patients inform them.")
    return f"The curve spans {lo:.0f}–{hi:.0f} cases."


def build(ctx: Context) -> list[str]:
    r = ctx.inp.results
    blocks = []
    curves = _curves(ctx)
    adjust = adjustment_text(ctx)
    for k, curve in enumerate(curves):
        v = array(curve, "volume", "x", "grid")
        est = array(curve, "or", "odds_ratio", "exp_estimate", "estimate")
        lo = array(curve, "conf_low", "or_low", "exp_conf_low", "lower")
        hi = array(curve, "conf_high", "or_high", "exp_conf_high", "upper")
        outcome = str(curve.get("outcome", "death_30d"))
        if v is None or est is None or lo is None or hi is None:
            blocks.append(failed(f"The spline curve of {label(outcome).lower()} in results.json lacks volume, estimate or "
                                 "interval arrays."))
            continue
        if curve.get("scale") == "log" or "log_or" in curve:
            est, lo, hi = np.exp(est), np.exp(lo), np.exp(hi)
        rug = _volume_rug(ctx, float(np.nanmin(v)), float(np.nanmax(v)))
        ref = curve.get("reference_volume", curve.get("reference"))
        nl = to_float(curve.get("nonlinearity_p"))
        model = label(str(curve.get("model", ""))) if curve.get("model") else ""
        from hospstudy.report.sections.methods import _lower

        name = _lower(label(outcome))
        cap = (f"Odds ratio of {name} against annual hospital volume "
               f"(restricted cubic spline{', ' + str(len(curve['knots'])) + ' knots' if curve.get('knots') else ''}"
               f"{', ' + model.lower() if model else ''}; 95% CI band), relative to "
               f"{f'{to_float(ref):.0f}' if to_float(ref) is not None else 'the reference'} cases a year (dotted line)"
               + (f"; test of non-linearity p = {fmt_p(nl)}" if nl is not None else "") + ". "
               + _range_text(ctx, v, curve.get("range_basis")) + (f" {adjust}" if adjust else "")
               + f" Ticks at the bottom: annual volumes of the hospital-years with at least {ctx.t} cases within the "
                 "curve's range.")
        fig = F.volume_curve(v, est, lo, hi, rug, to_float(ref), ylabel=f"Odds ratio of {name}" + ("\n" if len(name) > 22 else " ") + "(95% CI)")
        blocks.append(ctx.add_figure("volume_curve" if k == 0 else f"volume_curve_{outcome}", fig, cap))
    if not curves:
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

def _volume_rug(ctx, lo: float = -np.inf, hi: float = np.inf) -> list[float]:
    df = ctx.inp.analytic
    if df is None or ctx.volume_col not in df.columns:
        return []
    keys = [c for c in ("hospital_id", "fiscal_year") if c in df.columns]
    v = df.drop_duplicates(keys)[ctx.volume_col] if keys else df[ctx.volume_col]
    v = pd.to_numeric(v, errors="coerce").dropna()
    return sorted(v[(v >= ctx.t) & (v >= lo) & (v <= hi)].tolist())


SECTION = SectionSpec("volume", "Volume–outcome relationship", build, record=())
