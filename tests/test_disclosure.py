"""Small-cell suppression and the output checker (hospstudy.privacy)."""

import itertools
import json

import numpy as np
import pandas as pd
import pytest

from hospstudy.privacy import (
    check_disclosure,
    fmt_count,
    is_count_name,
    sanitize_json,
    suppress_chain,
    suppress_table,
)


def _recoverable(counts, mask, margins=(True, True)):
    """Cells an attacker can compute exactly from published cells and totals: a line with
    exactly one hidden cell gives it away; iterate (a recovered cell may free another)."""
    a = np.atleast_2d(np.asarray(counts))
    known = ~np.atleast_2d(mask)
    r, c = a.shape
    lines = []
    if margins[0]:
        lines += [[(i, j) for j in range(c)] for i in range(r)]
    if margins[1]:
        lines += [[(i, j) for i in range(r)] for j in range(c)]
    changed = True
    while changed:
        changed = False
        for line in lines:
            unknown = [ij for ij in line if not known[ij]]
            if len(unknown) == 1:
                known[unknown[0]] = True
                changed = True
    return known & np.atleast_2d(mask)


def test_primary_and_secondary_suppression_two_by_two():
    counts = [[120, 4], [80, 30]]
    mask = suppress_table(counts)
    assert mask[0, 1]  # the small cell
    assert mask.sum() == 4  # 2x2 with one small cell: all four must go
    assert not _recoverable(counts, mask).any()


def test_row_only_margins_pick_smallest_complement():
    counts = [[3, 50, 12, 200]]
    mask = suppress_table(counts, margins=(True, False))
    assert mask.tolist() == [[True, False, True, False]]  # 3 and its smallest partner 12


def test_suppressed_group_is_not_itself_small():
    # two small cells in one row sum to 5: a third cell has to join them
    counts = [[2, 3, 40, 400]]
    mask = suppress_table(counts, margins=(True, False))
    assert mask[0].sum() == 3 and mask[0, 2]


def test_zeros_are_published():
    mask = suppress_table([[0, 100], [0, 50]])
    assert not mask.any()


@pytest.mark.parametrize("seed", range(25))
def test_random_tables_leave_nothing_recoverable(seed):
    rng = np.random.default_rng(seed)
    r, c = rng.integers(2, 6, size=2)
    counts = rng.choice([0, 1, 3, 7, 12, 40, 300], size=(r, c), p=[0.1, 0.1, 0.1, 0.1, 0.2, 0.2, 0.2])
    mask = suppress_table(counts)
    small = (counts > 0) & (counts < 10)
    assert mask[small].all()
    assert not _recoverable(counts, mask).any()
    for line, m in itertools.chain(zip(counts, mask), zip(counts.T, mask.T)):
        if m.any():
            assert m.sum() >= 2 or m.all()
            s = line[m].sum()
            assert s == 0 or s >= 10 or m.all()


def test_threshold_is_a_setting():
    assert suppress_table([[14, 100], [200, 300]], threshold=20).sum() == 4
    assert suppress_table([[14, 100], [200, 300]], threshold=10).sum() == 0
    assert fmt_count(14, threshold=20) == "<20"
    assert fmt_count(5) == "<10" and fmt_count(0) == "0" and fmt_count(1234) == "1,234"
    assert fmt_count(300, suppressed=True) == "—"


def test_chain_hides_a_small_step_and_its_partner():
    remaining = [1000, 990, 986, 900, 850]  # step 2 removes 4
    hide_rem, hide_rmv = suppress_chain(remaining)
    assert hide_rmv == [False, False, True, True, False]
    assert hide_rem == [False, False, True, False, False]
    # what is published: remaining 990 and 900 and the group's total only
    pub = [r for r, h in zip(remaining, hide_rem) if not h]
    assert 986 not in pub


def test_chain_small_last_step_pairs_backwards():
    remaining = [1000, 960, 955]
    hide_rem, hide_rmv = suppress_chain(remaining)
    assert hide_rmv == [False, True, True]
    assert hide_rem == [False, True, False]


def test_count_names():
    for name in ("n", "events", "n_events", "patients_removed", "admissions", "deaths_30d", "clusters", "n_hospitals"):
        assert is_count_name(name), name
    for name in ("estimate", "p_value", "fiscal_year", "rate", "volume_per50", "term"):
        assert not is_count_name(name), name


def test_sanitize_json_replaces_counts_and_drops_identifiers():
    obj = {"n": 5, "events": 120, "rows": [{"hospital_id": 3, "n": 4, "rate": 0.1}, {"hospital_id": 5, "n": 40}],
           "by_year": {"counts": [3, 40, 60]}, "patient_id": "P1"}
    s = sanitize_json(obj)
    assert s["n"] == "<10" and s["events"] == 120 and "patient_id" not in s
    assert s["rows"] == [{"n": 40}]
    assert s["by_year"]["counts"] == ["<10", 40, 60]


