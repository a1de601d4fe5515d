"""The study's analyses runner: every model the ``[analyses]`` section asks for, one tidy table.

:func:`run_analyses` takes the study (or its :class:`~hospstudy.models.spec.AnalysesSpec`) and
the analytic dataset (one row per patient, docs/architecture.md) and runs, each as one
*analysis* that may fail on its own without stopping the others:

- ``alone`` / ``mutual``: each binary outcome on each exposure alone, and on all exposures
  together, adjusted for the covariate set, by every model of ``models`` (``mixed_logit`` →
  conditional ORs, ``gee_logit`` → marginal, ``logit`` → unclustered);
- ``volume_quartiles`` and ``volume_spline``: volume in quartiles (reference Q1) and as a
  restricted cubic spline (Harrell's knots) with the OR curve against the reference volume;
- ``weighting_iptw`` / ``weighting_overlap``: propensity-score weighted ORs of the weighting
  exposure with cluster-robust errors, the balance table, and E-values;
- ``cause_specific`` / ``fine_gray``: the competing-risks outcome (discharge home vs death),
  cumulative incidence by exposure;
- ``profiling``: risk-standardized rates per hospital and the funnel plot (anonymous);
- ``hospital_variation``: random-intercept SD, ICC and median odds ratio (null and adjusted);
- ``trends``: Cochran–Armitage and Jonckheere–Terpstra tests by fiscal year.

The output (docs/results_schema.md) is aggregate: no patient or hospital identifier, funnel
points without hospital labels (hospitals under the disclosure threshold not drawn),
cumulative incidence curves whose every step holds at least the threshold's number of events
and which end where fewer than that many patients remain at risk.
"""

from __future__ import annotations

import json
import math
import platform
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from hospstudy.models.base import single_threaded_blas

from hospstudy.console import console, progress
from hospstudy.errors import HospstudyError, InputError, StudyFileError, param_error
from hospstudy.models.spec import AnalysesSpec
from hospstudy.privacy import is_count_name, is_small

SCHEMA_VERSION = "hospstudy.results/1"
RESULT_COLUMNS = [
    "analysis", "outcome", "exposure", "model", "scale", "term", "estimate", "std_error", "conf_low", "conf_high",
    "p_value", "exp_estimate", "exp_conf_low", "exp_conf_high", "n", "events", "clusters",
]
EXTRA_COLUMNS = ["error", "note"]
COUNT_COLUMNS = ("n", "events", "clusters")

__all__ = ["AnalysisResults", "run_analyses", "load_spec", "RESULT_COLUMNS", "SCHEMA_VERSION"]


# --------------------------------------------------------------------------------------------
# results container
# --------------------------------------------------------------------------------------------


@dataclass
class AnalysisResults:
    """What :func:`run_analyses` returns.

    Attributes
    ----------
    table : DataFrame
        One row per model term: ``RESULT_COLUMNS`` plus ``error`` (why an analysis failed;
        its row has no estimates) and ``note`` (warnings raised while fitting).
    extras : dict
        JSON-ready curves and diagnostics: ``volume_curve``, ``quartiles``, ``balance``,
        ``evalues``, ``cumulative_incidence``, ``funnel``, ``hospital_variation``, ``trends``.
    failures : list of dict
        ``analysis, outcome, exposure, model, error`` of each analysis that failed.
    meta : dict
        Software versions, seed, patients, hospitals, timings, the settings used.
    """

    table: pd.DataFrame
    extras: dict
    failures: list
    meta: dict

    def to_dict(self, threshold: int | None = None) -> dict:
        """The results.json document (JSON-ready: NaN as None). Unsuppressed by default (for
        ``OUT/private``); with ``threshold``, counts from 1 to ``threshold - 1`` become
        ``"<threshold"``."""
        table = _suppress_table(self.table, threshold)
        doc = {
            "schema": SCHEMA_VERSION,
            "meta": self.meta,
            "table": table.to_dict("records"),
            "failures": self.failures,
            "extras": self.extras,
        }
        doc = _jsonable(doc)
        if threshold is not None:
            doc["extras"] = _suppress_counts(doc["extras"], threshold)
            doc["meta"] = _suppress_counts(doc["meta"], threshold)
        doc["meta"]["suppression_threshold"] = threshold
        return doc

    def write(self, out_dir, threshold: int | None = 10) -> dict[str, Path]:
        """Write ``results.parquet``, ``results.csv`` and ``results.json`` into ``out_dir``.

        Counts (``n``, ``events``, ``clusters``) from 1 to ``threshold - 1`` are written as
        missing in the table files and as ``"<10"`` in the JSON; ``threshold=None`` writes them
        as they are (for ``OUT/private``).
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        table = _suppress_table(self.table, threshold)
        paths = {"parquet": out / "results.parquet", "csv": out / "results.csv", "json": out / "results.json"}
        pt = table.copy()
        for c in COUNT_COLUMNS:
            pt[c] = pd.to_numeric(pt[c].where(pt[c] != f"<{threshold}"), errors="coerce").astype("Int64")
        pt.to_parquet(paths["parquet"], index=False)
        table.to_csv(paths["csv"], index=False)
        paths["json"].write_text(json.dumps(self.to_dict(threshold), indent=1, allow_nan=False), encoding="utf-8")
        return paths

    def primary(self) -> pd.DataFrame:
        """Exposure rows of the primary model (first of ``models``)."""
        t = self.table
        model = self.meta.get("primary_model")
        return t[(t.model == model) & t.analysis.isin(["alone", "mutual"]) & _is_exposure_term(t)]


def _is_exposure_term(t: pd.DataFrame) -> pd.Series:
    term = t["term"].astype(str)
    exp = t["exposure"].astype(str)
    return pd.Series([tm == e or tm.startswith(e + "[") for tm, e in zip(term, exp)], index=t.index)


def _suppress_table(table: pd.DataFrame, threshold: int | None) -> pd.DataFrame:
    t = table.copy()
    if threshold is None:
        return t
    for c in COUNT_COLUMNS:
        small = t[c].map(lambda v: is_small(v, threshold))
        if small.any():
            t[c] = t[c].astype(object)
            t.loc[small, c] = f"<{threshold}"
    return t


def _suppress_counts(obj, threshold: int):
    """Replace small counts under count-named keys (n, events, hospitals, ...) in a JSON-like
    object; lists under such a key are treated element by element."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if is_count_name(k):
                if isinstance(v, list):
                    out[k] = [f"<{threshold}" if is_small(x, threshold) else x for x in v]
                    continue
                if is_small(v, threshold):
                    out[k] = f"<{threshold}"
                    continue
            out[k] = _suppress_counts(v, threshold)
        return out
    if isinstance(obj, list):
        return [_suppress_counts(v, threshold) for v in obj]
    return obj



