"""Reading the analyses' results (``results.json``) for the report.

The runner (``hospstudy.models.analyses``) writes one tidy table plus the curves and
diagnostics the report draws (docs/results_schema.md). This module is the report's only
reader of that file: every accessor returns ``None`` or an empty frame when a piece is
absent, so each report section can say plainly that its analysis did not run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hospstudy.errors import InputError
from hospstudy.report.labels import label

RESULT_COLUMNS = [
    "analysis", "outcome", "exposure", "model", "scale", "term", "estimate", "std_error", "conf_low", "conf_high",
    "p_value", "exp_estimate", "exp_conf_low", "exp_conf_high", "n", "events", "clusters",
]
MODEL_LABELS = {
    "mixed_logit": "Random-intercept logistic",
    "gee_logit": "GEE logistic",
    "logit": "Logistic",
    "weighted_logit": "Weighted logistic",
    "cause_specific": "Cause-specific Cox",
    "fine_gray": "Fine–Gray",
}
SCALE_LABELS = {
    "conditional": "conditional (within hospital)",
    "marginal": "marginal (population-averaged)",
    "unclustered": "unclustered",
    "weighted": "marginal (weighted)",
}


@dataclass
class Results:
    """The tidy results table and the extras (curves, diagnostics), as read from results.json."""

    table: pd.DataFrame
    extras: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    failures: list[dict] = field(default_factory=list)

    @classmethod
    def load(cls, path: str | Path) -> "Results":
        path = Path(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"{path}: no results file (run the analyses first)") from None
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None
        return cls.from_dict(doc, source=str(path))

    @classmethod
    def from_dict(cls, doc: dict, source: str = "results") -> "Results":
        if not isinstance(doc, dict):
            raise InputError(f"{source}: expected a JSON object with a 'table' list")
        rows = doc.get("table", doc.get("results", []))
        if not isinstance(rows, list):
            raise InputError(f"{source}: 'table' must be a list of rows")
        table = pd.DataFrame(rows)
        for c in RESULT_COLUMNS:
            if c not in table.columns:
                table[c] = np.nan
        for c in ("estimate", "std_error", "conf_low", "conf_high", "p_value", "exp_estimate", "exp_conf_low", "exp_conf_high"):
            table[c] = pd.to_numeric(table[c], errors="coerce")
        extras = dict(doc.get("extras", {}) or {})
        for k, v in doc.items():
            if k not in ("table", "results", "extras", "meta", "failures", "errors") and k not in extras:
                extras[k] = v
        failures = doc.get("failures", doc.get("errors", [])) or []
        if isinstance(failures, dict):
            failures = [{"analysis": k, "error": v} for k, v in failures.items()]
        return cls(table, extras, dict(doc.get("meta", {}) or {}), list(failures))

    def extra(self, *names: str):
        """The first extra present under any of ``names`` (schema variants), else None."""
        for n in names:
            v = self.extras.get(n)
            if v not in (None, [], {}):
                return v
        return None

    def failed(self, *words: str) -> list[str]:
        """Messages of failed analyses whose name contains any of ``words``."""
        out = []
        for f in self.failures:
            name = str(f.get("analysis", f.get("name", "")))
            if not words or any(w in name for w in words):
                readable = ", ".join(label(x) for x in re.split(r"[/ ]+", name) if x)
                out.append(f"Not estimated ({readable}): {f.get('error', f.get('message', ''))}")
        return out


def exposure_term_mask(table: pd.DataFrame) -> pd.Series:
    """Rows whose term is the exposure itself (``cancer_center``, ``cancer_center[T.True]``,
    ``volume_quartile[T.4]``, ...), not an adjustment covariate or the intercept."""
    term = table["term"].astype(str)
    exp = table["exposure"].astype(str)
    return pd.Series([t == e or t.startswith(e + "[") or t.startswith(e + "_") or t.startswith(f"C({e}") for t, e in zip(term, exp)],
                     index=table.index)


def classify(table: pd.DataFrame) -> pd.Series:
    """Which report section a result row belongs to: 'adjusted', 'quartile', 'spline',
    'weighted', 'competing' or 'other'."""
    a = table["analysis"].astype(str).str.lower()
    m = table["model"].astype(str).str.lower()
    s = table["scale"].astype(str).str.lower()
    e = table["exposure"].astype(str).str.lower()
    t = table["term"].astype(str).str.lower()
    out = pd.Series("adjusted", index=table.index)
    out[m.isin(["cause_specific", "fine_gray"]) | a.str.contains("compet") | a.str.contains("fine")] = "competing"
    out[(s == "weighted") | a.str.contains("iptw|overlap|weight")] = "weighted"
    out[a.str.contains("spline") | t.str.contains("spline|rcs|cr\\(")] = "spline"
    quart = (a.str.contains("quartile") | e.str.contains("quartile")) & (out == "adjusted")
    out[quart & e.str.contains("quartile")] = "quartile"
    out[quart & ~e.str.contains("quartile")] = "other"  # other exposures adjusted for quartiles
    return out
