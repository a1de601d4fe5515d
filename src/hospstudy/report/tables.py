"""The report's tables, built from the attrition table, the analytic dataset and the results.

Every table comes back as a :class:`ReportTable` whose cells are already formatted strings and
already disclosure-safe: counts in ``1 .. threshold-1`` read ``<10``, cells hidden by secondary
suppression read ``—`` (footnoted), and a percentage is never shown beside a hidden count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from hospstudy.privacy import DEFAULT_THRESHOLD, fmt_count, is_small, safe_attrition, suppress_table
from hospstudy.report.labels import LABELS, label, level_label  # noqa: F401  (LABELS, label: public here too)

SUPPRESSION_NOTE = (
    "Counts of 1–{m} are shown as <{t}; “—” marks a cell hidden so that a small count cannot be "
    "recovered from totals (secondary suppression)."
)

def as_bool(s: pd.Series) -> np.ndarray:
    """A boolean column (plain, nullable or object) as a numpy bool array, missing as False."""
    return s.astype("boolean").fillna(False).to_numpy(dtype=bool)


@dataclass
class ReportTable:
    """A formatted table: ``key`` names its sheet and CSV, ``frame`` holds strings only."""

    key: str
    title: str
    frame: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    group_rows: list[int] = field(default_factory=list)  # rows that start a variable block


def _note(threshold: int) -> str:
    return SUPPRESSION_NOTE.format(m=threshold - 1, t=threshold)


def fmt_p(p: float | None) -> str:
    if p is None or not np.isfinite(p):
        return ""
    if p < 0.001:
        return "<0.001"
    return f"{p:.3f}"


def fmt_num(x: float | None, digits: int = 2) -> str:
    if x is None or not np.isfinite(x):
        return ""
    return f"{x:.{digits}f}"


def fmt_ci(est: float, lo: float, hi: float, digits: int = 2) -> str:
    if not all(np.isfinite([est, lo, hi])):
        return "not estimable"
    return f"{est:.{digits}f} ({lo:.{digits}f}–{hi:.{digits}f})"


# --------------------------------------------------------------------------------------------
# attrition
# --------------------------------------------------------------------------------------------
def attrition_table(attrition: pd.DataFrame, threshold: int = DEFAULT_THRESHOLD) -> ReportTable:
    s = safe_attrition(attrition, threshold)
    frame = pd.DataFrame({
        "Step": s["step"].astype(str),
        "Criterion": s["description"].fillna(s["name"]).astype(str),
        "Admissions removed": s["admissions_removed"],
        "Admissions remaining": s["admissions"],
        "Patients removed": s["patients_removed"],
        "Patients remaining": s["patients"],
    })
    return ReportTable("attrition", "Cohort selection (attrition)", frame, [_note(threshold)])


# --------------------------------------------------------------------------------------------
# Table 1
# --------------------------------------------------------------------------------------------
def _groups(df: pd.DataFrame, by: str) -> tuple[list, list[str]]:
    """Levels of the grouping column in display order and their labels."""
    col = df[by]
    if col.dropna().map(type).eq(bool).all() or str(col.dtype) in ("bool", "boolean"):
        levels = [True, False]
        names = {"cancer_center": ("Cancer center", "Other hospital")}.get(by, (f"{label(by)}: yes", f"{label(by)}: no"))
        return levels, list(names)
    levels = sorted(col.dropna().unique().tolist())
    if by.endswith("quartile"):
        return levels, [f"Q{int(v)}" for v in levels]
    return levels, [str(v) for v in levels]


def _kind(s: pd.Series, name: str, categorical: Iterable[str]) -> str:
    if name in set(categorical):
        return "categorical"
    nonnull = s.dropna()
    if str(s.dtype) in ("bool", "boolean") or (len(nonnull) and nonnull.map(type).eq(bool).all()):
        return "binary"
    if pd.api.types.is_numeric_dtype(s):
        return "continuous"
    return "categorical"


def smd_continuous(a: np.ndarray, b: np.ndarray) -> float:
    """Standardized mean difference: (mean_a - mean_b) / sqrt((var_a + var_b) / 2)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    pooled = math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    return float("nan") if pooled == 0 else float(abs(a.mean() - b.mean()) / pooled)


