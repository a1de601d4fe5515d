"""The study file's text and settings objects, below every stage: the one reader of a study
file (:func:`read_study_file`), the base class every stage's settings share, and the one way their
validation problems are worded (``section.key: what is wrong``). Which stage reads which section
is decided above the stages, in :mod:`hospstudy.study`."""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from hospstudy.errors import StudyFileError


def read_study_file(path) -> dict:
    """The parsed TOML of a study file (the one reader: a missing file, invalid TOML or
    non-UTF-8 text is a StudyFileError naming the file, exit 2)."""
    path = Path(path)
    if path.is_dir():
        raise StudyFileError(f"{path}: is a folder, not a study file", [f"{path}: is a folder"])
    if not path.is_file():
        raise StudyFileError(f"{path}: no such study file", [f"{path}: no such study file"])
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise StudyFileError(f"{path}: not valid TOML: {e}", [f"toml: {e}"]) from None
    except UnicodeDecodeError as e:
        raise StudyFileError(f"{path}: not UTF-8 text ({e})", [f"file: not UTF-8 ({e})"]) from None
    except OSError as e:
        raise StudyFileError(f"{path}: cannot read the study file ({e.strerror or e})", [f"file: {e}"]) from None
    except RecursionError:
        raise StudyFileError(f"{path}: nested deeper than Python's TOML reader can follow",
                             [f"toml: nested deeper than {MAX_DEPTH} levels"]) from None
    if _depth(doc) > MAX_DEPTH:
        raise StudyFileError(f"{path}: tables or arrays nested deeper than {MAX_DEPTH} levels",
                             [f"toml: nested deeper than {MAX_DEPTH} levels"])
    return doc


#: Deepest nesting of tables and arrays a study file may have (the deepest real condition,
#: all/any/not inside each other, needs a few dozen).
MAX_DEPTH = 100


def _depth(obj) -> int:
    """How deeply tables and arrays nest in a parsed TOML document (without recursion)."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        o, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > MAX_DEPTH:
            return deepest
        children = o.values() if isinstance(o, dict) else o if isinstance(o, list) else ()
        stack.extend((c, d + 1) for c in children if isinstance(c, (dict, list)))
    return deepest


class Settings(BaseModel):
    """Frozen, no unknown keys; TOML keys may use the field's alias."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def validate_section(model, value, where: str, problems: list[str], required: bool = False):
    """``value`` validated as ``model``; each problem appended to ``problems`` as one line naming
    its field path (``where.key``); None when it does not validate. A missing value is the
    model's defaults, or a problem when ``required``."""
    if value is None:
        value = {}
        if required:
            problems.append(f"{where}: missing section [{where}]")
            return None
    if not isinstance(value, dict):
        problems.append(f"{where}: must be a table")
        return None
    try:
        return model.model_validate(value)
    except ValidationError as e:
        problems.extend(format_errors(e, where, model))
        return None


def format_errors(e: ValidationError, where: str, model, strip_tag: str | None = None) -> list[str]:
    """One line per pydantic error, ``where.path: message``, with the allowed keys of an unknown one."""
    out = []
    for err in e.errors():
        loc = list(err["loc"])
        if strip_tag is not None and loc and loc[0] == strip_tag:
            loc = loc[1:]
        loc = [p for p in loc if not (isinstance(p, str) and p.startswith(("function-", "tagged-union")))]
        # pydantic adds the member type of a union to the path (`eq.int`); drop it
        loc = [p for p in loc if p not in ("bool", "int", "float", "str", "FieldRef", "Condition")]
        path = where
        for p in loc:
            path += f"[{p}]" if isinstance(p, int) else f".{p}"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            parent = _model_at(model, loc[:-1])
            allowed = sorted((f.alias or n) for n, f in parent.model_fields.items()) if parent else []
            msg = f"unknown key; allowed keys here: {', '.join(allowed)}"
        elif err["type"] == "missing":
            msg = "required key missing"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        line = f"{path}: {msg}"
        if line not in out:
            out.append(line)
    return out


def _model_at(model, loc):
    import typing

    for part in loc:
        if isinstance(part, int):
            continue
        fields = {(f.alias or n): f for n, f in model.model_fields.items()}
        f = fields.get(part)
        if f is None:
            return None
        stack = [f.annotation]
        found = None
        while stack:
            a = stack.pop()
            if isinstance(a, type) and issubclass(a, BaseModel):
                found = a
                break
            stack.extend(typing.get_args(a))
        if found is None:
            return None
        model = found
    return model


def raise_problems(problems: list[str], path=None) -> None:
    """Raise one StudyFileError listing every problem (naming the file), if there is any."""
    if problems:
        where = str(path) if path is not None else "study file"
        raise StudyFileError(f"{where}: {len(problems)} problem(s):\n  " + "\n  ".join(problems), problems)


def load_section(model, raw: dict | None, name: str, path=None):
    """The validated section ``name`` of a parsed study file (the model's defaults when it is
    absent); a StudyFileError naming every problem otherwise."""
    problems: list[str] = []
    spec = validate_section(model, (raw or {}).get(name), name, problems)
    raise_problems(problems, path)
    return spec