def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, pd.DataFrame):
        return [_jsonable(r) for r in obj.to_dict("records")]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if obj is pd.NA or obj is pd.NaT:
        return None
    if isinstance(obj, (pd.Timestamp,)):
        return obj.isoformat()
    return obj


# --------------------------------------------------------------------------------------------
# settings and data preparation
# --------------------------------------------------------------------------------------------


def load_spec(study_or_spec) -> AnalysesSpec:
    """An :class:`AnalysesSpec` from a Study (``.analyses``), a spec, a dict (the
    ``[analyses]`` table) or the path of a study file (only its ``[analyses]`` table is read)."""
    if isinstance(study_or_spec, AnalysesSpec):
        return study_or_spec
    if isinstance(study_or_spec, dict):
        return AnalysesSpec.from_table(study_or_spec)
    if isinstance(study_or_spec, (str, Path)):
        from hospstudy.settings import read_study_file

        path = Path(study_or_spec)
        doc = read_study_file(path)
        if "analyses" not in doc:
            raise StudyFileError(f"{path}: the study file has no analyses section", ["analyses: missing"])
        return AnalysesSpec.from_table(doc["analyses"])
    spec = getattr(study_or_spec, "analyses", None)
    if isinstance(spec, AnalysesSpec):
        return spec
    if isinstance(spec, dict):
        return AnalysesSpec.from_table(spec)
    raise param_error("run_analyses", "study_or_spec", "a Study, an AnalysesSpec, an analyses dict or a study-file path",
                      type(study_or_spec).__name__)


_CAT_TERM = re.compile(r"^C\((?P<var>[^,()]+),\s*contr\.treatment\([^)]*\)\)\[T\.(?P<level>.*)\]$")
_RCS_TERM = re.compile(r"^rcs\((?P<var>[^,]+),.*\)\[(?P<col>[^\]]*)\]$")


def _clean_term(term: str) -> str:
    """``C(sex, contr.treatment('F'))[T.M]`` → ``sex[T.M]``; ``rcs(volume, [...])[volume']`` →
    ``rcs(volume)[volume']``."""
    m = _CAT_TERM.match(term)
    if m:
        return f"{m['var'].strip()}[T.{m['level']}]"
    m = _RCS_TERM.match(term)
    if m:
        return f"rcs({m['var'].strip()})[{m['col']}]"
    return term


@dataclass
class _Prepared:
    df: pd.DataFrame
    covariate_terms: list[str]
    notes: list[str]
    rare: dict[str, bool]
    categorical: set
    used_covariates: list[str]


def _to_number(s: pd.Series) -> pd.Series:
    """Booleans (also Python bools in an object column, as nullable outcomes are stored) and
    numbers as float; anything else NaN."""
    if s.dtype == bool or str(s.dtype) == "boolean":
        return s.astype("float64")
    if s.dtype == object:
        s = s.map(lambda v: float(v) if isinstance(v, (bool, np.bool_)) else v)
    return pd.to_numeric(s, errors="coerce")


