"""The synthetic nationwide DPC-layout database (``hospstudy synth``).

:func:`generate` writes ``facilities.parquet``, the folders ``admissions/``, ``diagnoses/``,
``procedures/`` and ``billing/`` of Parquet parts hive-partitioned by the admission's fiscal
year, and ``truth.json`` (every parameter of the data-generating model). The model, every
distribution and its source are described in docs/synthetic.md.

Example
-------
>>> from hospstudy.data.synth import generate
>>> summary = generate("/tmp/hs_demo", seed=1, scale=0.01, background=False, overwrite=True)
>>> summary["index_patients"] > 0
True
"""

from __future__ import annotations

import json
import shutil
import time
import zlib
from pathlib import Path
from typing import Mapping

import numpy as np

from hospstudy import __version__
from hospstudy.data.synth import arrowutil as au
from hospstudy.data.synth import billing as B
from hospstudy.data.synth import metastatic as M
from hospstudy.data.synth import others as O
from hospstudy.data.synth import params as P
from hospstudy.data.synth.hospitals import OUTCOMES_WITH_INTERCEPTS, make_hospitals
from hospstudy.errors import InputError

__all__ = ["generate", "OUTPUT_ENTRIES", "BILLING_BLOCK", "FORMATS"]

OUTPUT_ENTRIES = ("facilities.parquet", "admissions", "diagnoses", "procedures", "billing", "truth.json")
BILLING_BLOCK = 250_000  # admissions per billing part: bounds memory at any scale


def _rng_factory(seed: int):
    def rng_for(name: str, *keys: int) -> np.random.Generator:
        key = (zlib.crc32(name.encode()),) + tuple(int(k) for k in keys)
        return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))

    return rng_for


def _check_args(seed, scale, years):
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"The 'seed' parameter of generate must be a non-negative integer. Got {seed!r} instead.")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (0.001 <= scale <= 100):
        raise InputError(f"The 'scale' parameter of generate must be a number in [0.001, 100]. Got {scale!r} instead.")
    try:
        first, last = (int(years[0]), int(years[1]))
    except (TypeError, ValueError, IndexError):
        raise InputError(f"The 'years' parameter of generate must be (first, last) fiscal years. Got {years!r} instead.") from None
    if not (1990 <= first <= last <= 2100):
        raise InputError(f"The 'years' parameter of generate must satisfy 1990 <= first <= last <= 2100. Got {years!r} instead.")
    return first, last


def _prepare_out(out: Path, overwrite: bool, entries=OUTPUT_ENTRIES) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if out.is_dir():
        present = list(dict.fromkeys(p.name for e in entries for p in sorted(out.glob(e))))
        if present and not overwrite:
            raise InputError(f"{out}: already holds a database ({', '.join(present)}); pass --overwrite to replace it")
        # Only the entries a database consists of are replaced; other files stay untouched.
        for e in present:
            p = out / e
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    out.mkdir(parents=True, exist_ok=True)


class _ParquetSink:
    """Writes the generator's tables as the Parquet database (the default format)."""

    def __init__(self, out: Path):
        self.out = out

    def facilities(self, tbl) -> None:
        au.write(tbl, self.out / "facilities.parquet")

    def year_tables(self, fy: int, tables: dict) -> None:
        for t, tbl in tables.items():
            au.write(tbl, self.out / t / f"fiscal_year={fy}" / "part-00000.parquet")

    def billing(self, fy: int, block: int, lines) -> None:
        au.write(lines, self.out / "billing" / f"fiscal_year={fy}" / f"part-{block:05d}.parquet")

    def close(self) -> dict:
        return {}


