"""Hospital variation: median odds ratio, ICC and the funnel plot."""

from __future__ import annotations

import pandas as pd

from hospstudy.report import figures as F
from hospstudy.privacy import fmt_count
from hospstudy.report.format import absent, array, failed, fmt_num, to_float
from hospstudy.report.labels import label
from hospstudy.report.sections import Context, SectionSpec, from_results
from hospstudy.report.sections._results import nice_column
from hospstudy.report.sections.methods import _lower
from hospstudy.report.tables import ReportTable


@from_results("profil", "funnel", "variation")
def build(ctx: Context, r) -> list[str]:
    blocks = []
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
            flags = pts.loc[keep, "flag"].astype(str).tolist() if "flag" in pts.columns else None
            outcome = _lower(label(str(fun.get("outcome", "death_30d"))))
            fig = F.funnel_plot(n[keep], pd.to_numeric(pts.loc[keep, rcol]), overall if overall is not None else float("nan"),
                                [l for l in limits if array(l, "n") is not None], flags=flags,
                                ylabel=f"Risk-standardized {outcome}, %")
            cap = (f"Funnel plot of risk-standardized {outcome} (%) by hospital (anonymous), with control limits"
                   + ("; hospitals above the narrower limit in orange, above the wider one in red, below the limits in green" if flags else "") + ". "
                   f"Hospitals with fewer than {ctx.t} patients are not drawn ({fmt_count(dropped, ctx.t)} hospitals).")
            blocks.append(ctx.add_figure("funnel", fig, cap))
            table = _outlier_table(fun, outcome, ctx.t)
            if table is not None:
                blocks.append(ctx.add_table(table))
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


def _outlier_table(fun: dict, outcome: str, threshold: int) -> ReportTable | None:
    """Hospitals outside the funnel's control limits, by the widest limit crossed (the counts
    as the analyses published them: below the threshold as <threshold)."""
    rows = [f for f in fun.get("flags") or [] if isinstance(f, dict) and str(f.get("flag", "within")) != "within"]
    if not isinstance(fun.get("flags"), list):
        return None
    order = {"above": 0, "below": 1}
    rows.sort(key=lambda f: (order.get(str(f["flag"]).split(" ")[0], 2), str(f["flag"])))
    frame = pd.DataFrame({
        "Position": [f"{str(f['flag']).split(' ', 1)[0].capitalize()} the {str(f['flag']).partition(' ')[2]} control limit"
                     for f in rows],
        "Hospitals": [fmt_count(f["hospitals"], threshold) if isinstance(f.get("hospitals"), (int, float)) else str(f.get("hospitals"))
                      for f in rows],
    })
    if frame.empty:
        frame = pd.DataFrame({"Position": ["Outside the control limits"], "Hospitals": ["0"]})
    return ReportTable("funnel_outliers", f"Hospitals outside the funnel plot's control limits ({outcome})", frame,
                       ["A hospital is counted under the widest limit its risk-standardized rate crosses; only hospitals "
                        f"with at least {threshold} patients are assessed. Counts of 1–{threshold - 1} are shown as <{threshold}."])