def _clean_out(tmp_path):
    out = tmp_path / "out"
    (out / "figures").mkdir(parents=True)
    (out / "private").mkdir()
    pd.DataFrame({"group": ["a", "b"], "n": [120, 45], "rate": [0.1, 0.2]}).to_csv(out / "t.csv", index=False)
    (out / "results.json").write_text(json.dumps({"n": 500, "events": "<10", "estimate": 3}))
    (out / "report.html").write_text(
        "<html><style>td{n = 3}</style><body><table><tr><th>Variable</th><th>n</th><th>Cancer center</th></tr>"
        "<tr><td>Male</td><td>120</td><td>50 (41.7%)</td></tr></table><p>N = 1,200 patients</p></body></html>"
    )
    pd.DataFrame({"patient_id": ["PX000001"], "admission_id": ["AX000001"]}).to_parquet(out / "private" / "analytic.parquet")
    pd.DataFrame({"n": [1]}).to_csv(out / "private" / "secret.csv", index=False)  # private: not scanned
    return out


def test_checker_passes_a_clean_folder(tmp_path):
    assert check_disclosure(_clean_out(tmp_path)) == []


@pytest.mark.parametrize(
    "name,content,rule",
    [
        ("a.csv", "group,n\nx,7\n", "count below 10"),
        ("a.csv", "group,cancer_center\nx,4 (2.0%)\n", "n (%)"),
        ("a.csv", "hospital_id,rate\n12,0.1\n", "identifier column"),
        ("a.json", json.dumps({"funnel": [{"n": 3, "rate": 0.2}]}), "count below 10"),
        ("a.json", json.dumps({"patient_id": "x"}), "identifier key"),
        ("a.json", json.dumps({"deaths_by_year": [12, 4]}), "count below 10"),
        ("figures/f.svg", "<svg><text>n = 6</text></svg>", "count below 10 in text"),
        ("r.html", "<table><tr><th>x</th><th>events</th></tr><tr><td>a</td><td>8</td></tr></table>", "count column"),
        ("r.html", "<p>seen in 3 hospitals</p>", "text"),
        ("notes.txt", "admission AX000001 was odd", "identifier"),
    ],
)
def test_checker_finds_each_kind_of_violation(tmp_path, name, content, rule):
    out = _clean_out(tmp_path)
    (out / name).parent.mkdir(parents=True, exist_ok=True)
    (out / name).write_text(content)
    found = check_disclosure(out)
    assert found, f"nothing found in {name}"
    assert all(v.file == name for v in found)
    assert any(rule in v.rule for v in found), [str(v) for v in found]


def test_checker_reads_xlsx(tmp_path):
    import openpyxl

    out = _clean_out(tmp_path)
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Table 1"
    ws.append(["Table 1. Baseline"])
    ws.append(["Variable", "Overall", "n"])
    ws.append(["Age", "70 [60–78]", 5])
    wb.save(out / "tables.xlsx")
    found = check_disclosure(out)
    assert len(found) == 1 and "Table 1" in found[0].location and found[0].value == "5"


def test_cli_check_disclosure_exit_codes(tmp_path):
    from typer.testing import CliRunner

    from hospstudy.cli import app

    out = _clean_out(tmp_path)
    r = CliRunner().invoke(app, ["check-disclosure", str(out)])
    assert r.exit_code == 0, r.output
    (out / "bad.csv").write_text("group,patients\nx,2\n")
    r = CliRunner().invoke(app, ["check-disclosure", str(out)])
    assert r.exit_code == 1
    assert "bad.csv" in r.output and "row 2" in r.output


def test_sanitize_json_handles_mixed_count_lists_and_higher_threshold():
    s = sanitize_json({"limits": [{"n": ["<10", "<10", 10, 15, 25]}]}, threshold=20)
    assert s["limits"][0]["n"] == ["<10", "<10", "<20", "<20", 25]


def _chain_recoverable(remaining, hide_rem, hide_rmv):
    """Removed counts an attacker can compute from the published remaining and removed counts."""
    n = len(remaining)
    rem_known = [not h for h in hide_rem]
    rmv_known = [True] + [not h for h in hide_rmv[1:]]
    changed = True
    while changed:
        changed = False
        for k in range(1, n):
            known = (rem_known[k - 1], rem_known[k], rmv_known[k])
            if sum(known) == 2:
                rem_known[k - 1] = rem_known[k] = rmv_known[k] = True
                changed = True
    return [k for k in range(1, n) if hide_rmv[k] and rmv_known[k]]


def test_chain_prefers_the_narrowest_group():
    # patients: step 4 removes 3, steps 5 and 6 remove nobody: pair with step 2, not the tail
    remaining = [1_564_903, 483_965, 10_400, 10_400, 10_397, 10_397, 10_397]
    hide_rem, hide_rmv = suppress_chain(remaining)
    assert hide_rmv == [False, False, False, True, True, False, False] or hide_rmv == [False, False, True, True, True, False, False]
    assert not hide_rem[4] and not hide_rem[5] and not hide_rem[6]
    assert _chain_recoverable(remaining, hide_rem, hide_rmv) == []


@pytest.mark.parametrize("seed", range(30))
def test_random_chains_hide_every_small_step(seed):
    rng = np.random.default_rng(seed)
    removed = rng.choice([0, 1, 4, 8, 12, 50, 3000], size=rng.integers(2, 9))
    remaining = list(np.cumsum(np.concatenate([[0], removed[::-1]]))[::-1] + 100)
    hide_rem, hide_rmv = suppress_chain(remaining)
    small = [k for k in range(1, len(remaining)) if 0 < remaining[k - 1] - remaining[k] < 10]
    assert all(hide_rmv[k] for k in small)
    assert _chain_recoverable(remaining, hide_rem, hide_rmv) == []