FORMATS = ("parquet", "dpc-raw")


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return [_jsonable(v) for v in x.tolist()]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return round(float(x), 10)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def generate(
    out_dir: str | Path,
    *,
    seed: int = 20240601,
    scale: float = 1.0,
    years: tuple[int, int] = (2012, 2020),
    effects: str | Path | Mapping | None = None,
    overwrite: bool = False,
    background: bool = True,
    format: str = "parquet",
) -> dict:
    """Generate a synthetic nationwide DPC-layout database.

    Parameters
    ----------
    out_dir
        Folder to write into (created).
    seed
        Random seed; the same seed and options give byte-identical files.
    scale
        Multiplies the number of hospitals and every count of patients, admissions and billing
        lines (1.0 = nationwide: ~1,700 hospitals, ~10,300 index patients).
    years
        First and last fiscal year (April-March).
    effects
        Overrides of the planted effects and calibration targets: a TOML file or a dict of
        tables (docs/synthetic.md lists every key).
    overwrite
        Replace a database already in ``out_dir``.
    background
        False skips the background admissions and the billing of all but the metastatic
        surgical admissions (fast replicate simulations of the cohort; volumes are unchanged
        because non-metastatic spine-surgery admissions are always written).
    format
        ``"parquet"`` (the database) or ``"dpc-raw"``: the same world as the Ministry's raw files,
        ``FF1_<fy>.txt`` (Form 1) and ``EFn_<fy>.txt`` (EF) in CP932 plus ``facilities.csv``, the
        input of ``hospstudy import-dpc`` (docs/synthetic.md, "As raw DPC files").

    Returns
    -------
    dict
        Counts of what was written (hospitals, admissions by kind, rows per table, seconds).

    Raises
    ------
    InputError
        Bad arguments, an invalid effects file, or an existing database without ``overwrite``.
    """
    from hospstudy.console import progress

    t0 = time.perf_counter()
    first, last = _check_args(seed, scale, years)
    if format not in FORMATS:
        raise InputError(f"The 'format' parameter of generate must be one of {', '.join(FORMATS)}. Got {format!r} instead.")
    prm = P.resolve_effects(effects)
    out = Path(out_dir)
    yrs = np.arange(first, last + 1)
    rng_for = _rng_factory(int(seed))
    if format == "parquet":
        _prepare_out(out, overwrite)
        sink = _ParquetSink(out)
    else:
        from hospstudy.data.synth.raw import RAW_ENTRY_GLOBS, RawSink

        _prepare_out(out, overwrite, RAW_ENTRY_GLOBS)
        sink = RawSink(out, rng_for)

    hosp = make_hospitals(rng_for("hospitals"), float(scale), yrs, prm)
    met, solved, curves, volume = M.build(rng_for, hosp, float(scale), prm)
    met_by_year = M.tables_by_year(rng_for("metastatic_tables"), met, hosp)
    sink.facilities(hosp.facilities_table())

    n_bg_year = 0
    if background:
        n_bg_year = int(round(prm["targets"]["background_admissions"] * scale / (P.CURVE_LAST - P.CURVE_FIRST + 1)))
    rows = {"admissions": 0, "diagnoses": 0, "procedures": 0, "billing": 0}
    kinds = {"metastatic_surgical_admissions": 0, "non_metastatic_spine_admissions": 0, "background_admissions": 0}
    with progress() as bar:
        task = bar.add_task("synth: fiscal years", total=len(yrs))
        for j, fy in enumerate(yrs):
            fy = int(fy)
            parts = {"admissions": [], "diagnoses": [], "procedures": []}
            specs, ids = [], []
            mt = met_by_year.get(j)
            if mt is not None:
                for t in parts:
                    parts[t].append(mt[t])
                specs.append(mt["billing_spec"])
                ids.append(mt["admission_ids"])
                kinds["metastatic_surgical_admissions"] += mt["admissions"].num_rows
            adm, dx, px, nid, spec = O.nonmetastatic_spine(rng_for("nonmetastatic", fy), hosp, j, with_billing=background)
            for t, tbl in zip(parts, (adm, dx, px)):
                parts[t].append(tbl)
            kinds["non_metastatic_spine_admissions"] += adm.num_rows
            if spec is not None:
                specs.append(spec)
                ids.append(nid)
            if n_bg_year:
                adm, dx, px, bid, spec = O.background(rng_for("background", fy), hosp, j, n_bg_year, with_billing=True)
                for t, tbl in zip(parts, (adm, dx, px)):
                    parts[t].append(tbl)
                specs.append(spec)
                ids.append(bid)
                kinds["background_admissions"] += adm.num_rows
            tables = {t: au.concat(lst) for t, lst in parts.items()}
            for t, tbl in tables.items():
                rows[t] += tbl.num_rows
            sink.year_tables(fy, tables)
            del parts, tables
            if specs:
                spec = B.BillingSpec.concat(specs)
                all_ids = au.concat_arrays(ids)
                for b, a in enumerate(range(0, len(spec), BILLING_BLOCK)):
                    z = min(a + BILLING_BLOCK, len(spec))
                    lines = B.lines(rng_for("billing", fy, b), spec.slice(a, z), all_ids.slice(a, z - a))
                    rows["billing"] += lines.num_rows
                    sink.billing(fy, b, lines)
            bar.advance(task)

    summary = {
        "hospitals": int(hosp.n),
        "cancer_centers_first_year": int(hosp.cancer_center[:, 0].sum()),
        "index_patients": int((met.kind == M.INDEX).sum()),
        **kinds,
        "admissions": rows["admissions"],
        "diagnoses": rows["diagnoses"],
        "procedures": rows["procedures"],
        "billing_lines": rows["billing"],
        **{f"{k}_lines": v for k, v in sink.close().items()},
    }
    _write_truth(out, seed=int(seed), scale=float(scale), years=(first, last), background=background, prm=prm,
                 hosp=hosp, met=met, solved=solved, curves=curves, volume=volume, summary=summary)
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    return summary


