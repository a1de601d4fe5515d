"""Daily claim lines (the EF file) of a block of admissions, vectorised."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from hospstudy.data.synth import arrowutil as au
from hospstudy.data.synth import params as P

# One vocabulary of receipt codes; each code has one billing kind.
_VOCAB: list[tuple[str, str]] = (
    [(P.BILLING_DAILY_FEE, "other"), (P.BILLING_SURGERY_CODE, "procedure")]
    + [(c, "rehabilitation") for c in P.BILLING_REHAB_CODES]
    + [(c, "radiotherapy") for c in P.BILLING_RADIOTHERAPY_CODES]
    + [(c, "transfusion") for c in P.BILLING_TRANSFUSION_CODES]
    + [(c, "drug") for c in P.TARGETED_DRUGS]
    + [(f"{610000001 + i:09d}", "drug") for i in range(P.N_DRUG_CODES)]
)
CODES = [c for c, _ in _VOCAB]
_KIND_NAMES = ["drug", "procedure", "radiotherapy", "transfusion", "rehabilitation", "other"]
_KIND_OF_CODE = np.array([_KIND_NAMES.index(k) for _, k in _VOCAB], dtype=np.int32)
I_DAILY, I_SURGERY = 0, 1
I_REHAB = 2
I_RADIO = 2 + len(P.BILLING_REHAB_CODES)
I_TRANSF = I_RADIO + len(P.BILLING_RADIOTHERAPY_CODES)
I_TARGETED = I_TRANSF + len(P.BILLING_TRANSFUSION_CODES)
I_DRUG = I_TARGETED + len(P.TARGETED_DRUGS)
_DRUG_P = 1.0 / (np.arange(P.N_DRUG_CODES) + 5.0)  # a few drugs are common, most are rare
_DRUG_CDF = np.cumsum(_DRUG_P / _DRUG_P.sum())


@dataclass
class BillingSpec:
    """What an admission bills. Day numbers are absolute (days since 1970-01-01); surgery -1 = none."""

    admit: np.ndarray
    discharge: np.ndarray
    surgery: np.ndarray
    drug_rate: np.ndarray  # expected drug lines per hospital day
    rehab: np.ndarray  # bool: daily rehabilitation after surgery (or from admission without surgery)
    radiotherapy: np.ndarray  # number of radiotherapy fractions
    transfusion: np.ndarray  # bool
    targeted: np.ndarray  # bool: a molecular-targeted drug billed during the stay

    def __len__(self):
        return len(self.admit)

    @staticmethod
    def concat(specs: list["BillingSpec"]) -> "BillingSpec":
        return BillingSpec(*[np.concatenate([getattr(s, f) for s in specs]) for f in BillingSpec.__dataclass_fields__])

    def slice(self, a: int, b: int) -> "BillingSpec":
        return BillingSpec(*[getattr(self, f)[a:b] for f in BillingSpec.__dataclass_fields__])


def _expand(counts: np.ndarray):
    """Row index and 0-based position within the row for ``counts`` repetitions of each row."""
    counts = np.asarray(counts, dtype=np.int64)
    idx = np.repeat(np.arange(len(counts)), counts)
    start = np.cumsum(counts) - counts
    pos = np.arange(len(idx)) - np.repeat(start, counts)
    return idx, pos


def lines(rng: np.random.Generator, spec: BillingSpec, admission_ids: pa.Array) -> pa.Table:
    """The billing lines of the admissions of ``spec`` (``admission_ids`` in the same order),
    grouped by admission; every service date lies within admit..discharge."""
    n = len(spec)
    days = spec.discharge - spec.admit + 1
    parts_idx, parts_day, parts_code, parts_qty = [], [], [], []

    def add(idx, day, code, qty):
        parts_idx.append(idx)
        parts_day.append(day)
        parts_code.append(code)
        parts_qty.append(qty)

    # Daily inpatient fee, one line per hospital day.
    idx, pos = _expand(days)
    add(idx, spec.admit[idx] + pos, np.full(len(idx), I_DAILY, np.int32), np.ones(len(idx), np.float32))
    # Drugs on random days of the stay.
    cnt = rng.poisson(spec.drug_rate * days)
    idx, _ = _expand(cnt)
    day = spec.admit[idx] + np.floor(rng.random(len(idx)) * days[idx]).astype(np.int64)
    code = I_DRUG + np.searchsorted(_DRUG_CDF, rng.random(len(idx)) * _DRUG_CDF[-1], side="right").clip(0, P.N_DRUG_CODES - 1)
    add(idx, day, code.astype(np.int32), rng.choice(np.array([0.5, 1, 1, 2, 3], np.float32), len(idx)))
    # Surgery fee and transfusion on the day of surgery.
    s = np.flatnonzero(spec.surgery >= 0)
    add(s, spec.surgery[s], np.full(len(s), I_SURGERY, np.int32), np.ones(len(s), np.float32))
    t = s[spec.transfusion[s]]
    add(t, spec.surgery[t], np.full(len(t), I_TRANSF, np.int32), rng.choice(np.array([2, 4, 6], np.float32), len(t)))
    # Rehabilitation on most days after surgery (or after admission when there is none).
    start = np.where(spec.surgery >= 0, spec.surgery + 1, spec.admit + 1)
    span = np.maximum(spec.discharge - start + 1, 0)
    cnt = np.where(spec.rehab, np.floor(0.5 * span), 0).astype(np.int64)
    idx, _ = _expand(cnt)
    day = start[idx] + np.floor(rng.random(len(idx)) * span[idx]).astype(np.int64)
    add(idx, day, (I_REHAB + rng.integers(0, len(P.BILLING_REHAB_CODES), len(idx))).astype(np.int32),
        rng.integers(1, 4, len(idx)).astype(np.float32))
    # Radiotherapy fractions within the stay (after surgery when there is one).
    idx, _ = _expand(spec.radiotherapy)
    day = start[idx] - 1 + np.floor(rng.random(len(idx)) * (span[idx] + 1)).astype(np.int64)
    add(idx, day, (I_RADIO + rng.integers(0, len(P.BILLING_RADIOTHERAPY_CODES), len(idx))).astype(np.int32),
        np.ones(len(idx), np.float32))
    # Molecular-targeted drug: one drug per admission, several days.
    tg = np.flatnonzero(spec.targeted)
    which = rng.integers(0, len(P.TARGETED_DRUGS), len(tg))
    cnt = np.minimum(1 + rng.poisson(4.0, len(tg)), days[tg])
    k, _ = _expand(cnt)
    idx = tg[k]
    day = spec.admit[idx] + np.floor(rng.random(len(idx)) * days[idx]).astype(np.int64)
    add(idx, day, (I_TARGETED + which[k]).astype(np.int32), np.ones(len(idx), np.float32))

    idx = np.concatenate(parts_idx)
    day = np.concatenate(parts_day)
    code = np.concatenate(parts_code)
    qty = np.concatenate(parts_qty)
    # Each part is already ordered by admission, so a stable sort only merges a few runs.
    order = np.argsort(idx, kind="stable")
    idx, day, code, qty = idx[order], day[order], code[order], qty[order]
    return au.table(
        "billing",
        {
            "admission_id": pa.DictionaryArray.from_arrays(pa.array(idx.astype(np.int32)), admission_ids),
            "service_date": au.dates(day),
            "kind": au.vocab_dictionary(_KIND_NAMES, _KIND_OF_CODE[code]),
            "code": au.vocab_dictionary(CODES, code),
            "quantity": pa.array(qty, pa.float32()),
        },
    )
