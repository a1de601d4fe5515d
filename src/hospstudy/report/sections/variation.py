"""Hospital variation: median odds ratio, ICC and the funnel plot."""

from __future__ import annotations

import pandas as pd

from hospstudy.report import figures as F
from hospstudy.privacy import fmt_count
from hospstudy.report.format import absent, array, failed, fmt_num, to_float
from hospstudy.report.labels import label
from hospstudy.report.sections import Context, SectionSpec
from hospstudy.report.sections._results import nice_column
from hospstudy.report.tables import ReportTable


def build(ctx: Context) -> list[str]:
    r = ctx.inp.results
    if r is None:
        return [absent("No results: the analyses stage did not run.")]
    blocks = [failed(m) for m in r.failed("profil", "funnel", "variation")]
    hv = r.extra("hospital_variation", "variation", "mor")
    if hv:
        frame = pd.DataFrame(hv if isinstance(hv, list) else [hv])
        wanted = [c for c in ("outcome", "model", "mor", "mor_low", "mor_high", "icc", "random_sd", "variance", "clusters", "n") if c in frame.columns]
        frame = frame[wanted or [c for c in frame.columns if c != "hospital_id"]]
        shown = pd.DataFrame({nice_column(c): [(fmt_num(v, 3) if isinstance(v, float) else (fmt_count(v, ctx.t) if c in ("clusters", "n", "hospitals")
                                          else (label(str(v)) if c == "outcome" else ("" if v is None else str(v)))))
                                         for v in frame[c]] for c in frame.columns})
        blocks.append(ctx.add_table(ReportTable("hospital_variation", "Hospital variation: median odds ratio and ICC", shown,
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
            keep = n >= ctx.t
            dropped = int((~keep).sum())
            if isinstance(fun.get("hospitals_not_drawn"), int):
                dropped += int(fun["hospitals_not_drawn"])
            limits = fun.get("limits", [])
            if isinstance(limits, dict):
                limits = [{"coverage": k, **v} for k, v in limits.items()]
            limits = [_numeric_limits(l, ctx.t) for l in limits if isinstance(l, dict)]
            overall = to_float(fun.get("overall_rate", fun.get("overall", fun.get("target"))))
            fig = F.funnel_plot(n[keep], pd.to_numeric(pts.loc[keep, rcol]), overall if overall is not None else float("nan"),
                                [l for l in limits if array(l, "n") is not None])
            outcome = label(str(fun.get("outcome", "death_30d"))).lower()
            cap = (f"Funnel plot of risk-standardized {outcome} by hospital (anonymous), with control limits. "
                   f"Hospitals with fewer than {ctx.t} patients are not drawn ({fmt_count(dropped, ctx.t)} hospitals).")
            blocks.append(ctx.add_figure("funnel", fig, cap))
        else:
            blocks.append(failed("The funnel data in results.json lack a cases or rate column."))
    else:
        blocks.append(absent("No funnel-plot data in the results (profiling absent or not run)."))
    return blocks


SECTION = SectionSpec("variation", "Hospital variation", build, record=())


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