def _write_truth(out: Path, *, seed, scale, years, background, prm, hosp, met, solved, curves, volume, summary) -> None:
    idx = met.kind == M.INDEX
    yrs = hosp.years
    realised = {
        "index_patients_by_year": {int(y): int(((met.year_idx == j) & idx).sum()) for j, y in enumerate(yrs)},
        "admissions_by_kind": {
            "index": int(idx.sum()), "under_18": int((met.kind == M.MINOR).sum()),
            "c795_complication_only": int((met.kind == M.C795_COMPLICATION_ONLY).sum()),
            "second_metastatic_surgery": int((met.kind == M.SECOND).sum()),
        },
        "index_rates": {
            "cancer_center": float(met.cc[idx].mean()) if idx.any() else None,
            "death_30d": float(met.out["death_30d"][idx].mean()) if idx.any() else None,
            "in_hospital_death": float((~met.out["alive"][idx]).mean()) if idx.any() else None,
            "complication": float(met.out["complication"][idx].mean()) if idx.any() else None,
            "discharged_home": float(met.out["home"][idx].mean()) if idx.any() else None,
            "median_postop_los": float(np.median(met.out["postop_los"][idx])) if idx.any() else None,
        },
        **summary,
    }
    truth = {
        "synthetic": True,
        "generator": {"name": "hospstudy synth", "version": __version__, "seed": seed, "scale": scale,
                      "years": list(years), "background": background, "docs": "docs/synthetic.md"},
        "targets": prm["targets"],
        "effects": {k: v for k, v in prm.items() if k != "targets"},
        "solved": {
            "note": "intercepts solved on the realised index admissions so that the expected marginal figures hit the targets; per fiscal year where a list",
            "fiscal_years": yrs,
            **solved,
        },
        "yearly_targets": {"fiscal_years": yrs, **curves},
        "codes": {
            "spine_surgery": P.SPINE_SURGERY_CODES,
            "surgery_type_groups": {
                "fusion": list(P.FUSION_CODES), "decompression": list(P.DECOMPRESSION_CODES) + list(P.DEGENERATIVE_ONLY_CODES),
                "vertebroplasty": list(P.VERTEBROPLASTY_CODES), "tumour_resection": list(P.TUMOUR_RESECTION_CODES),
            },
            "fusion_codes": P.FUSION_CODES, "decompression_codes": P.DECOMPRESSION_CODES,
            "tumour_resection_codes": P.TUMOUR_RESECTION_CODES, "nonfusion_types": P.NONFUSION_TYPES,
            "spinal_metastasis": "C795",
            "primary_sites": P.PRIMARY_SITES, "targeted_drugs": P.TARGETED_DRUGS,
            "p_targeted_drug_lung": P.P_TARGETED_DRUG_LUNG,
            "visceral_metastasis": P.VISCERAL_CODES, "brain_metastasis": P.BRAIN_CODE,
            "p_visceral": P.P_VISCERAL, "p_brain": P.P_BRAIN,
            "charlson_items": P.CHARLSON_ITEMS,
            "complications": P.COMPLICATION_CODES, "flagship_complication_prefixes": P.FLAGSHIP_COMPLICATION_PREFIXES,
            "other_complications": P.OTHER_COMPLICATION_CODES, "p_other_complication": P.P_OTHER_COMPLICATION,
            "non_metastatic_procedures": P.NONMET_PROCEDURES, "non_metastatic_diagnoses": P.NONMET_DIAGNOSES,
            "billing_placeholders": {"daily_fee": P.BILLING_DAILY_FEE, "surgery": P.BILLING_SURGERY_CODE,
                                     "rehabilitation": P.BILLING_REHAB_CODES, "radiotherapy": P.BILLING_RADIOTHERAPY_CODES,
                                     "transfusion": P.BILLING_TRANSFUSION_CODES, "drugs": f"610000001-{610000000 + P.N_DRUG_CODES}"},
        },
        "distributions": {
            "spinal_level": P.SPINAL_LEVEL_SHARES, "regions": P.REGIONS, "hospital_types": P.HOSPITAL_TYPES,
            "spine_growth_per_year": P.SPINE_GROWTH_PER_YEAR, "p_hospital_late_entry": P.P_HOSPITAL_LATE_ENTRY,
            "cancer_center_gain_per_year": P.CC_GAIN_PER_YEAR, "cancer_center_loss_per_year": P.CC_LOSS_PER_YEAR,
            "n_minors_scale1": P.N_MINORS, "n_c795_complication_only_scale1": P.N_C795_COMPLICATION_ONLY,
            "p_second_admission": P.P_SECOND_ADMISSION, "p_two_surgeries": P.P_TWO_SURGERIES,
            "background": P.BACKGROUND, "metastatic_walking_adm": M._WALKING_P, "metastatic_not_home": M.NOT_HOME,
        },
        "hospitals": {
            "hospital_id": hosp.ids, "kind": hosp.kind,
            "random_intercepts": {k: hosp.intercepts[k] for k in OUTCOMES_WITH_INTERCEPTS},
            "spine_volume_by_year": {int(y): volume[:, j] for j, y in enumerate(yrs)},
        },
        "realised": realised,
    }
    (out / "truth.json").write_text(json.dumps(_jsonable(truth), indent=1, sort_keys=True) + "\n", encoding="utf-8")
