"""The ``[analyses]`` table of a study file: which models run on which outcomes and exposures.

A frozen, validated settings object (pydantic, extra keys forbidden). The cohort stage parses
the study file and hands the ``[analyses]`` table to :class:`AnalysesSpec`; the runner
(:func:`hospstudy.models.analyses.run_analyses`) reads nothing else.

Example (the flagship's table, abridged)::

    [analyses]
    outcomes = ["death_30d", "in_hospital_death", "complication", "unfavorable_ambulatory", "los_to_home"]
    exposures = ["cancer_center", "volume_per50"]
    adjustment = ["alone", "mutual"]
    covariates = ["age", "sex", "bmi_group", "charlson", "emergency", "primary_site"]
    categorical = ["fiscal_year"]
    reference = { sex = "F", bmi_group = "18.5-24.9" }
    cluster = "hospital_id"
    models = ["mixed_logit", "gee_logit", "logit"]
    nagq = 1

    [analyses.volume]
    column = "volume"
    per = 50
    quartile_column = "volume_quartile"
    spline_knots = 4
    reference_volume = "median"

    [analyses.weighting]
    exposure = "cancer_center"
    methods = ["iptw", "overlap"]

    [analyses.competing_risks]
    outcome = "los_to_home"
    event_column = "los_to_home_event"

    [analyses.profiling]
    outcome = "death_30d"
    limits = [0.95, 0.998]

    [analyses.trends]
    by = "fiscal_year"
    proportions = ["death_30d", "in_hospital_death"]
    continuous = ["postop_los"]

Errors name the field and what is allowed; :meth:`AnalysesSpec.from_table` collects every
problem of a table at once into one :class:`~hospstudy.errors.StudyFileError`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hospstudy.errors import InputError, StudyFileError
from hospstudy.settings import format_errors

MODEL_NAMES = ("mixed_logit", "gee_logit", "logit")
ADJUSTMENTS = ("alone", "mutual")
WEIGHTING_METHODS = ("iptw", "overlap")
CR_MODELS = ("cause_specific", "fine_gray")
GEE_CORR = ("exchangeable", "independence")


class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


def _unique(values: tuple, field: str) -> tuple:
    seen = set()
    dup = [v for v in values if v in seen or seen.add(v)]
    if dup:
        raise ValueError(f"{field} lists {sorted(set(map(str, dup)))} more than once; name each once")
    return values


class VolumeSpec(_Settings):
    """Hospital volume as an exposure: linear per ``per`` cases, quartiles, restricted cubic spline."""

    column: str = Field("volume", description="Annual hospital volume column (cases per year).")
    per: float = Field(50.0, gt=0, description="Linear term scale: the OR is per this many cases.")
    linear_exposure: str = Field("volume_per50", description="Exposure name of the linear term in `exposures`.")
    quartiles: bool = True
    quartile_column: str | None = Field(
        "volume_quartile", description="Column with quartiles 1-4; computed from `column` (patient-level) when null."
    )
    quartile_reference: int = Field(1, ge=1, le=4)
    spline: bool = True
    spline_knots: int = Field(4, ge=3, le=5, description="Harrell's knot placement, 3 to 5 knots.")
    year_column: str = Field(
        "fiscal_year", description="Year of the volume: the spline curve spans the 1st-99th percentile of hospital-years."
    )
    reference_volume: float | Literal["median"] = Field(
        "median", description="Volume at which the spline OR is 1: a number of cases or 'median'."
    )
    model: Literal["mixed_logit", "gee_logit", "logit"] = Field(
        "mixed_logit", description="Model for the quartile and spline analyses."
    )
    outcomes: tuple[str, ...] | None = Field(None, description="Binary outcomes to analyse; all binary outcomes when null.")

    @field_validator("reference_volume")
    @classmethod
    def _positive(cls, v):
        if not isinstance(v, str) and v <= 0:
            raise ValueError(f"must be a positive number of cases or 'median', got {v}")
        return v


class WeightingSpec(_Settings):
    """Propensity-score weighting of a binary exposure, with balance and E-values."""

    exposure: str = "cancer_center"
    methods: tuple[Literal["iptw", "overlap"], ...] = ("iptw", "overlap")
    stabilized: bool = True
    trim: float | None = Field(None, gt=0, lt=0.5, description="Drop patients with PS outside [trim, 1-trim].")
    outcomes: tuple[str, ...] | None = None
    evalues: bool = True

    @field_validator("methods")
    @classmethod
    def _methods(cls, v):
        if not v:
            raise ValueError(f"must name at least one of {list(WEIGHTING_METHODS)}")
        return _unique(v, "methods")


class CompetingRisksSpec(_Settings):
    """Time to an event of interest with one or more competing events (LOS until discharge
    home, with in-hospital death and discharge elsewhere competing)."""

    outcome: str = Field("los_to_home", description="Time column (days).")
    event_column: str = Field("los_to_home_event", description="0 censored, `event` = event of interest, each of `competing` a competing event.")
    event: int = 1
    competing: tuple[int, ...] = Field((2,), description="Codes of the competing events (one code or a list).")
    state_labels: dict[int, str] = Field(default_factory=dict, description="Names of the event codes in the report, e.g. {1 = \"discharge home\"}.")
    exposures: tuple[str, ...] | None = Field(None, description="Exposures to analyse; all of `exposures` when null.")
    models: tuple[Literal["cause_specific", "fine_gray"], ...] = CR_MODELS
    horizon: float | None = Field(None, gt=0, description="Last time of the cumulative-incidence curves (days); all when null.")
    adjusted: bool = Field(True, description="Adjust the Cox models for the covariate set.")

    @field_validator("competing", mode="before")
    @classmethod
    def _one_or_more(cls, v):
        return (v,) if isinstance(v, int) and not isinstance(v, bool) else v

    @model_validator(mode="after")
    def _codes(self):
        codes = [0, self.event, *self.competing]
        if not self.competing or len(set(codes)) != len(codes):
            raise ValueError(f"event ({self.event}) and competing ({list(self.competing)}) must differ from each other and from 0 (censored)")
        extra = sorted(set(self.state_labels) - set(codes[1:]))
        if extra:
            raise ValueError(f"state_labels names codes {extra} that are neither event nor competing")
        return self

    @property
    def causes(self) -> list[int]:
        """The event of interest, then the competing events."""
        return [self.event, *self.competing]

    def state_label(self, code: int) -> str:
        default = {self.event: "event of interest"}.get(code, "competing event")
        return self.state_labels.get(code, default)


class ProfilingSpec(_Settings):
    """Risk-standardized rates per hospital and funnel-plot limits (Spiegelhalter 2005)."""

    outcome: str = "death_30d"
    limits: tuple[float, ...] = (0.95, 0.998)
    method: Literal["exact", "normal"] = Field("exact", description="Binomial exact limits or the normal approximation.")
    min_size: int = Field(10, ge=1, description="Hospitals with fewer patients are not drawn in the funnel (never fewer than 10: disclosure).")

    @field_validator("limits")
    @classmethod
    def _limits(cls, v):
        if not v:
            raise ValueError("must name at least one coverage, e.g. [0.95, 0.998]")
        bad = [x for x in v if not 0 < x < 1]
        if bad:
            raise ValueError(f"coverages must lie strictly between 0 and 1, got {bad}")
        return tuple(sorted(_unique(v, "limits")))


class TrendsSpec(_Settings):
    """Trends over an ordered grouping (fiscal year)."""

    by: str = "fiscal_year"
    proportions: tuple[str, ...] = Field((), description="Binary columns: Cochran-Armitage test.")
    continuous: tuple[str, ...] = Field((), description="Numeric columns: Jonckheere-Terpstra test.")
    counts: bool = Field(True, description="Report patients per group.")


class AnalysesSpec(_Settings):
    """The ``[analyses]`` table of a study file.

    Parameters
    ----------
    outcomes
        Outcome columns of the analytic dataset. Binary ones get logistic models; the one named
        by ``competing_risks.outcome`` gets the competing-risks analysis instead.
    exposures
        Exposure columns (``cancer_center``, ``volume_per50``, ...).
    adjustment
        ``"alone"``: each exposure with the covariates; ``"mutual"``: all exposures together.
    covariates
        Adjustment covariates (column names). Strings and booleans are categorical; numbers are
        linear unless listed in ``categorical``.
    categorical
        Numeric columns to treat as categorical (e.g. ``fiscal_year``).
    reference
        Reference level per categorical column (``{sex = "F"}``); the most frequent level when
        not given.
    cluster
        Hospital column: the random-intercept group, the GEE cluster, the robust-error cluster.
    models
        Which of ``mixed_logit`` (random intercept, conditional ORs), ``gee_logit`` (marginal)
        and ``logit`` (unclustered) to run; the first is the primary model.
    nagq
        Quadrature points of ``mixed_logit`` (1 = Laplace, up to 25).
    """

    outcomes: tuple[str, ...] = Field(..., min_length=1)
    exposures: tuple[str, ...] = Field(..., min_length=1)
    adjustment: tuple[Literal["alone", "mutual"], ...] = ADJUSTMENTS
    covariates: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    reference: dict[str, str | int | bool] = Field(default_factory=dict)
    cluster: str = "hospital_id"
    models: tuple[Literal["mixed_logit", "gee_logit", "logit"], ...] = MODEL_NAMES
    nagq: int = Field(1, ge=1, le=25)
    gee_corr: Literal["exchangeable", "independence"] = "exchangeable"
    conf_level: float = Field(0.95, gt=0.5, lt=1)
    hospital_variation: bool = Field(True, description="MOR and ICC from the primary model's random intercept.")
    volume: VolumeSpec | None = None
    weighting: WeightingSpec | None = None
    competing_risks: CompetingRisksSpec | None = None
    profiling: ProfilingSpec | None = None
    trends: TrendsSpec | None = None

    @field_validator("outcomes", "exposures", "covariates", "categorical", "models", "adjustment")
    @classmethod
    def _no_duplicates(cls, v, info):
        return _unique(v, info.field_name)

    @field_validator("models", "adjustment")
    @classmethod
    def _not_empty(cls, v, info):
        if not v:
            allowed = MODEL_NAMES if info.field_name == "models" else ADJUSTMENTS
            raise ValueError(f"must name at least one of {list(allowed)}")
        return v

    @model_validator(mode="after")
    def _consistent(self):
        problems = []
        overlap = set(self.exposures) & set(self.covariates)
        if overlap:
            problems.append(f"covariates {sorted(overlap)} are also exposures; an exposure is never its own covariate")
        if set(self.outcomes) & set(self.covariates):
            problems.append(f"covariates {sorted(set(self.outcomes) & set(self.covariates))} are outcomes")
        if self.cluster in self.covariates:
            problems.append(f"the cluster column {self.cluster!r} cannot be a covariate")
        if self.weighting is not None and self.weighting.exposure not in self.exposures:
            problems.append(f"weighting.exposure {self.weighting.exposure!r} must be one of exposures {list(self.exposures)}")
        if self.volume is not None and self.volume.linear_exposure not in self.exposures:
            problems.append(
                f"volume.linear_exposure {self.volume.linear_exposure!r} must be one of exposures {list(self.exposures)}"
            )
        if self.competing_risks is not None:
            cr = self.competing_risks
            if cr.outcome not in self.outcomes:
                problems.append(f"competing_risks.outcome {cr.outcome!r} must be one of outcomes {list(self.outcomes)}")
            for e in cr.exposures or ():
                if e not in self.exposures:
                    problems.append(f"competing_risks.exposures: {e!r} is not one of exposures {list(self.exposures)}")
        for name, sub in (("volume", self.volume), ("weighting", self.weighting)):
            for o in (getattr(sub, "outcomes", None) or ()):
                if o not in self.binary_outcomes:
                    problems.append(f"{name}.outcomes: {o!r} is not one of the binary outcomes {list(self.binary_outcomes)}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def binary_outcomes(self) -> tuple[str, ...]:
        """Outcomes analysed by logistic models (all but the competing-risks time)."""
        tte = self.competing_risks.outcome if self.competing_risks is not None else None
        return tuple(o for o in self.outcomes if o != tte)

    @property
    def primary_model(self) -> str:
        return self.models[0]

    def columns(self) -> dict[str, str]:
        """Every analytic-dataset column the analyses read, mapped to the field that names it."""
        cols: dict[str, str] = {}
        for o in self.outcomes:
            cols.setdefault(o, "outcomes")
        for e in self.exposures:
            cols.setdefault(e, "exposures")
        for c in self.covariates:
            cols.setdefault(c, "covariates")
        cols.setdefault(self.cluster, "cluster")
        if self.volume is not None:
            cols.setdefault(self.volume.column, "volume.column")
            if self.volume.quartiles and self.volume.quartile_column:
                cols.setdefault(self.volume.quartile_column, "volume.quartile_column")
            if "year_column" in self.volume.model_fields_set:  # the default may be absent: hospitals then
                cols.setdefault(self.volume.year_column, "volume.year_column")
        if self.competing_risks is not None:
            cols.setdefault(self.competing_risks.event_column, "competing_risks.event_column")
        if self.trends is not None:
            cols.setdefault(self.trends.by, "trends.by")
            for c in self.trends.proportions:
                cols.setdefault(c, "trends.proportions")
            for c in self.trends.continuous:
                cols.setdefault(c, "trends.continuous")
        if self.profiling is not None:
            cols.setdefault(self.profiling.outcome, "profiling.outcome")
        return cols

    def check_columns(self, available, source: str = "the analytic dataset") -> None:
        """Raise :class:`~hospstudy.errors.InputError` naming every column the analyses need
        that ``available`` lacks (with the field that asked for it)."""
        have = set(available)
        missing = [f"{f}: {c!r}" for c, f in self.columns().items() if c not in have]
        if missing:
            raise InputError(
                f"{source} lacks columns the analyses section of the study file names: {'; '.join(missing)}. "
                f"Available: {sorted(have)}"
            )

    @classmethod
    def from_table(cls, table: dict, where: str = "analyses") -> "AnalysesSpec":
        """Validate a parsed TOML table; every problem is reported at once as a
        :class:`~hospstudy.errors.StudyFileError` whose ``problems`` name the field path."""
        try:
            return cls.model_validate(table)
        except ValidationError as e:
            problems = format_errors(e, where, AnalysesSpec)
            raise StudyFileError(
                f"the {where!r} section of the study file has {len(problems)} problem(s):\n  " + "\n  ".join(problems), problems
            ) from None


__all__ = [
    "AnalysesSpec",
    "VolumeSpec",
    "WeightingSpec",
    "CompetingRisksSpec",
    "ProfilingSpec",
    "TrendsSpec",
    "MODEL_NAMES",
]