def smd_categorical(pa: np.ndarray, pb: np.ndarray) -> float:
    """Multivariate SMD of a categorical variable (Yang & Dalton 2012): sqrt(d' S⁻¹ d) with the
    first level dropped and S the mean of the two multinomial covariance matrices. For two
    levels it equals the usual binary SMD."""
    pa, pb = np.asarray(pa, float), np.asarray(pb, float)
    if len(pa) < 2:
        return float("nan")
    d = (pa - pb)[1:]
    qa, qb = pa[1:], pb[1:]
    s = (np.diag(qa) - np.outer(qa, qa) + np.diag(qb) - np.outer(qb, qb)) / 2
    try:
        v = float(d @ np.linalg.pinv(s) @ d)
    except np.linalg.LinAlgError:
        return float("nan")
    return math.sqrt(max(v, 0.0))


def _max_pairwise(values: list, fn) -> float:
    best = float("nan")
    for i in range(len(values)):
        for j in range(i + 1, len(values)):
            v = fn(values[i], values[j])
            if np.isfinite(v) and not (np.isfinite(best) and best >= v):
                best = v
    return best


def _suppress_with_overall(table: np.ndarray, threshold: int) -> tuple[np.ndarray, np.ndarray]:
    """Suppression of a levels × groups table published with an Overall column (the row sums)
    and group sizes (the column sums). The Overall column is suppressed as part of the table:
    each row's groups and its overall are tied by one equation, so a row cannot hold exactly
    one hidden cell among them either. Returns (hidden group cells, hidden overall cells)."""
    aug = np.hstack([table, table.sum(axis=1, keepdims=True)])
    hide = suppress_table(aug, threshold, margins=(True, True))
    return hide[:, :-1], hide[:, -1]


def _median_iqr(x: pd.Series) -> str:
    x = pd.to_numeric(x, errors="coerce").dropna()
    if x.empty:
        return ""
    q1, med, q3 = np.percentile(x, [25, 50, 75])
    d = 0 if (x.round() == x).all() else 1
    return f"{med:.{d}f} [{q1:.{d}f}–{q3:.{d}f}]"