def _is_categorical(s: pd.Series) -> bool:
    return (s.dtype == object or isinstance(s.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(s)) and not (
        s.dtype == bool or str(s.dtype) == "boolean"
    )


def _prepare(spec: AnalysesSpec, data: pd.DataFrame) -> _Prepared:
    if not isinstance(data, pd.DataFrame):
        raise param_error("run_analyses", "analytic_df", "a pandas DataFrame (the analytic dataset)", type(data).__name__)
    if len(data) == 0:
        raise InputError("run_analyses: the analytic dataset has no rows")
    spec.check_columns(data.columns)
    df = data.reset_index(drop=True).copy()
    notes, terms, problems, used = [], [], [], []
    cats = set()
    for c in spec.covariates:
        s = df[c]
        if c in spec.categorical or _is_categorical(s):
            cats.add(c)
            levels = s.dropna()
            as_str = levels.astype(str) if not (pd.api.types.is_float_dtype(levels) and (levels == levels.round()).all()) \
                else levels.astype("int64").astype(str)
            df[c] = pd.Series(pd.NA, index=df.index, dtype=object)
            df.loc[levels.index, c] = as_str.to_numpy()
            counts = as_str.value_counts()
            if len(counts) < 2:
                notes.append(f"covariate {c!r} has fewer than two levels in the data and was left out")
                continue
            ref = spec.reference.get(c)
            if ref is None:
                ref = counts.index[0]
            else:
                ref = str(ref).lower() if isinstance(ref, bool) else str(ref)
                if ref not in counts.index:
                    problems.append(f"analyses.reference.{c}: level {ref!r} does not occur in column {c!r}; "
                                    f"levels are {sorted(counts.index)[:20]}")
                    continue
            terms.append(f"C({c}, contr.treatment({ref!r}))")
            used.append(c)
        else:
            if s.dtype == bool or str(s.dtype) == "boolean":
                df[c] = s.astype("float64")
            elif not pd.api.types.is_numeric_dtype(s):
                problems.append(f"analyses.covariates: column {c!r} has type {s.dtype}, neither numeric, boolean nor text")
                continue
            if pd.to_numeric(df[c], errors="coerce").nunique() < 2:
                notes.append(f"covariate {c!r} is constant in the data and was left out")
                continue
            terms.append(c)
            used.append(c)
    binary_cols = [*spec.binary_outcomes]
    if spec.trends is not None:
        binary_cols += [c for c in spec.trends.proportions if c not in binary_cols]
    for o in binary_cols:
        s = df[o]
        v = _to_number(s)
        bad = (s.notna() & v.isna()) | (v.notna() & ~v.isin([0, 1]))
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            field = "outcomes" if o in spec.binary_outcomes else "trends.proportions"
            problems.append(f"analyses.{field}: {o!r} must be binary (0/1 or bool); row {i} holds {_plain(s.iloc[i])!r}")
            continue
        df[o] = v
    for e in spec.exposures:
        s = df[e]
        if s.dtype == bool or str(s.dtype) == "boolean" or (s.dtype == object and s.dropna().map(type).isin([bool, np.bool_]).all()):
            df[e] = _to_number(s)
        elif not pd.api.types.is_numeric_dtype(s):
            problems.append(f"analyses.exposures: column {e!r} must be numeric or boolean, has type {s.dtype}")
    if problems:
        raise InputError("the analytic dataset does not fit the analyses section of the study file:\n  " + "\n  ".join(problems))
    rare = {o: bool(df[o].mean() < 0.15) for o in spec.binary_outcomes if df[o].notna().any()}
    return _Prepared(df, terms, notes, rare, cats, used)


# --------------------------------------------------------------------------------------------
# the runner
# --------------------------------------------------------------------------------------------


@dataclass
class _Job:
    analysis: str
    outcome: str
    exposure: str
    model: str
    run: Callable[["_Job"], None]


class _Runner:
    def __init__(self, spec: AnalysesSpec, prep: _Prepared, seed: int, disclosure_threshold: int = 10):
        self.spec = spec
        # the smallest count a published extra may rest on (curve steps, funnel points)
        self.thr = int(disclosure_threshold)
        self.p = prep
        self.df = prep.df
        self.seed = seed
        self.rows: list[dict] = []
        self.failures: list[dict] = []
        self.extras: dict[str, Any] = {}
        self.fits: dict[tuple, Any] = {}
        self.timings: dict[str, float] = {}

    # -- helpers -----------------------------------------------------------------------------
    def rhs(self, exposures, extra_terms=()):
        return " + ".join([*exposures, *extra_terms, *self.p.covariate_terms]) or "1"

    def fit_binary(self, model: str, formula: str):
        from hospstudy.models import gee, glm, mixed

        s = self.spec
        if model == "mixed_logit":
            return mixed.mixed_logit(formula, self.df, cluster=s.cluster, nagq=s.nagq, conf_level=s.conf_level)
        if model == "gee_logit":
            return gee.gee_logit(formula, self.df, cluster=s.cluster, corr=s.gee_corr, conf_level=s.conf_level)
        if model == "logit":
            return glm.logit(formula, self.df, conf_level=s.conf_level)
        raise param_error("run_analyses", "models", "mixed_logit, gee_logit or logit", model)

    def add_rows(self, job: _Job, res, notes: list[str], scale=None, exposure_of=None, rename=None):
        with np.errstate(over="ignore", invalid="ignore"):  # exp() of separated (infinite) estimates
            tidy = res.tidy()
        distinct = list(dict.fromkeys(notes))
        note = "; ".join(distinct) or None
        for r in tidy.itertuples(index=False):
            term = _clean_term(r.term)
            if rename is not None:
                term = rename(term)
            exposure = exposure_of(term) if exposure_of else job.exposure
            self.rows.append({
                "analysis": job.analysis, "outcome": job.outcome, "exposure": exposure, "model": job.model,
                "scale": scale or res.scale, "term": term, "estimate": r.estimate, "std_error": r.std_error,
                "conf_low": r.conf_low, "conf_high": r.conf_high, "p_value": r.p_value,
                "exp_estimate": r.exp_estimate, "exp_conf_low": r.exp_conf_low, "exp_conf_high": r.exp_conf_high,
                "n": res.n, "events": res.events, "clusters": res.clusters, "error": None, "note": note, "_notes": distinct,
            })

    def exposure_of(self, exposures):
        joined = "+".join(exposures)

        def f(term):
            for e in exposures:
                if term == e or term.startswith(e + "["):
                    return e
            return joined

        return f

    # -- job lists ---------------------------------------------------------------------------
    def jobs(self) -> list[_Job]:
        s = self.spec
        out: list[_Job] = []
        for o in s.binary_outcomes:
            for adj in s.adjustment:
                sets = [[e] for e in s.exposures] if adj == "alone" else ([list(s.exposures)] if len(s.exposures) > 1 else [])
                for exps in sets:
                    for m in s.models:
                        out.append(_Job(adj, o, "+".join(exps), m, self._regression(adj, o, exps, m)))
        if s.hospital_variation and "mixed_logit" in s.models:
            for o in s.binary_outcomes:
                out.append(_Job("hospital_variation", o, "", "mixed_logit", self._variation(o)))
        if s.volume is not None:
            v = s.volume
            for o in v.outcomes or s.binary_outcomes:
                if v.quartiles:
                    out.append(_Job("volume_quartiles", o, v.quartile_column or "volume_quartile", v.model, self._quartiles(o)))
                if v.spline:
                    out.append(_Job("volume_spline", o, v.column, v.model, self._spline(o)))
        if s.weighting is not None:
            for m in s.weighting.methods:
                out.append(_Job(f"weighting_{m}", "", s.weighting.exposure, "weighted_logit", self._weighting(m)))
        if s.competing_risks is not None:
            cr = s.competing_risks
            exps = list(cr.exposures or s.exposures)
            out.append(_Job("cumulative_incidence", cr.outcome, "", "aalen_johansen", self._cif(exps)))
            for adj in s.adjustment:
                sets = [[e] for e in exps] if adj == "alone" else ([exps] if len(exps) > 1 else [])
                for e in sets:
                    for m in cr.models:
                        out.append(_Job(m if adj == "alone" else f"{m}_mutual", cr.outcome, "+".join(e), m, self._competing(m, e)))
        if s.profiling is not None:
            out.append(_Job("profiling", s.profiling.outcome, "", "logit", self._profiling()))
        if s.trends is not None:
            out.append(_Job("trends", "", s.trends.by, "trend_tests", self._trends()))
        if s.weighting is not None and s.weighting.evalues:
            out.append(_Job("evalues", "", "", "evalue", self._evalues))
        return out

    def _regression(self, adj, o, exps, m):
        def run(job):
            res, notes = self.fits_or_fit(m, f"{o} ~ {self.rhs(exps)}")
            self.fits[(adj, o, "+".join(exps), m)] = res
            self.add_rows(job, res, notes, exposure_of=self.exposure_of(exps) if adj == "mutual" else None)

        return run

    def fits_or_fit(self, m, formula):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = self.fit_binary(m, formula)
        return res, [str(w.message) for w in caught]

    def _variation(self, o):
        def run(job):
            rows = []
            null, notes = self.fits_or_fit("mixed_logit", f"{o} ~ 1")
            adjusted = self.fits.get(("mutual", o, "+".join(self.spec.exposures), "mixed_logit"))
            adjusted = adjusted or next((v for k, v in self.fits.items() if k[1] == o and k[3] == "mixed_logit"), None)
            for label, res in (("null model", null), ("adjusted model", adjusted)):
                if res is None:
                    continue
                vc = res.variance_components().set_index("quantity")
                rows.append({
                    "outcome": o, "model": label,
                    "random_sd": vc.loc["sd", "estimate"], "random_sd_low": vc.loc["sd", "conf_low"], "random_sd_high": vc.loc["sd", "conf_high"],
                    "icc": vc.loc["icc", "estimate"], "icc_low": vc.loc["icc", "conf_low"], "icc_high": vc.loc["icc", "conf_high"],
                    "mor": vc.loc["median_odds_ratio", "estimate"], "mor_low": vc.loc["median_odds_ratio", "conf_low"],
                    "mor_high": vc.loc["median_odds_ratio", "conf_high"], "clusters": res.clusters, "n": res.n,
                })
            self.extras.setdefault("hospital_variation", []).extend(rows)
            if notes:
                self.extras.setdefault("notes", []).append(f"hospital_variation {o}: " + "; ".join(notes))

        return run

    def _other_exposures(self):
        v = self.spec.volume
        return [e for e in self.spec.exposures if e not in (v.linear_exposure, v.column, v.quartile_column)]

    def _quartiles(self, o):
        def run(job):
            from hospstudy.models.splines import quartiles

            v = self.spec.volume
            col = v.quartile_column
            if col is None:
                q = quartiles(self.df[v.column], labels=v.column)
                col = "volume_quartile"
                self.df[col] = q["quartile"].astype("float64")
                job.exposure = col
            qv = pd.to_numeric(self.df[col], errors="coerce")
            self.df["_vq"] = qv.astype("Int64").astype(str).where(qv.notna())
            ref = str(v.quartile_reference)
            if ref not in set(self.df["_vq"].dropna()):
                raise InputError(f"analyses.volume.quartile_reference: quartile {ref} does not occur in column {col!r}")
            term = f"C(_vq, contr.treatment({ref!r}))"
            res, notes = self.fits_or_fit(v.model, f"{o} ~ {self.rhs([term, *self._other_exposures()])}")
            self.add_rows(job, res, notes, rename=lambda t: t.replace("_vq[", f"{col}["),
                          exposure_of=lambda t: col if t.startswith(col + "[") else "+".join(self._other_exposures()) or col)
            if "quartiles" not in self.extras:
                g = self.df.groupby(col)[v.column].agg(["min", "max", "median", "size"])
                self.extras["quartiles"] = {
                    "column": col, "volume_column": v.column, "reference": int(v.quartile_reference),
                    "groups": [{"quartile": int(k), "volume_min": r["min"], "volume_max": r["max"],
                                "volume_median": r["median"], "n": int(r["size"])} for k, r in g.iterrows()],
                }

        return run

    def _spline(self, o):
        def run(job):
            from hospstudy.models.splines import harrell_knots, rcs_basis

            v = self.spec.volume
            vol = pd.to_numeric(self.df[v.column], errors="coerce")
            knots = [float(k) for k in harrell_knots(vol.dropna().to_numpy(), v.spline_knots)]
            term = f"rcs({v.column}, {knots!r})"
            res, notes = self.fits_or_fit(v.model, f"{o} ~ {self.rhs([term, *self._other_exposures()])}")
            self.add_rows(job, res, notes, exposure_of=lambda t: v.column if t.startswith("rcs(") else "+".join(self._other_exposures()))
            ref = float(vol.median()) if v.reference_volume == "median" else float(v.reference_volume)
            idx = [i for i, t in enumerate(res.terms) if t.startswith("rcs(")]
            lo, hi, basis = self._volume_range(vol)
            grid = np.unique(np.round(np.linspace(lo, hi, 100), 1))
            D = rcs_basis(grid, knots) - rcs_basis([ref], knots)
            beta = np.asarray(res.estimate)[idx]
            cov = np.asarray(res.cov)[np.ix_(idx, idx)]
            est = D @ beta
            se = np.sqrt(np.clip(np.einsum("ij,jk,ik->i", D, cov, D), 0, None))
            from scipy import stats

            z = stats.norm.ppf(0.5 + self.spec.conf_level / 2)
            # Wald test of the non-linear terms (all spline columns but the linear one)
            nl = list(range(1, len(idx)))
            b, V = beta[nl], cov[np.ix_(nl, nl)]
            chi2 = float(b @ np.linalg.solve(V, b))
            self.extras.setdefault("volume_curve", []).append({
                "outcome": o, "model": v.model, "scale": "odds_ratio", "result_scale": res.scale,
                "reference_volume": ref, "knots": knots, "range_basis": basis,
                "volume": grid, "or": np.exp(est), "conf_low": np.exp(est - z * se), "conf_high": np.exp(est + z * se),
                "log_or_se": se,
                "nonlinearity_chi2": chi2, "nonlinearity_df": len(nl),
                "nonlinearity_p": float(stats.chi2.sf(chi2, len(nl))),
            })

        return run

    def _volume_range(self, vol: pd.Series) -> tuple[float, float, str]:
        """The spline curve's x-range: the 1st to the 99th percentile of the hospital-years'
        annual volume (each hospital-year counted once, not once per patient it treated), and
        what it was taken over: ``hospital-years``,
        ``hospitals`` without a year column, ``patients`` without a hospital column."""
        v = self.spec.volume
        units = vol.notna()
        basis = "patients"
        if self.spec.cluster in self.df.columns:
            keys = [self.spec.cluster] + [c for c in (v.year_column,) if c in self.df.columns]
            units &= ~self.df[keys].duplicated()
            basis = "hospital-years" if len(keys) == 2 else "hospitals"
        lo, hi = np.quantile(vol[units].to_numpy(dtype=float), [0.01, 0.99])
        return float(lo), float(hi), basis

    def _ps_formula(self):
        w = self.spec.weighting.exposure
        return f"{w} ~ {' + '.join(self.p.covariate_terms) or '1'}"

    def _weighting(self, method):
        def run(job):
            from hospstudy.models.weighting import balance_table, propensity_weights, weighted_logit

            s, ws = self.spec, self.spec.weighting
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                pw = propensity_weights(self._ps_formula(), self.df, method=method, stabilized=ws.stabilized)
            notes = [str(w.message) for w in caught]
            weights = pw
            if ws.trim is not None:
                wv = pw.weights.copy()
                wv[(pw.ps < ws.trim) | (pw.ps > 1 - ws.trim)] = np.nan
                weights = wv.to_numpy()
                notes.append(f"patients with a propensity score outside [{ws.trim}, {1 - ws.trim}] left out")
            for o in ws.outcomes or s.binary_outcomes:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    res = weighted_logit(f"{o} ~ {ws.exposure}", self.df, weights, cluster=s.cluster, conf_level=s.conf_level)
                sub = _Job(job.analysis, o, ws.exposure, "weighted_logit", None)
                self.add_rows(sub, res, notes + [str(w.message) for w in caught], scale="weighted")
                self.fits[(job.analysis, o, ws.exposure, "weighted_logit")] = res
            bt = balance_table(self.df, self.p.used_covariates, ws.exposure, weights=weights)
            bt["covariate"] = [f"{v}" if (lv is None or lv != lv or lv == "") else f"{v}: {lv}" for v, lv in zip(bt["variable"], bt["level"])]
            bal = self.extras.setdefault("balance", [])
            if not bal:
                bal.extend({"covariate": c, "before": b} for c, b in zip(bt["covariate"], bt["smd_before"]))
            for row, a in zip(bal, bt["smd_after"]):
                row[method] = a
            vr = self.extras.setdefault("balance_variance_ratios", [])
            if not vr:
                vr.extend({"covariate": c, "before": b} for c, b, t in zip(bt["covariate"], bt["vr_before"], bt["type"]) if t == "continuous")
            for row, a in zip(vr, bt.loc[bt["type"] == "continuous", "vr_after"]):
                row[method] = a
            summ = pw.summary()
            self.extras.setdefault("weights", []).append({
                "method": method, "estimand": pw.estimand, "stabilized": pw.stabilized, "trim": ws.trim,
                "groups": summ.drop(columns=[c for c in ("n",) if c in summ]).to_dict("records"),
                "max_abs_smd_before": float(np.nanmax(np.abs(bt["smd_before"]))),
                "max_abs_smd_after": float(np.nanmax(np.abs(bt["smd_after"]))),
            })

        return run

    def _evalues(self, job):
        from hospstudy.models.evalue import evalue

        out = []
        prim = self.spec.primary_model
        for (analysis, o, e, m), res in list(self.fits.items()):
            if not ((m == prim and analysis in ("alone", "mutual")) or m == "weighted_logit"):
                continue
            t = res.tidy()
            t["term"] = [_clean_term(x) for x in t["term"]]
            for e1 in e.split("+"):
                hit = t[(t.term == e1) | t.term.str.startswith(e1 + "[")]
                for r in hit.itertuples(index=False):
                    if not (np.isfinite(r.exp_estimate) and np.isfinite(r.exp_conf_low) and np.isfinite(r.exp_conf_high)):
                        continue
                    ev = evalue(float(r.exp_estimate), float(r.exp_conf_low), float(r.exp_conf_high), rare=self.p.rare.get(o, True))
                    out.append({"analysis": analysis, "outcome": o, "exposure": e1, "term": r.term, "model": m,
                                "odds_ratio": r.exp_estimate, "conf_low": r.exp_conf_low, "conf_high": r.exp_conf_high,
                                "evalue": ev.estimate, "evalue_ci": ev.ci, "conversion": ev.conversion})
        self.extras["evalues"] = out

    def _cr_frame(self):
        cr = self.spec.competing_risks
        d = self.df
        t = pd.to_numeric(d[cr.outcome], errors="coerce")
        ev = pd.to_numeric(d[cr.event_column], errors="coerce")
        ok = t.notna() & ev.notna()
        bad = ok & ~ev.isin([0, *cr.causes])
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(f"analyses.competing_risks.event_column: column {cr.event_column!r} row {i} holds "
                             f"{_plain(d[cr.event_column].iloc[i])!r}; allowed 0 (censored), {cr.event} (event), {', '.join(map(str, cr.competing))} (competing)")
        neg = ok & (t < 0)
        if neg.any():
            i = int(np.flatnonzero(neg.to_numpy())[0])
            raise InputError(f"analyses.competing_risks.outcome: column {cr.outcome!r} row {i} holds a negative time {_plain(t.iloc[i])!r}")
        return d.assign(**{cr.event_column: ev, cr.outcome: t})

    def _competing(self, m, exps):
        def run(job):
            from hospstudy.models.competing import cause_specific_cox, fine_gray

            cr, s = self.spec.competing_risks, self.spec
            d = self._cr_frame()
            rhs = self.rhs(exps) if cr.adjusted else " + ".join(exps)
            f = f"{cr.outcome} ~ {rhs}"
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                if m == "cause_specific":
                    res = cause_specific_cox(f, d, cr.event_column, cause=cr.event, cluster=s.cluster, conf_level=s.conf_level)
                else:
                    res = fine_gray(f, d, cr.event_column, cause=cr.event, cluster=s.cluster, conf_level=s.conf_level)
            self.add_rows(job, res, [str(w.message) for w in caught], exposure_of=self.exposure_of(exps))

        return run

    def _cif(self, exps):
        def run(job):
            from hospstudy.models.competing import cumulative_incidence
            from hospstudy.privacy import coarsen_at_risk

            cr = self.spec.competing_risks
            d = self._cr_frame()
            thr = self.thr
            curves = []
            groups = [e for e in exps if set(pd.unique(d[e].dropna())) <= {0.0, 1.0}]
            qcol = self.spec.volume.quartile_column if self.spec.volume is not None else None
            if qcol and qcol in d.columns:
                groups.append(qcol)
            for gcol in groups:
                ci = cumulative_incidence(d, cr.outcome, cr.event_column, group=gcol, causes=cr.causes,
                                          conf_level=self.spec.conf_level)
                if cr.horizon is not None:
                    ci = ci[ci.time <= cr.horizon]
                times = d[cr.outcome].to_numpy(dtype=float)
                grid = _at_risk_grid(np.nanmax(times) if len(times) else 0.0, cr.horizon)
                for g, part in ci.groupby("group", sort=True):
                    label = f"{gcol}={_level_label(g)}"
                    tg = times[(d[gcol] == g).to_numpy() & np.isfinite(times)]
                    curves.append({
                        "exposure": gcol, "group": label, "level": _level_label(g),
                        **_published_cif(part, cr.event, list(cr.competing), thr, cr.state_label),
                        "n": int((d[gcol] == g).sum()),
                        # patients still in hospital (at risk of every state) at each grid day
                        "at_risk_time": grid, "n_at_risk": coarsen_at_risk([int((tg >= x).sum()) for x in grid], thr),
                    })
            # the report draws every curve it is given: the first exposure's curves come first
            self.extras["cumulative_incidence"] = {
                "outcome": cr.outcome, "event": cr.event, "competing": list(cr.competing),
                "event_label": cr.state_label(cr.event), "competing_label": cr.state_label(cr.competing[0]),
                "states": [{"code": k, "label": cr.state_label(k)} for k in cr.causes],
                "min_events_per_step": thr,
                "method": "Aalen-Johansen; infinitesimal-jackknife SE, log-scale limits; for disclosure control each "
                          f"step groups at least {thr} events (event of interest plus competing), the estimate shown "
                          f"being the exact one at the step's last time, and curves end where fewer than {thr} "
                          "patients remain at risk",
                "curves": [c for c in curves if c["exposure"] == (groups[0] if groups else None)],
                "other_curves": [c for c in curves if c["exposure"] != (groups[0] if groups else None)],
            }

        return run

    def _profiling(self):
        def run(job):
            from hospstudy.models.profiling import risk_standardized_rates

            pr, s = self.spec.profiling, self.spec
            f = f"{pr.outcome} ~ {' + '.join(self.p.covariate_terms) or '1'}"
            d = self.df.copy()
            d[pr.outcome] = _to_number(d[pr.outcome])
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                prof = risk_standardized_rates(f, d, s.cluster, coverage=pr.limits, method=pr.method)
            min_cases = max(pr.min_size, self.thr)
            pts = prof.anonymous_points(min_cases=min_cases)
            n_small = int((prof.table.n < min_cases).sum())
            curve = prof.curve
            limits = []
            for c in pr.limits:
                lab = f"{c * 100:g}"
                limits.append({"coverage": c, "label": f"{lab}%", "n": curve["n"].to_numpy(),
                               "lower": curve[f"lower_{lab}"].to_numpy(), "upper": curve[f"upper_{lab}"].to_numpy()})
            flags = prof.table[prof.table.n >= min_cases]["flag"].value_counts()
            self.extras["funnel"] = {
                "outcome": pr.outcome, "overall_rate": prof.overall_rate, "method": pr.method,
                "case_mix_model": f"logistic: {_clean_formula(f)}",
                "points": pts.to_dict("records"), "limits": limits,
                "flags": [{"flag": k, "hospitals": int(v)} for k, v in flags.items()],
                "hospitals_total": int(len(prof.table)), "hospitals_not_drawn": n_small,
                "min_size": min_cases,
                "notes": [str(w.message) for w in caught],
            }

        return run

    def _trends(self):
        def run(job):
            from hospstudy.models.trends import trend_table

            tr = self.spec.trends
            d = self.df.copy()
            for c in tr.proportions:
                if d[c].dtype == bool or str(d[c].dtype) == "boolean":
                    d[c] = d[c].astype("float64")
            summary, tests = trend_table(d, tr.by, tr.proportions, tr.continuous)
            tests = tests.rename(columns={"variable": "outcome"})
            self.extras["trends"] = {"by": tr.by, "tests": tests.to_dict("records"), "summary": summary.to_dict("records")}

        return run


def _plain(v):
    """A numpy scalar as the Python value it holds (for messages: 5, not np.int64(5))."""
    return v.item() if isinstance(v, np.generic) else v


def _level_label(v):
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v)


