"""The report's readable names: one label map for columns, levels, models and adjustment sets.

Every name a reader sees goes through :func:`label` (a column or analysis name) or
:func:`level_label` (a value of a categorical column). The study file can add or override
entries in ``[report.labels]`` (``death_30d = "Death within 30 days"``; a level as
``"sex=M" = "Male"``); :func:`study_labels` applies them for one rendering.

:data:`CODE_LIKE` lists the internal spellings that must never reach the visible text of a
report (the browser test checks it): keep it beside the map when adding a label.
"""

from __future__ import annotations

import contextvars
import re
from contextlib import contextmanager
from typing import Iterator, Mapping

#: Readable names of the flagship's columns (a study's own columns fall back to the name,
#: underscores as spaces). American spelling, as the journals of the flagship use.
LABELS: dict[str, str] = {
    "age": "Age, years", "age_group": "Age group", "sex": "Sex", "bmi": "BMI, kg/m²", "bmi_group": "BMI group, kg/m²",
    "charlson": "Charlson comorbidity index", "barthel_adm": "Barthel index at admission", "barthel_group": "Barthel index at admission",
    "walking_adm": "Walking at admission", "walking_dis": "Walking at discharge", "jcs_group": "Japan Coma Scale",
    "emergency": "Emergency admission", "ambulance": "Arrival by ambulance", "primary_site": "Primary tumor site",
    "katagiri_group": "Katagiri growth group", "visceral_mets": "Visceral metastasis", "brain_mets": "Brain metastasis",
    "spinal_level": "Spinal level", "surgery_type": "Surgery type", "teaching": "Teaching hospital", "fiscal_year": "Fiscal year",
    "cancer_center": "Cancer center", "volume": "Annual hospital volume", "volume_per50": "Volume, per 50 cases",
    "volume_quartile": "Volume quartile", "death_30d": "30-day mortality", "in_hospital_death": "In-hospital mortality",
    "complication": "Postoperative complication", "unfavorable_ambulatory": "Unfavorable ambulatory status",
    "discharged_home": "Discharged home", "postop_los": "Postoperative length of stay, days",
    "los_to_home": "Length of stay until discharge home",
    # models and adjustment sets (result rows)
    "mixed_logit": "Random-intercept logistic", "gee_logit": "GEE logistic", "logit": "Logistic",
    "weighted_logit": "Weighted logistic", "cause_specific": "Cause-specific Cox", "fine_gray": "Fine–Gray",
    "alone": "each exposure alone", "mutual": "exposures mutually adjusted", "weighting_iptw": "IPTW",
    "weighting_overlap": "overlap weights", "volume_quartiles": "volume quartiles", "volume_spline": "volume spline",
}

#: Readable names of levels, keyed ``column=value`` (any column) or ``=value`` (every column).
LEVEL_LABELS: dict[str, str] = {
    "sex=M": "Male", "sex=F": "Female",
    "primary_site=myeloma_lymphoma": "Myeloma or lymphoma", "primary_site=oesophagus": "Esophagus",
    "primary_site=esophagus": "Esophagus", "primary_site=head_neck": "Head and neck",
    "primary_site=uterus_ovary": "Uterus or ovary", "surgery_type=tumour_resection": "Tumor resection",
    "surgery_type=tumor_resection": "Tumor resection", "surgery_type=fusion": "Fusion",
    "surgery_type=decompression": "Decompression", "surgery_type=vertebroplasty": "Vertebroplasty",
    "cancer_center=True": "Cancer center", "cancer_center=False": "Other hospital",
    "cancer_center=1": "Cancer center", "cancer_center=0": "Other hospital",
    "=missing": "Missing",
    **{f"{c}={k}": v for c in ("walking_adm", "walking_dis") for k, v in
       ((0, "0, unable to walk"), (1, "1, wheelchair"), (2, "2, walks with help"), (3, "3, walks independently"))},
}