def table1(df: pd.DataFrame, by: str, covariates: Sequence[str], threshold: int = DEFAULT_THRESHOLD,
           categorical: Iterable[str] = ("fiscal_year",), key: str | None = None,
           orders: dict[str, Sequence] | None = None, missing_levels: dict[str, object] | None = None,
           hospital_col: str | None = None, volume_col: str | None = None) -> ReportTable:
    """Baseline characteristics by a grouping column, with SMDs and missing counts.

    Categorical and binary variables show n (%) of the group (binary ones their "Yes" row);
    numeric ones median [IQR]. A "Missing" row follows any variable with missing values.
    Suppression runs on each variable's full levels × groups table (including the missing
    row and the levels not displayed, since group sizes are published). The SMD column is the
    absolute SMD between the two groups, or the largest pairwise SMD across more groups.

    ``missing_levels`` maps a categorical column to the value the study gives its missing
    patients (a cut's ``missing_label``): that level is counted as missing, so the Missing
    column and the Missing row agree. ``hospital_col`` adds the number of hospitals per group
    and ``volume_col`` the annual hospital volume (median [IQR] over the patients) at the top.
    """
    if by not in df.columns:
        raise KeyError(f"table1: grouping column {by!r} not in the analytic dataset")
    data = df[df[by].notna()]
    levels, names = _groups(data, by)
    masks = [(data[by] == lv).to_numpy() for lv in levels]
    sizes = np.array([m.sum() for m in masks])
    size_hide = suppress_table(sizes[None, :], threshold, margins=(True, False))[0]
    rows: list[list[str]] = []
    starts: list[int] = []
    if hospital_col is not None and hospital_col in data.columns:
        starts.append(len(rows))
        rows.append(_hospital_row(data, hospital_col, masks, threshold, len(levels)))
    for var in ([volume_col] if volume_col and volume_col != by and volume_col in data.columns else []):
        starts.append(len(rows))
        num = pd.to_numeric(data[var], errors="coerce")
        cells = ["—" if num[m].notna().sum() < threshold else _median_iqr(num[m]) for m in masks]
        smd = _max_pairwise([num[m].to_numpy() for m in masks], smd_continuous)
        rows.append([label(var), "median [IQR]", _median_iqr(num), *cells, fmt_num(smd), ""])
    for var in covariates:
        if var not in data.columns or var == by or var == volume_col:
            continue
        s = data[var]
        kind = _kind(s, var, categorical)
        miss = s.isna().to_numpy()
        ml = (missing_levels or {}).get(var)
        if ml is not None and kind == "categorical":
            miss = miss | (s == ml).to_numpy()
            s = s.where(s != ml)
        starts.append(len(rows))
        if kind == "continuous":
            num = pd.to_numeric(s, errors="coerce")
            counts = np.array([[(m & ~miss).sum() for m in masks], [(m & miss).sum() for m in masks]])
            hide, total_hide = _suppress_with_overall(counts, threshold)
            # a median reveals no count: shown whenever the group has enough values
            cells = [("—" if counts[0, g] < threshold else _median_iqr(num[masks[g]])) for g in range(len(levels))]
            smd = _max_pairwise([num[m].to_numpy() for m in masks], smd_continuous)
            rows.append([label(var), "median [IQR]", _median_iqr(num), *cells, fmt_num(smd), fmt_count(int(miss.sum()), threshold, total_hide[1])])
            if miss.any():
                rows.append(["", "Missing", fmt_count(int(miss.sum()), threshold, total_hide[1]),
                             *[fmt_count(int(counts[1, g]), threshold, hide[1, g]) for g in range(len(levels))], "", ""])
            continue
        if kind == "binary":
            vals = [True, False]
            shown = [True]
        else:
            present = s.dropna().unique().tolist()
            order = list((orders or {}).get(var, []))
            vals = [v for v in order if v in present] + sorted((v for v in present if v not in order), key=lambda v: (str(type(v)), v))
            shown = vals
        table = np.array([[((s == v).to_numpy() & m).sum() for m in masks] for v in vals]
                         + [[(miss & m).sum() for m in masks]])
        hide, total_hide = _suppress_with_overall(table, threshold)
        props = [table[:-1, g] / max(table[:-1, g].sum(), 1) for g in range(len(levels))]
        smd = _max_pairwise(props, smd_categorical)
        total = table.sum(axis=1)
        for i, v in enumerate(vals):
            if v not in shown:
                continue
            cells = []
            for g in range(len(levels)):
                n = int(table[i, g])
                if hide[i, g]:
                    cells.append(fmt_count(n, threshold, True))
                else:
                    cells.append(f"{n:,} ({100 * n / sizes[g]:.1f}%)" if sizes[g] else "0")
            overall = fmt_count(int(total[i]), threshold, total_hide[i])
            if not total_hide[i]:
                overall = f"{int(total[i]):,} ({100 * total[i] / sizes.sum():.1f}%)"
            level_name = "Yes" if kind == "binary" else level_label(var, v)
            first = len(rows) == starts[-1]
            rows.append([label(var) if first else "", level_name, overall, *cells,
                         fmt_num(smd) if first else "", fmt_count(int(miss.sum()), threshold, total_hide[-1]) if first else ""])
        if miss.any():
            rows.append(["", "Missing", fmt_count(int(miss.sum()), threshold, total_hide[-1]),
                         *[fmt_count(int(table[-1, g]), threshold, hide[-1, g]) for g in range(len(levels))], "", ""])
    header_groups = [f"{n} (n = {fmt_count(int(k), threshold, h)})" for n, k, h in zip(names, sizes, size_hide)]
    cols = ["Characteristic", "Level", f"Overall (n = {fmt_count(int(sizes.sum()), threshold)})", *header_groups,
            "SMD" if len(levels) == 2 else "SMD (max pairwise)", "Missing"]
    frame = pd.DataFrame(rows, columns=cols)
    notes = ["n (%) of the group, or median [interquartile range]. SMD: absolute standardized mean "
             "difference (categorical variables: multivariate SMD of Yang & Dalton); < 0.1 is usually read as balance."]
    if len(levels) > 2:
        notes.append("With more than two groups, the SMD column is the largest of the pairwise SMDs.")
    if hospital_col is not None and hospital_col in data.columns:
        notes.append("Hospitals: hospitals with at least one patient in the group; a hospital whose group changed over "
                     "the years counts in each, so the groups may add up to more than the overall number.")
    if volume_col and volume_col != by and volume_col in data.columns:
        notes.append(f"{label(volume_col)}: the annual case volume of each patient's hospital in the year of surgery, "
                     "summarized over the patients.")
    if missing_levels and any(v in data.columns for v in missing_levels):
        notes.append("Missing: patients with the value unknown (for grouped variables, the study's missing group).")
    notes.append(_note(threshold))
    title = f"Baseline characteristics by {label(by).lower()}"
    return ReportTable(key or f"table1_{by}", title, frame, notes, starts)


