"""The import report: every raw line counted once, as imported or under a named reason.

``DB/import_report.json`` for machines and ``DB/import_report.md`` for people. A reason is
*skipped* (not data the model holds: a header, a ward-level form, a payload no column takes;
exit 0) or *rejected* (data that could not be imported: exit 1, each with file and line examples).
"""

from __future__ import annotations

import json
from pathlib import Path

from hospstudy.data.dpc import layouts as L

MAX_EXAMPLES = 5

REASONS: dict[str, tuple[str, str]] = {  # reason -> (severity, what it means)
    "blank_line": ("skipped", "an empty line"),
    "header_line": ("skipped", "a header line (its first field is not a 9-digit facility code)"),
    "ward_level_form": ("skipped", "a ward-level Form 1 (統括診療情報番号 not 0): not a stay; the whole-stay form (0) is"),
    "payload_not_used": ("skipped", "a Form 1 payload code no column of the data model takes (listed below by code)"),
    "unknown_payload_code": ("skipped", "a Form 1 payload code not in the layouts of hospstudy (listed below): check for a newer manual"),
    "outside_fiscal_years": ("skipped", "a stay admitted outside --fiscal-years"),
    "ef_act_line": ("skipped", "an EF act row (行為明細番号 000); its items (001, 002, ...) are the billing lines"),
    "stay_not_discharged": ("skipped", "a stay not yet discharged (退院先 b): no discharge date, not an admission yet"),
    "other_dpc_file": ("skipped", "a line of another DPC file (outpatient EF, D, H, ...)"),
    "not_a_dpc_file": ("skipped", "a line of a file that is neither Form 1 nor EF"),
    "short_line": ("rejected", "fewer tab-separated fields than the layout has"),
    "long_line": ("rejected", "more tab-separated fields than the layout has"),
    "bad_code": ("rejected", "a code that breaks its rule (facility code not 9 digits, sex, ICD-10, K-code, ADL, JCS, ...)"),
    "bad_date": ("rejected", "a date that is not a calendar date (yyyymmdd), or out of order"),
    "bad_number": ("rejected", "a number that does not parse (EF 使用量)"),
    "unknown_facility": ("rejected", "a facility code with no row for the stay's fiscal year in FACILITIES.csv"),
    "no_form1_stay": ("rejected", "an EF line for a stay with no Form 1 whole-stay form"),
    "incomplete_stay": ("rejected", "a line of a stay whose A000010, A000020 or A000030 is missing or invalid"),
    "stay_not_imported": ("rejected", "an EF line of a stay whose Form 1 was rejected"),
    "duplicate_item": ("rejected", "a second line for a single-valued payload (or the same 連番) of a stay"),
    "date_outside_stay": ("rejected", "a surgery or service date outside the stay (admission to discharge)"),
    "unrecognised_file": ("rejected", "a line of a file named like Form 1/EF whose content is neither"),
}
SKIPPED = {r for r, (sev, _) in REASONS.items() if sev == "skipped"}