#: Internal spellings that must not appear in a report's visible text (checked by the
#: browser test and tests/test_report_sections.py).
CODE_LIKE: tuple[str, ...] = (
    "tumour_resection", "myeloma_lymphoma", "volume_quartiles", "weighting_iptw", "weighting_overlap",
    "cause_specific_mutual", "fine_gray_mutual", "sex[T.M]", "[T.", "death_30d", "in_hospital_death", "los_to_home",
    "volume_per50", "cancer_center", "mixed_logit", "gee_logit", "unfavorable_ambulatory", "docs/architecture.md",
    "head_neck", "uterus_ovary", "oesophagus",  # the last: British spelling of a level (American in the report)
)

#: Comparison spellings of grouped levels (``>=80``, ``<18.5``), which the label map turns into
#: words; kept out of the visible text like :data:`CODE_LIKE`. ``<10`` (a suppressed count at the
#: threshold) and ``<0.001`` (a p-value) are the report's own notation: :func:`code_like` skips them.
CODE_LIKE_PATTERN = re.compile(r"[<>]=|(?<![\w.])[<>]\d+(?:\.\d+)?(?![\d.])")


def code_like(text: str, threshold: int = 10) -> list[str]:
    """The internal spellings in ``text``: entries of :data:`CODE_LIKE` and comparisons such as
    ``>=80`` (not the suppression marker ``<threshold`` nor ``<0.001``)."""
    found = [c for c in CODE_LIKE if c in text]
    found += [m for m in CODE_LIKE_PATTERN.findall(text) if m not in (f"<{threshold}", "<0.001")]
    return found


def prose(text: str) -> str:
    """A study file's own wording (a description) as the report prints it: comparison operators
    as the signs a reader expects (``<= 1`` → ``≤ 1``)."""
    return str(text).replace("<=", "≤").replace(">=", "≥")


_EXTRA: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("hospstudy_report_labels", default={})


@contextmanager
def study_labels(extra: Mapping[str, str] | None) -> Iterator[None]:
    """Apply a study's ``[report.labels]`` for the duration of one rendering."""
    token = _EXTRA.set({str(k): str(v) for k, v in (extra or {}).items()})
    try:
        yield
    finally:
        _EXTRA.reset(token)


def label(name: str) -> str:
    """The readable name of a column, model or adjustment set."""
    name = str(name)
    extra = _EXTRA.get()
    if name in extra:
        return extra[name]
    return LABELS.get(name, name.replace("_", " ").capitalize())


def level_label(column: str, value) -> str:
    """The readable name of one value of a column (``sex``, ``"M"`` → ``Male``)."""
    v = value
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    key = f"{column}={v}"
    extra = _EXTRA.get()
    for k in (key, f"={v}"):
        if k in extra:
            return extra[k]
    for k in (key, f"={v}"):
        if k in LEVEL_LABELS:
            return LEVEL_LABELS[k]
    s = str(v)
    words = _comparison_words(column, s)
    if words is not None:
        return words
    # A level written as a lower-case word or words ("lung", "head_neck") reads as a table's
    # other levels do: its first letter upper-case. Anything else (codes, "Q1", mixed case) as is.
    if re.fullmatch(r"[a-z][a-z_ ]*", s):
        return s.replace("_", " ").capitalize()
    return s.replace("_", " ").capitalize() if "_" in s else s


_NUM = r"(\d+(?:\.\d+)?)"
_COMPARISON = re.compile(rf"^\s*(>=|<=|>|<)\s*{_NUM}\s*$")
_RANGE = re.compile(rf"^\s*{_NUM}\s*-\s*{_NUM}\s*$")


def _comparison_words(column: str, value: str) -> str | None:
    """A grouped level in words: ``>=80`` of an age → "80 or older", ``>=30`` → "30 or more",
    ``<18.5`` → "under 18.5", ``18.5-24.9`` → "18.5–24.9"; None when ``value`` is no such level."""
    m = _COMPARISON.match(value)
    if m:
        op, x = m.groups()
        age = str(column).startswith("age")
        return {">=": f"{x} or {'older' if age else 'more'}", ">": f"over {x}",
                "<=": f"{x} or {'younger' if age else 'less'}", "<": f"under {x}"}[op]
    m = _RANGE.match(value)
    if m:
        return f"{m.group(1)}–{m.group(2)}"
    return None