def _hospital_row(data: pd.DataFrame, col: str, masks: list[np.ndarray], threshold: int, k: int) -> list[str]:
    """Hospitals with patients in each group and overall. Where the groups partition the
    hospitals (their counts add up to the overall), suppression is done on the row with its
    total so no small group can be recovered by subtraction."""
    h = data[col].to_numpy()
    counts = np.array([len(pd.unique(h[m])) for m in masks])
    overall = int(pd.Series(h).nunique())
    if counts.sum() == overall:
        hide, total_hide = _suppress_with_overall(counts[None, :], threshold)
        cells = [fmt_count(int(n), threshold, hide[0, g]) for g, n in enumerate(counts)]
        tot = fmt_count(overall, threshold, total_hide[0])
    else:
        cells = [fmt_count(int(n), threshold) for n in counts]
        tot = fmt_count(overall, threshold)
    return ["Hospitals", "n", tot, *cells, "", ""]


# --------------------------------------------------------------------------------------------
# crude outcomes
# --------------------------------------------------------------------------------------------
def _binary_test(table: np.ndarray) -> tuple[float, str]:
    """p-value and test name for events × groups: Fisher's exact test for 2×2 tables with an
    expected count below 5, Pearson's chi-square otherwise."""
    table = np.asarray(table)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return float("nan"), ""
    chi2, p, dof, expected = stats.chi2_contingency(table, correction=False)
    if table.shape == (2, 2) and (expected < 5).any():
        return float(stats.fisher_exact(table)[1]), "Fisher"
    return float(p), "chi-square"


def _denominator(data: pd.DataFrame, out: str, valid: np.ndarray, among: str | None, n_shown: str | None,
                 death_col: str = "in_hospital_death", threshold: int = DEFAULT_THRESHOLD) -> str:
    """Who an outcome's percentages or medians are of, in words, with its size when that can be
    shown (``n_shown`` is None when the size would reveal a suppressed count; it is also left out
    when a group it excludes, such as the patients alive with the outcome unknown, is small,
    since the deaths are published elsewhere)."""
    if among is not None:
        words = f"Patients {label(among).lower()}" if label(among) != among else f"Patients with {among}"
        if not valid.all():
            words += ", excluding those with the value unknown"
    elif valid.all():
        words = "All patients"
    else:
        parts = []
        other = ~valid
        if death_col in data.columns and death_col != out:
            dead = as_bool(data[death_col])
            if dead.any() and not valid[dead].any():
                parts.append("in-hospital deaths")
                other = ~valid & ~dead
        if other.any():
            parts.append("those with the outcome unknown")
            if is_small(int(other.sum()), threshold):
                n_shown = None
        words = "All patients, excluding " + " and ".join(parts)
    return words if n_shown is None else f"{words} (n = {n_shown})"