def render_md(rep: dict) -> str:
    """The readable report."""
    t = rep["lines"]
    out = ["# Import report (hospstudy import-dpc)", ""]
    out.append(f"Raw input: `{rep['raw']}`; facilities: `{rep['facilities_file']}`; "
               f"hospstudy {rep['hospstudy_version']}; exit code {rep['exit_code']}.")
    out.append("")
    out.append(f"**{t['total']:,} raw lines: {t['imported']:,} imported, {t['skipped']:,} skipped, "
               f"{t['rejected']:,} rejected.** Every line is counted once, under exactly one heading below.")
    out += ["", "## Tables written", "", "| table | rows |", "|---|---:|"]
    out += [f"| {k} | {v:,} |" for k, v in rep["tables"].items()]
    out += ["", "## Files", "", "| file | kind | encoding | header | line ends | layout | fiscal years | lines | imported | skipped | rejected |",
            "|---|---|---|---|---|---|---|---:|---:|---:|---:|"]
    for f in rep["files"]:
        out.append(f"| `{f['file']}` | {f['label']} | {f['encoding']} | {'yes' if f['header'] else 'no'} | {f['line_end']} | "
                   f"{f['layout'] or '-'} | {', '.join(map(str, f['fiscal_years'])) or '-'} | {f['lines']:,} | "
                   f"{f['imported']:,} | {f['skipped']:,} | {f['rejected']:,} |")
    notes = [(f['file'], n) for f in rep["files"] for n in f["notes"]]
    if notes:
        out += [""] + [f"- `{fn}`: {n}" for fn, n in notes]
    out += ["", "## Lines not imported, by reason", ""]
    if not rep["reasons"]:
        out.append("None: every line was imported.")
    for r in rep["reasons"]:
        out.append(f"### `{r['reason']}` ({r['severity']}, {r['kind']}): {r['count']:,} line(s)")
        out.append("")
        out.append(REASONS.get(r["reason"], ("", ""))[1] + ".")
        if r["examples"]:
            out.append("")
            for e in r["examples"]:
                out.append(f"- `{e['file']}` line {e['line']}" + (f": {e['detail']}" if e.get("detail") else ""))
        out.append("")
    s = rep["stays"]
    out += ["## Stays", "",
            f"- Form 1 whole-stay forms: {s['form1_stays']:,}; imported as admissions: {s['admissions']:,}.",
            f"- Admissions with Form 1 but no imported EF line: {s['form1_without_ef']['count']:,}"
            + (f" (e.g. {', '.join('`' + x + '`' for x in s['form1_without_ef']['examples'])})" if s['form1_without_ef']['examples'] else "") + ".",
            f"- Stays with EF lines but no Form 1: {s['ef_without_form1']['count']:,}"
            + (f" (e.g. {', '.join('`' + x + '`' for x in s['ef_without_form1']['examples'])})" if s['ef_without_form1']['examples'] else "") + ".",
            f"- Procedures recorded only in EF (解釈番号 under データ区分 50) and added: {s['ef_only_procedures']:,}.", ""]
    pc = rep["payload_codes"]
    out += ["## Payload codes", "", "Seen and not used (no column of the data model takes them):", ""]
    out += [f"- {c}: {n:,} line(s)" for c, n in pc["not_used"].items()] or ["- none"]
    out += ["", "Unknown (not in hospstudy's layouts; a newer manual?):", ""]
    out += [f"- {c}: {n:,} line(s)" for c, n in pc["unknown"].items()] or ["- none"]
    if rep["unknown_codes"]:
        out += ["", "## Unknown codes", ""]
        out += [f"- {u['what']} `{u['code']}`: {u['count']:,} line(s) ({u['treated_as']})" for u in rep["unknown_codes"]]
    if rep["code_normalisation"]:
        out += ["", "## Procedure codes normalised to the data model's pattern", "", "| as written | imported as | source | count |", "|---|---|---|---:|"]
        out += [f"| `{x['raw']}` | `{x['code']}` | {x['source']} | {x['count']:,} |" for x in rep["code_normalisation"]]
    out += ["", "## Layouts, assumptions and choices", ""]
    out += [f"- {n}" for n in rep["notes"]]
    if rep.get("ef_passes", 1) > 1:
        out.append(f"- EF read in {rep['ef_passes']} passes, each over the stays of one range of patients (the stays' arrays "
                   "would have taken more than half of the memory limit); each line counted by its patient's pass only; "
                   f"the first pass read only the keys of {rep.get('ef_blocks_keys_only', 0):,} block(s) of EF lines "
                   f"holding none of its patients, the passes after it passed over {rep.get('ef_blocks_skipped', 0):,} "
                   "block(s) holding none of theirs")
    out.append("")
    return "\n".join(out)


def write(rep: dict, out_dir: Path) -> None:
    (out_dir / "import_report.json").write_text(json.dumps(rep, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    (out_dir / "import_report.md").write_text(render_md(rep), encoding="utf-8")


def profile_notes(years: set[int]) -> list[str]:
    out = []
    for p in L.PROFILES:
        ys = sorted(y for y in years if p.fiscal_years[0] <= y <= p.fiscal_years[1])
        if ys:
            out.append(f"FY{ys[0]}-{ys[-1]}: Form 1 {p.form1}, EF {p.ef}; source: {p.source}" + (f". {p.note}" if p.note else ""))
    return out
