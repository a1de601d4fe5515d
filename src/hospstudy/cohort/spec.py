"""The cohort stage's sections of a study file, parsed into frozen, validated settings objects.

The whole file is read above the stages (:mod:`hospstudy.study`); this module parses the
sections the cohort engine needs (see docs/study_file.md for a walk-through):

``[study]``
    name, title, description, fiscal_years (metadata the report shows).
``[codelists]``
    named code lists: an array of entries (``"C795"``, ``"C78*"``, ``"C00-C26"``, ``"@other"``),
    or a table ``{codes = [...], file = "codes.csv", list = "mi", description, source}``.
``[cohort]``
    ``index``: the index event (the first procedure of a code list within an admission; its
    date is day 0), and ``[[cohort.steps]]``: ordered, named inclusion/exclusion steps, each
    ``include = CONDITION``, ``exclude = CONDITION`` or ``first_per_patient = true``.
``[exposures.NAME]``, ``[covariates.NAME]``, ``[outcomes.NAME]``
    one column of the analytic dataset each, defined by a ``kind`` (see :data:`KINDS`).

``[analyses]`` belongs to the models (:class:`hospstudy.models.spec.AnalysesSpec`) and ``[report]``
to the report (:class:`hospstudy.report.spec.ReportSpec`); this module does not read them.

A CONDITION is one of ``{table = "diagnoses", codes = LIST, roles = [...], suspected = true}``
(suspected diagnoses, Form 1 modifier 8002, count only with ``suspected = true``),
``{table = "procedures", codes = LIST, window = [FROM, TO]}``,
``{table = "billing", codes = LIST, kind = "drug", window = [FROM, TO]}``,
``{field = NAME, ge = 18}`` (also eq, ne, lt, le, gt, in, not_in, between, is_null; a value may be
``{field = OTHER}``), ``{all = [...]}``, ``{any = [...]}``, ``{not = {...}}``.

:meth:`hospstudy.Study.load` reports every problem at once (:class:`~hospstudy.errors.StudyFileError`,
exit code 2), each naming its field path and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import Field, TypeAdapter, ValidationError, field_validator, model_validator

from hospstudy.cohort import codelists as cl
from hospstudy.data.schema import BILLING_KINDS, DIAGNOSIS_ROLES, TABLES
from hospstudy.settings import Settings, format_errors, load_section, raise_problems
from hospstudy.settings import validate_section as _validate


Scalar = Union[bool, int, float, str]


_Settings = Settings


class FieldRef(_Settings):
    """A comparison against another column: ``lt = {field = "walking_adm"}``."""

    field: str


Value = Union[FieldRef, Scalar]


class Condition(_Settings):
    """An admission-level condition (see the module docstring for the forms)."""

    table: Literal["diagnoses", "procedures", "billing"] | None = None
    codes: str | None = Field(None, description="Code list name.")
    roles: tuple[Literal[DIAGNOSIS_ROLES], ...] | None = Field(None, description="Diagnosis roles that count (default: any).")
    kind: Literal[BILLING_KINDS] | None = Field(None, description="Billing line kind (billing only).")
    window: tuple[int, int] | None = Field(None, description="Days from the index date, inclusive (procedures, billing).")
    suspected: bool | None = Field(None, description="Diagnoses only: true counts suspected diagnoses (Form 1 modifier 8002) too; "
                                   "by default they are ignored.")
    field: str | None = None
    eq: Value | None = None
    ne: Value | None = None
    lt: Value | None = None
    le: Value | None = None
    gt: Value | None = None
    ge: Value | None = None
    in_: tuple[Scalar, ...] | None = Field(None, alias="in")
    not_in: tuple[Scalar, ...] | None = None
    between: tuple[Value, Value] | None = None
    is_null: bool | None = None
    all: tuple["Condition", ...] | None = None
    any: tuple["Condition", ...] | None = None
    not_: "Condition | None" = Field(None, alias="not")

    @model_validator(mode="after")
    def _shape(self):
        forms = [k for k in ("table", "field", "all", "any", "not_") if getattr(self, k) is not None]
        if len(forms) != 1:
            raise ValueError(
                "a condition needs exactly one of 'table' (with 'codes'), 'field' (with a comparison), "
                f"'all', 'any', 'not'; got {[f.rstrip('_') for f in forms] or 'none'}"
            )
        comps = [k for k in COMPARISONS if getattr(self, k) is not None]
        if self.table is not None:
            if self.codes is None:
                raise ValueError("'table' needs 'codes' (the name of a code list)")
            if comps:
                raise ValueError(f"comparisons {comps} need 'field', not 'table'")
            if self.roles is not None and self.table != "diagnoses":
                raise ValueError("'roles' applies to table 'diagnoses' only")
            if self.kind is not None and self.table != "billing":
                raise ValueError("'kind' applies to table 'billing' only")
            if self.suspected is not None and self.table != "diagnoses":
                raise ValueError("'suspected' applies to table 'diagnoses' only")
            if self.window is not None:
                if self.table == "diagnoses":
                    raise ValueError("'window' applies to procedures and billing (diagnoses carry no date)")
                if self.window[0] > self.window[1]:
                    raise ValueError(f"window {list(self.window)}: the first day must not come after the last")
        else:
            extra = [k for k in ("codes", "roles", "kind", "window", "suspected") if getattr(self, k) is not None]
            if extra:
                raise ValueError(f"{extra} need 'table'")
        if self.field is not None and len(comps) != 1:
            raise ValueError(f"'field' needs exactly one comparison of {[c.rstrip('_') for c in COMPARISONS]}; got {comps or 'none'}")
        if self.field is None and self.table is None and comps:
            raise ValueError(f"comparisons {comps} need 'field'")
        for k in ("all", "any"):
            if getattr(self, k) is not None and len(getattr(self, k)) == 0:
                raise ValueError(f"'{k}' needs at least one condition")
        if self.between is not None:
            lo, hi = self.between
            numbers = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (lo, hi))
            if numbers and lo > hi:
                raise ValueError(f"between {[lo, hi]}: the first value must not be greater than the second (it would select nothing)")
        return self

    def walk(self):
        """This condition and every nested one."""
        yield self
        for sub in (self.all or ()) + (self.any or ()) + ((self.not_,) if self.not_ else ()):
            yield from sub.walk()

    def fields(self) -> set[str]:
        out = set()
        for c in self.walk():
            if c.field:
                out.add(c.field)
            for k in COMPARISONS:
                v = getattr(c, k)
                vals = v if isinstance(v, tuple) else (v,)
                out.update(x.field for x in vals if isinstance(x, FieldRef))
        return out

    def code_lists(self) -> set[str]:
        return {c.codes for c in self.walk() if c.codes}

    def describe(self) -> str:
        """Plain-language text for the data dictionary and methods."""
        if self.table:
            s = f"any {self.table} code in '{self.codes}'"
            if self.roles:
                s += f" with role {'/'.join(self.roles)}"
            if self.kind:
                s += f" of kind {self.kind}"
            if self.window:
                s += f" on days {self.window[0]} to {self.window[1]} from the index date"
            return s
        if self.field:
            k = next(k for k in COMPARISONS if getattr(self, k) is not None)
            v = getattr(self, k)
            show = lambda x: x.field if isinstance(x, FieldRef) else repr(x)  # noqa: E731
            if k == "is_null":
                return f"{self.field} is {'missing' if v else 'not missing'}"
            if k == "between":
                return f"{self.field} between {show(v[0])} and {show(v[1])}"
            if k in ("in_", "not_in"):
                return f"{self.field} {'in' if k == 'in_' else 'not in'} {list(v)}"
            ops = {"eq": "=", "ne": "≠", "lt": "<", "le": "≤", "gt": ">", "ge": "≥"}
            return f"{self.field} {ops[k]} {show(v)}"
        if self.all:
            return "(" + " and ".join(c.describe() for c in self.all) + ")"
        if self.any:
            return "(" + " or ".join(c.describe() for c in self.any) + ")"
        return f"not {self.not_.describe()}"


COMPARISONS = ("eq", "ne", "lt", "le", "gt", "ge", "in_", "not_in", "between", "is_null")
Condition.model_rebuild()


class StudyInfo(_Settings):
    name: str = Field(..., pattern=r"^[A-Za-z_][A-Za-z0-9_\-]*$")
    title: str = ""
    description: str = ""
    fiscal_years: tuple[int, int] | None = None
    database: str = ""
    references: tuple[str, ...] = ()


class CodeListEntry(_Settings):
    codes: tuple[str, ...] = ()
    file: str | None = None
    list: str | None = Field(None, description="Rows of `file` whose 'list' column equals this.")
    description: str = ""
    source: str = ""


class IndexSpec(_Settings):
    name: str = "index_event"
    description: str = ""
    exclusion_label: str = Field("", description="What step 1 excludes, as the flow diagram says it "
                                                 "(e.g. 'admissions without spine surgery').")
    procedures: str = Field(..., description="Code list of the index procedure.")
    date_column: str = Field("index_date", pattern=r"^[a-z_][a-z0-9_]*$")
    code_column: str = Field("index_code", pattern=r"^[a-z_][a-z0-9_]*$")


class Step(_Settings):
    name: str = Field(..., pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    description: str = ""
    exclusion_label: str = Field("", description="What the step excludes, as the flow diagram's exclusion box says it "
                                                 "(e.g. 'aged under 18'); the description negated when empty.")
    include: Condition | None = None
    exclude: Condition | None = None
    first_per_patient: bool = False

    @model_validator(mode="after")
    def _one(self):
        n = (self.include is not None) + (self.exclude is not None) + bool(self.first_per_patient)
        if n != 1:
            raise ValueError("a step needs exactly one of 'include', 'exclude' or 'first_per_patient = true'")
        return self


class CohortSpec(_Settings):
    index: IndexSpec
    steps: tuple[Step, ...] = ()


ENGINE_NAMES = ("duckdb", "spark")
_MEMORY = r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$"


class EngineSpec(_Settings):
    """The optional ``[engine]`` section: where the cohort runs. Owned by the cohort engine;
    the command line (``--engine``, ``--spark-master``, ``--spark-remote``, ``--spark-conf``)
    and the environment (``HOSPSTUDY_SPARK_MASTER``, ``SPARK_REMOTE``) override it
    (:func:`resolve_engine`). None of it changes the analytic dataset."""

    name: Literal["duckdb", "spark"] = Field("duckdb", description="duckdb (embedded, default) or spark.")
    spark_master: Optional[str] = Field(
        None, description="Spark master URL: local[N], spark://HOST:PORT, yarn, k8s://https://HOST:PORT (default local[2]).")
    spark_remote: Optional[str] = Field(None, description="Spark Connect URL sc://HOST:PORT (instead of a master).")
    spark_conf: dict[str, Union[str, int, float, bool]] = Field(
        default_factory=dict, description="Spark settings, e.g. {\"spark.executor.memory\" = \"8g\"}.")
    connect_timeout: float = Field(
        20.0, gt=0, le=600, description="Seconds to wait for a Spark master or Connect server before giving up.")
    duckdb_memory_limit: Optional[str] = Field(
        None, pattern=_MEMORY, description="DuckDB's memory_limit, e.g. '6GB' (beyond it DuckDB spills to duckdb_temp_directory).")
    duckdb_temp_directory: Optional[str] = Field(None, description="Folder DuckDB spills to (default: DuckDB's own, .tmp beside the database or in the working folder).")
    duckdb_threads: Optional[int] = Field(None, ge=1, description="DuckDB's threads (default: one per core).")

    @field_validator("spark_master")
    @classmethod
    def _master(cls, v):
        if v is not None:
            from hospstudy.cohort.spark import _MASTER

            if not _MASTER.match(v):
                raise ValueError("must be local[N], spark://HOST:PORT, yarn or k8s://https://HOST:PORT "
                                 "(Spark Connect goes in spark_remote)")
        return v

    @field_validator("spark_remote")
    @classmethod
    def _remote(cls, v):
        if v is not None and not v.startswith("sc://"):
            raise ValueError("must be a Spark Connect URL sc://HOST:PORT")
        return v

    @model_validator(mode="after")
    def _one_place(self):
        if self.spark_master and self.spark_remote:
            raise ValueError("give spark_master or spark_remote, not both")
        return self

    @property
    def where(self) -> str:
        """Where the cohort runs, for messages: 'duckdb', 'spark local[2]', 'spark sc://h:p'."""
        if self.name == "duckdb":
            return "duckdb"
        return f"spark {self.spark_remote or self.spark_master or 'local[2]'}"


def engine_settings(raw: dict | None, path=None) -> EngineSpec:
    """The validated ``[engine]`` section of a parsed study file (defaults when absent)."""
    return load_section(EngineSpec, raw, "engine", path)


def resolve_engine(spec: EngineSpec | None = None, *, engine: str | None = None, spark_master: str | None = None,
                   spark_remote: str | None = None, spark_conf: dict | None = None, environ=None) -> EngineSpec:
    """Where the cohort runs: the command line over the environment over the study file.

    ``engine``, ``spark_master``, ``spark_remote`` (and ``spark_conf``, merged over the
    file's) come from the command line or the Python call; ``HOSPSTUDY_SPARK_MASTER`` and
    ``SPARK_REMOTE`` from ``environ`` (default ``os.environ``) apply when neither is given
    there. A master or Connect URL given on the command line implies ``--engine spark``;
    the environment alone never switches the engine.

    Raises
    ------
    InputError
        ``--engine duckdb`` with Spark options, both a master and a Connect URL, or a malformed one.
    """
    import os

    from hospstudy.errors import InputError

    spec = spec or EngineSpec()
    env = os.environ if environ is None else environ
    if engine is not None and engine not in ENGINE_NAMES:
        raise InputError(f"--engine must be one of {', '.join(ENGINE_NAMES)}; got {engine!r}")
    if spark_master and spark_remote:
        raise InputError("give --spark-master or --spark-remote, not both")
    if engine == "duckdb" and (spark_master or spark_remote or spark_conf):
        raise InputError("--spark-master, --spark-remote and --spark-conf apply to --engine spark, not duckdb")
    from hospstudy.cohort.spark import _MASTER

    def check(value, source, remote):
        ok = value.startswith("sc://") if remote else bool(_MASTER.match(value))
        if not ok:
            want = "a Spark Connect URL sc://HOST:PORT" if remote else "local[N], spark://HOST:PORT, yarn or k8s://https://HOST:PORT"
            raise InputError(f"{source} {value!r}: must be {want}")

    if spark_master:
        check(spark_master, "--spark-master", False)
    if spark_remote:
        check(spark_remote, "--spark-remote", True)
    update: dict = {}
    if engine is not None:
        update["name"] = engine
    if spark_master or spark_remote:
        update.update(name="spark", spark_master=spark_master, spark_remote=spark_remote)
    elif env.get("HOSPSTUDY_SPARK_MASTER"):
        check(env["HOSPSTUDY_SPARK_MASTER"], "HOSPSTUDY_SPARK_MASTER", False)
        update.update(spark_master=env["HOSPSTUDY_SPARK_MASTER"], spark_remote=None)
    elif env.get("SPARK_REMOTE"):
        check(env["SPARK_REMOTE"], "SPARK_REMOTE", True)
        update.update(spark_remote=env["SPARK_REMOTE"], spark_master=None)
    if spark_conf:
        update["spark_conf"] = {**spec.spark_conf, **spark_conf}
    merged = {**spec.model_dump(), **update}
    try:
        return EngineSpec.model_validate(merged)
    except ValidationError as e:
        problems = format_errors(e, "engine", EngineSpec)
        raise InputError("; ".join(problems)) from None


def parse_spark_conf(items) -> dict[str, str]:
    """``--spark-conf key=value`` (repeatable) as a dict; InputError naming a malformed one."""
    from hospstudy.errors import InputError

    out: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not key.strip().startswith("spark."):
            raise InputError(f"--spark-conf {item!r}: must be key=value with a Spark setting key (spark.…)")
        out[key.strip()] = value.strip()
    return out


# ---- derivations: one column each ------------------------------------------------------------

OutType = Literal["bool", "int", "float", "string", "date"]


class _Deriv(_Settings):
    description: str = Field("", description="Definition shown in the data dictionary.")
    keep: bool = Field(True, description="false: a helper column, not written to the analytic dataset.")


class FieldDeriv(_Deriv):
    kind: Literal["field"]
    field: str
    type: OutType | None = None


class VolumeDeriv(_Deriv):
    kind: Literal["volume"]
    codes: str = Field(..., description="Admissions with any procedure of this list are counted.")


class ScaleDeriv(_Deriv):
    kind: Literal["scale"]
    of: str
    divide_by: float = Field(..., gt=0)


class QuantileDeriv(_Deriv):
    kind: Literal["quantile_group"]
    of: str
    groups: int = Field(4, ge=2, le=10)


class CutDeriv(_Deriv):
    kind: Literal["cut"]
    of: str
    breaks: tuple[float, ...] = Field(..., min_length=1)
    labels: tuple[str, ...]
    missing_label: str | None = None

    @model_validator(mode="after")
    def _labels(self):
        if list(self.breaks) != sorted(set(self.breaks)):
            raise ValueError(f"breaks {list(self.breaks)} must increase strictly")
        if len(self.labels) != len(self.breaks) + 1:
            raise ValueError(f"{len(self.breaks)} breaks make {len(self.breaks) + 1} groups; got {len(self.labels)} labels")
        return self


class BmiDeriv(_Deriv):
    kind: Literal["bmi"]
    min_height_cm: float = 100.0
    max_height_cm: float = 230.0
    min_weight_kg: float = 20.0
    max_weight_kg: float = 250.0


class AdlDeriv(_Deriv):
    kind: Literal["adl"]
    field: Literal["adl_adm", "adl_dis"]
    measure: str = Field(..., description="'barthel' (5 x sum of items) or an item name such as 'walking'.")

    @field_validator("measure")
    @classmethod
    def _measure(cls, v):
        from hospstudy.data.schema import ADL_ITEMS

        if v != "barthel" and v not in ADL_ITEMS:
            raise ValueError(f"unknown measure {v!r}; allowed: barthel, {', '.join(ADL_ITEMS)}")
        return v


class FlagDeriv(_Deriv):
    kind: Literal["flag"]
    when: Condition
    among: Condition | None = Field(None, description="Missing (null) for rows outside this condition.")


class Case(_Settings):
    value: Scalar
    when: Condition


class CaseDeriv(_Deriv):
    kind: Literal["case"]
    cases: tuple[Case, ...] = Field(..., min_length=1)
    default: Scalar | None = None
    among: Condition | None = None

    @model_validator(mode="after")
    def _types(self):
        kinds = {type(c.value) for c in self.cases} | ({type(self.default)} if self.default is not None else set())
        if len(kinds - {int, float}) > 1 or (kinds & {str, bool} and kinds & {int, float}):
            raise ValueError(f"all case values and the default must share one type; got {sorted(k.__name__ for k in kinds)}")
        return self


class Component(_Settings):
    codes: str
    weight: float = 1.0
    group: str | None = Field(None, description="Components sharing a group count once, with the largest weight present.")


class ScoreDeriv(_Deriv):
    kind: Literal["score"]
    table: Literal["diagnoses"] = "diagnoses"
    roles: tuple[Literal[DIAGNOSIS_ROLES], ...] | None = None
    components: tuple[Component, ...] = Field(..., min_length=1)


class DaysDeriv(_Deriv):
    kind: Literal["days_between"]
    start: str
    end: str


Derivation = Annotated[
    Union[FieldDeriv, VolumeDeriv, ScaleDeriv, QuantileDeriv, CutDeriv, BmiDeriv, AdlDeriv, FlagDeriv, CaseDeriv, ScoreDeriv, DaysDeriv],
    Field(discriminator="kind"),
]
KINDS = ("field", "volume", "scale", "quantile_group", "cut", "bmi", "adl", "flag", "case", "score", "days_between")
_DERIV = TypeAdapter(Derivation)
SECTIONS = ("exposures", "covariates", "outcomes")
#: The study-file sections this stage reads (hospstudy.study composes them with the other stages').
SECTION_KEYS = ("study", "codelists", "cohort", *SECTIONS)

ADMISSION_FIELDS = tuple(c.name for c in TABLES["admissions"])
#: Database fields holding numbers: a comparison with them takes a number, not a quoted string.
NUMERIC_FIELDS = frozenset(
    [c.name for t in ("admissions", "facilities") for c in TABLES[t]
     if str(c.type).startswith(("int", "float", "double")) and not c.name.endswith("_id")] + ["fiscal_year"]
)
FACILITY_FIELDS = ("cancer_center", "beds", "teaching", "region", "facility_record")


def derivation_refs(d) -> set[str]:
    """Columns a derivation reads."""
    if isinstance(d, FieldDeriv):
        return {d.field}
    if isinstance(d, (ScaleDeriv, QuantileDeriv, CutDeriv)):
        return {d.of}
    if isinstance(d, DaysDeriv):
        return {d.start, d.end}
    if isinstance(d, FlagDeriv):
        return d.when.fields() | (d.among.fields() if d.among else set())
    if isinstance(d, CaseDeriv):
        out = set().union(*(c.when.fields() for c in d.cases))
        return out | (d.among.fields() if d.among else set())
    return set()


def derivation_lists(d) -> set[str]:
    """Code lists a derivation uses."""
    if isinstance(d, VolumeDeriv):
        return {d.codes}
    if isinstance(d, ScoreDeriv):
        return {c.codes for c in d.components}
    if isinstance(d, FlagDeriv):
        return d.when.code_lists() | (d.among.code_lists() if d.among else set())
    if isinstance(d, CaseDeriv):
        return set().union(*(c.when.code_lists() for c in d.cases)) | (d.among.code_lists() if d.among else set())
    return set()


class CohortDefinition:
    """The cohort stage's part of a study file, validated: what the engine needs to build the
    analytic dataset. The whole study file (this plus ``[analyses]``, ``[report]``, …) is read by
    :class:`hospstudy.study.Study`, which is a CohortDefinition with the other stages' settings.

    Attributes
    ----------
    path, info (:class:`StudyInfo`), codelists (name -> tuple of :class:`~hospstudy.cohort.codelists.Pattern`),
    codelist_meta (name -> :class:`CodeListEntry`), cohort (:class:`CohortSpec`),
    derivations (section -> {column: settings}, in file order), raw (the parsed TOML).

    Examples
    --------
    >>> from hospstudy import Study
    >>> study = Study.load("studies/spinal_metastasis.toml")      # doctest: +SKIP
    >>> result = study.build_cohort("data/demo")                  # doctest: +SKIP
    >>> result.analytic.shape, result.attrition[["name", "patients"]]  # doctest: +SKIP
    """

    def __init__(self, path, raw, info, codelists, codelist_meta, cohort, derivations):
        self.path = path
        self.raw = raw
        self.info = info
        self.codelists = codelists
        self.codelist_meta = codelist_meta
        self.cohort = cohort
        self.derivations = derivations

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def columns(self) -> dict[str, Any]:
        """Every derived column in evaluation order (exposures, covariates, outcomes)."""
        out: dict[str, Any] = {}
        for sec in SECTIONS:
            out.update(self.derivations[sec])
        return out

    def section_of(self, column: str) -> str | None:
        for sec in SECTIONS:
            if column in self.derivations[sec]:
                return sec
        return None

    @property
    def key_columns(self) -> tuple[str, ...]:
        return ("patient_id", "admission_id", "hospital_id", "fiscal_year", self.cohort.index.date_column)

    @property
    def output_columns(self) -> list[str]:
        return list(self.key_columns) + [c for c, d in self.columns.items() if d.keep and c not in self.key_columns]

    @classmethod
    def from_dict(cls, raw: dict, path: Path | None = None) -> "CohortDefinition":
        """Validate the cohort sections of an already parsed study file (``path`` locates
        code-list files); every problem at once in one StudyFileError. Other sections are not
        read here."""
        problems: list[str] = []
        parsed = cls.parse(raw, path, problems)
        raise_problems(problems, path)
        return cls(path, raw, *parsed[:-1])

    @staticmethod
    def parse(raw: dict, path: Path | None, problems: list[str]):
        """The cohort sections of a parsed study file, each problem appended to ``problems``:
        ``(info, codelists, codelist_meta, cohort, derivations, analytic_columns)``, where
        ``analytic_columns`` are the columns the analytic dataset will hold (for the other
        stages' cross-checks). Meaningful only when no problem was added."""
        base = path.parent if path is not None else Path.cwd()
        info = _validate(StudyInfo, raw.get("study"), "study", problems, required=True)

        # code lists
        raw_lists: dict[str, list] = {}
        meta: dict[str, CodeListEntry] = {}
        lists_tbl = raw.get("codelists", {})
        if not isinstance(lists_tbl, dict):
            problems.append("codelists: must be a table of named code lists")
            lists_tbl = {}
        for name, val in lists_tbl.items():
            where = f"codelists.{name}"
            if not cl.valid_name(name):
                problems.append(f"{where}: a code list name is letters, digits and '_' (not starting with a digit)")
            if isinstance(val, list):
                val = {"codes": val}
            entry = _validate(CodeListEntry, val, where, problems)
            if entry is None:
                continue
            entries = list(entry.codes)
            if entry.file:
                fp = (base / entry.file)
                try:
                    rows = _read_list_file(fp, entry.list)
                    entries.extend(rows)
                except (OSError, ValueError) as e:
                    problems.append(f"{where}.file: {e}")
            elif entry.list:
                problems.append(f"{where}.list: 'list' selects rows of 'file'; give 'file' too")
            if not entries and not entry.file:
                problems.append(f"{where}: empty code list; give 'codes' or 'file'")
            raw_lists[name] = entries
            meta[name] = entry
        lists, list_problems = cl.resolve(raw_lists)
        problems.extend(f"codelists.{w}: {m}" for w, m in list_problems)
        known_lists = sorted(raw_lists)

        def check_list(name, where):
            if name not in raw_lists:
                problems.append(f"{where}: unknown code list '{name}'; known: {', '.join(known_lists) or '(none)'}")

        # cohort
        index, steps, cohort = _validate_cohort(raw.get("cohort"), problems)
        index_fields: set[str] = {"fiscal_year"}
        if index is not None:
            check_list(index.procedures, "cohort.index.procedures")
            index_fields |= {index.date_column, index.code_column}
        else:
            index_fields |= {"index_date", "index_code"}
        base_fields = set(ADMISSION_FIELDS) | set(FACILITY_FIELDS) | index_fields
        names = [s.name for s in steps if s is not None]
        for i, s in enumerate(steps):
            if s is None:
                continue
            w = f"cohort.steps[{i}]"
            if names.count(s.name) > 1:
                problems.append(f"{w}.name: step name '{s.name}' is used more than once")
            cond, key = (s.include, "include") if s.include is not None else (s.exclude, "exclude")
            if cond is not None:
                _check_condition(cond, f"{w}.{key}", raw_lists, known_lists, base_fields, problems)

        # derivations
        derivations: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
        defined: list[str] = []
        for sec in SECTIONS:
            tbl = raw.get(sec, {})
            if not isinstance(tbl, dict):
                problems.append(f"{sec}: must be a table of named columns ([{sec}.NAME] with a 'kind')")
                continue
            for col, val in tbl.items():
                where = f"{sec}.{col}"
                if not cl.valid_name(col):
                    problems.append(f"{where}: a column name is letters, digits and '_'")
                if col in defined:
                    problems.append(f"{where}: column '{col}' is defined twice")
                if index is not None and col in (index.date_column, "patient_id", "admission_id", "hospital_id", "fiscal_year"):
                    problems.append(f"{where}: '{col}' is a key column of every analytic dataset; choose another name")
                d = _validate_derivation(val, where, problems)
                if d is None:
                    defined.append(col)
                    continue
                visible = base_fields | set(defined)
                for ref in sorted(derivation_refs(d)):
                    if ref not in visible:
                        problems.append(
                            f"{where}: unknown column '{ref}'; a column may use database fields "
                            f"({', '.join(sorted(base_fields))}) or columns defined before it ({', '.join(defined) or 'none'})"
                        )
                    elif ref in derivations_all(derivations) and isinstance(derivations_all(derivations)[ref], QuantileDeriv):
                        problems.append(f"{where}: '{ref}' is a quantile group (computed after the query); other columns cannot use it")
                for lst in sorted(derivation_lists(d)):
                    check_list(lst, where + ".codes")
                for cond_where, cond in _conditions_of(d):
                    _check_condition(cond, f"{where}.{cond_where}", raw_lists, known_lists, base_fields | set(defined), problems, refs=False)
                derivations[sec][col] = d
                defined.append(col)

        have = set(defined) | {"patient_id", "admission_id", "hospital_id", "fiscal_year"}
        if index is not None:
            have.add(index.date_column)
        kept = {c for s in SECTIONS for c, d in derivations[s].items() if not d.keep}
        analytic_columns = [c for c in defined if c not in kept]
        return info, lists, meta, cohort, derivations, (have - kept, analytic_columns)

    def build_cohort(self, data_dir, engine: str | None = None, spark=None, spark_master: str | None = None,
                     validate: bool = True, progress=None, spark_remote: str | None = None,
                     spark_conf: dict | None = None, settings: "EngineSpec | None" = None):
        """Run the cohort on a database; returns a :class:`~hospstudy.cohort.engine.CohortResult`.
        Where it runs: ``settings`` if given, else the study's ``[engine]`` section (``engine``
        attribute, when the study file was read by :class:`hospstudy.study.Study`) overridden by
        the environment and the arguments (:func:`resolve_engine`)."""
        from hospstudy.cohort.engine import build_cohort

        return build_cohort(self, data_dir, engine=engine, spark=spark, spark_master=spark_master,
                            validate=validate, progress=progress, spark_remote=spark_remote,
                            spark_conf=spark_conf, settings=settings)

    def source_codes(self, column: str) -> str:
        """Code lists (with their entries) behind a column, for the data dictionary."""
        d = self.columns.get(column)
        names = sorted(derivation_lists(d)) if d is not None else []
        return "; ".join(f"{n}: {' '.join(str(p) for p in self.codelists[n])}" for n in names)


def derivations_all(derivations):
    out = {}
    for s in SECTIONS:
        out.update(derivations[s])
    return out


def _conditions_of(d):
    if isinstance(d, FlagDeriv):
        yield "when", d.when
        if d.among:
            yield "among", d.among
    elif isinstance(d, CaseDeriv):
        for i, c in enumerate(d.cases):
            yield f"cases[{i}].when", c.when
        if d.among:
            yield "among", d.among


def _check_condition(cond, where, raw_lists, known_lists, fields, problems, refs=True):
    """Unknown code lists and fields, each with its own path."""

    def rec(c, w):
        if c.codes is not None and c.codes not in raw_lists:
            problems.append(f"{w}.codes: unknown code list '{c.codes}'; known: {', '.join(known_lists) or '(none)'}")
        if refs and c.field is not None and c.field not in fields:
            problems.append(f"{w}.field: unknown field '{c.field}'; allowed: {', '.join(sorted(fields))}")
        if c.field in NUMERIC_FIELDS:
            for k in COMPARISONS:
                v = getattr(c, k)
                for x in (v if isinstance(v, tuple) else (v,)):
                    if isinstance(x, str):
                        problems.append(f"{w}.{k.rstrip('_')}: '{c.field}' is a number; write {x!r} without quotes")
                        break
        for k in ("all", "any"):
            for i, sub in enumerate(getattr(c, k) or ()):
                rec(sub, f"{w}.{k}[{i}]")
        if c.not_ is not None:
            rec(c.not_, f"{w}.not")

    rec(cond, where)


def _validate_cohort(value, problems):
    """Index and each step validated on their own, so one bad step hides no other problem."""
    if value is None:
        problems.append("cohort: missing section [cohort] (needs [cohort.index] and [[cohort.steps]])")
        return None, [], None
    if not isinstance(value, dict):
        problems.append("cohort: must be a table")
        return None, [], None
    for k in value:
        if k not in ("index", "steps"):
            problems.append(f"cohort.{k}: unknown key; allowed keys here: index, steps")
    index = None
    if "index" not in value:
        problems.append("cohort.index: required key missing ([cohort.index] with 'procedures')")
    else:
        index = _validate(IndexSpec, value["index"], "cohort.index", problems)
    steps_raw = value.get("steps", [])
    if not isinstance(steps_raw, list):
        problems.append("cohort.steps: must be an array of tables ([[cohort.steps]])")
        steps_raw = []
    steps = [_validate(Step, st, f"cohort.steps[{i}]", problems) for i, st in enumerate(steps_raw)]
    cohort = None
    if index is not None and all(st is not None for st in steps):
        cohort = CohortSpec(index=index, steps=tuple(steps))
    return index, steps, cohort


def _read_list_file(path: Path, list_name: str | None) -> list[str]:
    if list_name is None:
        return cl.read_file(path)
    import csv

    if path.suffix.lower() != ".csv":
        raise ValueError(f"{path}: 'list' selects rows of a CSV file with columns list, code")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        try:
            if not reader.fieldnames or not {"list", "code"} <= set(reader.fieldnames):
                raise ValueError(f"{path}: needs a header with columns 'list' and 'code'")
            rows = [r["code"] for r in reader if r["list"] == list_name and (r["code"] or "").strip()]
        except csv.Error as e:
            raise ValueError(f"{path}: a row after line {reader.line_num} is not readable CSV ({e})") from None
    if not rows:
        raise ValueError(f"{path}: no rows with list = '{list_name}'")
    return rows


def _validate_derivation(value, where, problems):
    if not isinstance(value, dict):
        problems.append(f"{where}: must be a table with a 'kind' (one of {', '.join(KINDS)})")
        return None
    kind = value.get("kind")
    if kind is None:
        problems.append(f"{where}.kind: missing; allowed: {', '.join(KINDS)}")
        return None
    if kind not in KINDS:
        problems.append(f"{where}.kind: unknown kind {kind!r}; allowed: {', '.join(KINDS)}")
        return None
    try:
        return _DERIV.validate_python(value)
    except ValidationError as e:
        model = {m.model_fields["kind"].annotation.__args__[0]: m for m in Derivation.__origin__.__args__}[kind]
        problems.extend(format_errors(e, where, model, strip_tag=kind))
        return None