def crude_outcomes(df: pd.DataFrame, exposure: str, outcomes: Sequence[str], threshold: int = DEFAULT_THRESHOLD,
                   continuous: Sequence[str | tuple[str, str, str | None, str]] = ("postop_los",)) -> ReportTable:
    """Crude outcomes by exposure group with tests: n (%) with chi-square or Fisher's exact test
    for binary outcomes; median [IQR] with Wilcoxon rank-sum (two groups) or Kruskal–Wallis for
    continuous ones. A continuous entry is a column name or ``(key, column, among, title)``: the
    column among patients with the boolean ``among`` (e.g. days to discharge among patients
    discharged home). Each row states its denominator: patients with the outcome recorded,
    naming who is excluded (in-hospital deaths when the outcome is missing for all of them)."""
    data = df[df[exposure].notna()]
    levels, names = _groups(data, exposure)
    masks = [(data[exposure] == lv).to_numpy() for lv in levels]
    sizes = np.array([m.sum() for m in masks])
    rows = []
    cont = [c if isinstance(c, tuple) else (c, c, None, label(c)) for c in continuous]
    for out in list(outcomes) + [c for c in cont if c[0] not in outcomes]:
        if isinstance(out, tuple):
            key, col, among, title = out
        else:
            key, col, among, title = out, out, None, label(out)
        if col not in data.columns or (among is not None and among not in data.columns):
            continue
        s = data[col]
        if among is None and _kind(s, col, ()) == "binary":
            valid = s.notna().to_numpy()
            ev = as_bool(s) & valid
            table = np.array([[(ev & m).sum() for m in masks], [(valid & ~ev & m).sum() for m in masks],
                              [(~valid & m).sum() for m in masks]])
            hide, total_hide = _suppress_with_overall(table, threshold)
            p, test = _binary_test(table[:2])
            cells = []
            for g in range(len(levels)):
                n, d = int(table[0, g]), int(table[:2, g].sum())
                cells.append(fmt_count(n, threshold, True) if hide[0, g] else f"{n:,} ({100 * n / d:.1f}%)" if d else "0")
            tot = int(table[0].sum()); dtot = int(table[:2].sum())
            overall = fmt_count(tot, threshold, True) if total_hide[0] else f"{tot:,} ({100 * tot / max(dtot, 1):.1f}%)"
            # the denominator is the patients minus the missing row: shown only when that row's total is
            n_den = None if total_hide[2] or (table[2].sum() and is_small(int(table[2].sum()), threshold)) \
                else fmt_count(dtot, threshold)
            rows.append([title, "n (%)", overall, *cells, fmt_p(p), test, _denominator(data, col, valid, None, n_den, threshold=threshold)])
        else:
            x = pd.to_numeric(s, errors="coerce")
            sub = as_bool(data[among]) if among is not None else np.ones(len(data), bool)
            valid = x.notna().to_numpy()[sub]
            groups = [x[m & sub].dropna().to_numpy() for m in masks]
            p, test = float("nan"), ""
            if all(len(g) > 0 for g in groups):
                if len(groups) == 2:
                    p, test = float(stats.mannwhitneyu(groups[0], groups[1], alternative="two-sided").pvalue), "Wilcoxon rank-sum"
                else:
                    p, test = float(stats.kruskal(*groups).pvalue), "Kruskal–Wallis"
            cells = ["—" if len(g) < threshold else _median_iqr(pd.Series(g)) for g in groups]
            n_sub, n_val = int(sub.sum()), int(valid.sum())
            overall = "—" if n_val < threshold else _median_iqr(x[sub])
            # its size is shown when it is not small and reveals no small difference
            small_gap = 0 < n_sub - n_val < threshold or (among is None and 0 < len(data) - n_val < threshold)
            n_den = None if is_small(n_val, threshold) or small_gap else fmt_count(n_val, threshold)
            rows.append([title, "median [IQR]", overall, *cells, fmt_p(p), test,
                         _denominator(data, col, valid, among, n_den, threshold=threshold)])
    size_hide = suppress_table(sizes[None, :], threshold, margins=(True, False))[0]
    cols = ["Outcome", "Statistic", f"Overall (n = {fmt_count(int(sizes.sum()), threshold)})",
            *[f"{n} (n = {fmt_count(int(k), threshold, h)})" for n, k, h in zip(names, sizes, size_hide)], "p", "Test",
            "Denominator"]
    notes = ["Percentages and medians are of each outcome's denominator (last column): the patients with the outcome "
             "recorded. Binary outcomes: Pearson's chi-square test "
             "(Fisher's exact test for a 2×2 table with an expected count below 5); continuous outcomes: "
             "Wilcoxon rank-sum test (Kruskal–Wallis for more than two groups). Unadjusted.", _note(threshold)]
    return ReportTable(f"crude_{exposure}", f"Crude outcomes by {label(exposure).lower()}", pd.DataFrame(rows, columns=cols), notes)