def _at_risk_grid(last: float, horizon: float | None) -> list[float]:
    """Days at which the numbers at risk are shown under the curves."""
    end = min(last, horizon) if horizon is not None else last
    return [float(x) for x in (0, 7, 14, 30, 60, 90, 120, 180, 365) if x <= end]


def _published_cif(part: pd.DataFrame, event: int, competing, threshold: int, state_label=None) -> dict:
    """One group's curves as published: the origin (time 0, incidence 0), then the exact
    Aalen–Johansen estimates (and limits) of every state at the times
    :func:`coarsen_cif_steps` allows, each step holding at least ``threshold`` events of any
    state. ``cif_event``/``cif_competing`` hold the event of interest and the first competing
    event; ``states`` every state in order (event first)."""
    from hospstudy.privacy import coarsen_cif_steps

    competing = [competing] if isinstance(competing, (int, np.integer)) else list(competing)
    ev = part[part.cause == event].set_index("time").sort_index()
    cos = [part[part.cause == c].set_index("time").reindex(ev.index) for c in competing]
    keep = coarsen_cif_steps(ev.n_risk.to_numpy(), ev.n_event.to_numpy() + sum(co.n_event.to_numpy() for co in cos), threshold)
    ev, cos = ev.iloc[keep], [co.iloc[keep] for co in cos]

    def col(frame, name, origin):
        return np.concatenate([[origin], frame[name].to_numpy(dtype=float)])

    states = [{"code": int(k), "label": state_label(k) if state_label else str(k), "cif": col(f, "estimate", 0.0),
               "conf_low": col(f, "conf_low", np.nan), "conf_high": col(f, "conf_high", np.nan)}
              for k, f in zip([event, *competing], [ev, *cos])]
    return {
        "time": col(ev.reset_index(), "time", 0.0),
        "cif_event": states[0]["cif"], "cif_event_low": states[0]["conf_low"], "cif_event_high": states[0]["conf_high"],
        "cif_competing": states[1]["cif"], "cif_competing_low": states[1]["conf_low"], "cif_competing_high": states[1]["conf_high"],
        "states": states,
    }


def _clean_formula(f: str) -> str:
    return re.sub(r"C\((\w+), contr\.treatment\([^)]*\)\)", r"\1", f)


def _print_notes(rows: list[dict], limit: int = 12) -> None:
    """The models' warnings, each distinct message once with the first analysis it concerns
    and how many more; all of them stay in the results' ``note`` column."""
    where: dict[str, list[str]] = {}
    for r in rows:
        if not r.get("note"):
            continue
        fit = " ".join(str(r.get(k)) for k in ("analysis", "outcome", "exposure", "model") if r.get(k))
        for msg in r.get("_notes") or [r["note"]]:
            msg = msg.strip()
            if msg and fit not in where.setdefault(msg, []):
                where[msg].append(fit)
    for msg, fits in list(where.items())[:limit]:
        also = f" (+{len(fits) - 1} more)" if len(fits) > 1 else ""
        console.print(f"[yellow]warning:[/] {msg} [dim]— {fits[0]}{also}[/]", soft_wrap=True)
    if len(where) > limit:
        console.print(f"[yellow]warning:[/] {len(where) - limit} more distinct warnings: see the note column of the results")


def run_analyses(study_or_spec, analytic_df: pd.DataFrame, seed: int = 0, *, show_progress: bool = True,
                 out: str | Path | None = None, threshold: int | None = 10,
                 disclosure_threshold: int | None = None) -> AnalysisResults:
    """Run every analysis of the study's ``[analyses]`` section on the analytic dataset.

    Parameters
    ----------
    study_or_spec : Study, AnalysesSpec, dict or path
        The study (``Study.load(path)``), its parsed ``[analyses]`` settings, the raw table or
        a study-file path.
    analytic_df : DataFrame
        The analytic dataset, one row per patient (``OUT/private/analytic.parquet``).
    seed : int
        Recorded in the results; the analyses themselves are deterministic.
    show_progress : bool
        Rich progress per analysis on stderr.
    out : path, optional
        When given, write ``results.parquet``, ``results.csv`` and ``results.json`` there.
    threshold : int or None
        Small-count threshold for the files written to ``out`` (None: no suppression).
    disclosure_threshold : int, optional
        The smallest count the published extras may rest on: each step of the cumulative
        incidence curves holds at least this many events, and the funnel plot draws only
        hospitals with at least this many patients. Default: the study's ``[report]
        disclosure_threshold`` when a Study is given, else 10.

    Returns
    -------
    AnalysisResults

    Examples
    --------
    >>> from hospstudy import Study                                          # doctest: +SKIP
    >>> study = Study.load("studies/spinal_metastasis.toml")                # doctest: +SKIP
    >>> analytic = pd.read_parquet("out/private/analytic.parquet")         # doctest: +SKIP
    >>> res = run_analyses(study, analytic, out="out")                      # doctest: +SKIP
    >>> res.primary()[["outcome", "term", "exp_estimate", "exp_conf_low", "exp_conf_high"]]  # doctest: +SKIP
    """
    t_start = time.perf_counter()
    spec = load_spec(study_or_spec)
    prep = _prepare(spec, analytic_df)
    if disclosure_threshold is None:
        report = getattr(study_or_spec, "report", None)
        disclosure_threshold = getattr(report, "disclosure_threshold", None) or 10
    runner = _Runner(spec, prep, seed, disclosure_threshold)
    jobs = runner.jobs()
    for note in prep.notes:
        console.print(f"[yellow]note:[/] {note}")
    # The models work on tall, narrow matrices (10,000 x 30): threaded BLAS spends more on
    # synchronising than it saves, and on 2 shared cores it was 3x slower (13 s vs 40 s for the
    # flagship set, bench/RESULTS.md), so the fits run single-threaded.
    with progress() as bar, single_threaded_blas():
        task = bar.add_task("analyses", total=len(jobs))
        for job in jobs:
            name = " ".join(x for x in (job.analysis, job.outcome, job.exposure, job.model) if x)
            bar.update(task, description=name)
            t0 = time.perf_counter()
            n_rows = len(runner.rows)
            try:
                job.run(job)
            except Exception as e:  # one failed analysis never stops the run
                msg = str(e) if isinstance(e, HospstudyError) else f"{type(e).__name__}: {e}"
                runner.failures.append({"analysis": job.analysis, "outcome": job.outcome, "exposure": job.exposure,
                                        "model": job.model, "error": msg})
                del runner.rows[n_rows:]
                runner.rows.append({c: None for c in RESULT_COLUMNS + EXTRA_COLUMNS} | {
                    "analysis": job.analysis, "outcome": job.outcome, "exposure": job.exposure, "model": job.model,
                    "error": msg})
                console.print(f"[yellow]warning:[/] analysis {name} failed: {msg}", soft_wrap=True)
            runner.timings[name] = round(time.perf_counter() - t0, 3)
            bar.advance(task)
    _print_notes(runner.rows)
    table = pd.DataFrame(runner.rows, columns=RESULT_COLUMNS + EXTRA_COLUMNS)
    for c in ("estimate", "std_error", "conf_low", "conf_high", "p_value", "exp_estimate", "exp_conf_low", "exp_conf_high"):
        table[c] = pd.to_numeric(table[c], errors="coerce")
    for c in COUNT_COLUMNS:
        table[c] = pd.to_numeric(table[c], errors="coerce").round().astype("Int64")
    meta = _meta(spec, prep, seed, runner, time.perf_counter() - t_start)
    res = AnalysisResults(table, runner.extras, runner.failures, meta)
    if out is not None:
        res.write(out, threshold=threshold)
    return res


def _meta(spec, prep, seed, runner, seconds):
    import importlib.metadata as md

    versions = {}
    # what the analyses ran on (statsmodels and lifelines are only the tests' yardsticks)
    for pkg in ("hospstudy", "numpy", "scipy", "pandas", "formulaic"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    versions["python"] = platform.python_version()
    df = prep.df
    return {
        "seed": seed,
        "primary_model": spec.primary_model,
        "patients": int(len(df)),
        "hospitals": int(df[spec.cluster].nunique()),
        "covariate_terms": [_clean_formula(t) for t in prep.covariate_terms],
        "notes": prep.notes,
        "rare_outcomes": prep.rare,
        "settings": spec.model_dump(mode="json"),
        "versions": versions,
        "seconds": round(seconds, 2),
        "analysis_seconds": runner.timings,
        "failed": len(runner.failures),
    }