# --------------------------------------------------------------------------------------------
# trends
# --------------------------------------------------------------------------------------------
def trends_table(df: pd.DataFrame, by: str = "fiscal_year", proportions: Sequence[str] = ("death_30d", "in_hospital_death"),
                 continuous: Sequence[str] = ("postop_los",), tests: dict | None = None,
                 threshold: int = DEFAULT_THRESHOLD) -> ReportTable:
    """Counts, outcome proportions and median stay per fiscal year; trend tests from the
    analyses results (``tests`` maps an outcome column to its p-value and test name)."""
    years = sorted(df[by].dropna().unique().tolist())
    counts = np.array([(df[by] == y).sum() for y in years])
    cols = {by if by != "fiscal_year" else "Fiscal year": [str(int(y)) if isinstance(y, (int, np.integer, float)) else str(y) for y in years]}
    year_hide = suppress_table(counts[None, :], threshold, margins=(True, False))[0]
    cols["Patients"] = [fmt_count(int(n), threshold, h) for n, h in zip(counts, year_hide)]
    test_row = {"Patients": ""}
    for out in proportions:
        if out not in df.columns:
            continue
        ev = np.array([as_bool(df.loc[df[by] == y, out]).sum() for y in years])
        table = np.vstack([ev, counts - ev])
        hide = suppress_table(table, threshold)
        cols[label(out)] = [fmt_count(int(e), threshold, True) if hide[0, i] or year_hide[i]
                            else f"{int(e):,} ({100 * e / n:.1f}%)" if n else "0" for i, (e, n) in enumerate(zip(ev, counts))]
        test_row[label(out)] = _trend_test_text((tests or {}).get(out))
    for out in continuous:
        if out not in df.columns:
            continue
        cols[f"{label(out)}, median [IQR]"] = [
            "—" if n < threshold else _median_iqr(df.loc[df[by] == y, out]) for y, n in zip(years, counts)]
        test_row[f"{label(out)}, median [IQR]"] = _trend_test_text((tests or {}).get(out))
    frame = pd.DataFrame(cols)
    if any(test_row.values()):
        frame.loc[len(frame)] = ["Trend test, p", *[test_row.get(c, "") for c in list(cols)[1:]]]
    notes = ["Trend tests: Cochran–Armitage for proportions, Jonckheere–Terpstra for continuous outcomes "
             "(from the analyses; blank when not run).", _note(threshold)]
    return ReportTable("trends", "Trends by fiscal year", frame, notes)


def _trend_test_text(t) -> str:
    if t is None:
        return ""
    if isinstance(t, dict):
        p = t.get("p_value")
        name = str(t.get("test", ""))
        name = {"cochran_armitage": "Cochran–Armitage", "jonckheere_terpstra": "Jonckheere–Terpstra"}.get(name, name.replace("_", " "))
        return f"{fmt_p(float(p))} ({name})" if p is not None else ""
    return fmt_p(float(t))
