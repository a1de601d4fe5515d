"""``import_dpc``: a folder of raw Form 1 and EF files and a facilities CSV in, a database out.

The flow: detect every file (kind, encoding, header, line ends, layout) → stream the Form 1
files in blocks into a DuckDB work database (in memory, spilling to disk past the memory limit;
typed, only the columns needed, each line with its line-level reason) → build stays,
admissions, diagnoses and procedures from them (:mod:`.form1`) → stream the EF files, each line
joined to its stay as it is read and staged as a billing row or a rejected line (:mod:`.ef`) →
write the tables as Parquet partitioned by fiscal year (of admission) → the import report
(:mod:`.report`). The database is written to a hidden sibling folder and moved into place at
the end, so a failed import leaves no half-written database.

Identifiers (contract with the synthetic raw writer, docs/data_model.md):
``patient_id = "<施設コード>-<データ識別番号>"`` and
``admission_id = "<施設コード>-<データ識別番号>-<入院年月日 yyyymmdd>"``; hospital_id is a stable
pseudonym of the facility code (map in ``DB/private/hospital_ids.csv``).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hospstudy.data.dpc import ef as EF
from hospstudy.data.dpc import form1 as F1
from hospstudy.data.dpc import layouts as L
from hospstudy.data.dpc import rawfiles as R
from hospstudy.data.dpc import report as REP
from hospstudy.data.dpc.facilities import read_facilities
from hospstudy.data.readers import size_bytes, sql_str
from hospstudy.data.schema import TABLES, arrow_schema
from hospstudy.errors import DataUnusableError, InputError

_DUCK = {pa.string(): "VARCHAR", pa.int16(): "SMALLINT", pa.int32(): "INTEGER", pa.date32(): "DATE",
         pa.bool_(): "BOOLEAN", pa.float32(): "REAL"}


@dataclass
class ImportResult:
    """What :func:`import_dpc` returns: where the database is, its row counts, the report."""

    out: Path
    report: dict
    tables: dict = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """0 clean, 1 some lines rejected (the rest imported)."""
        return self.report["exit_code"]

    @property
    def lines(self) -> dict:
        return self.report["lines"]

    def reasons(self):
        """Lines not imported, one row per (kind, reason): a tidy DataFrame."""
        import pandas as pd

        return pd.DataFrame([{k: r[k] for k in ("kind", "reason", "severity", "count")} for r in self.report["reasons"]],
                            columns=["kind", "reason", "severity", "count"])


def import_dpc(raw, facilities, out, *, encoding: str = "auto", fiscal_years: tuple[int, int] | None = None,
               keep_identifiers: bool = False, overwrite: bool = False, workers: int | None = None,
               memory_limit: str | None = None, show_progress: bool = True) -> ImportResult:
    """Import raw DPC Form 1 and EF files into a hospstudy database.

    Parameters
    ----------
    raw : path
        A file or a folder tree of raw files (any split: per hospital and month, per year,
        concatenated; with or without a header; CRLF or LF; CP932 or UTF-8).
    facilities : path
        FACILITIES.csv (facility_code, fiscal_year, cancer_center, beds, teaching, region).
    out : path
        The database folder to write (must not exist unless ``overwrite``).
    encoding : {'auto', 'cp932', 'utf-8'}
        Forces the encoding of every raw file (default: detected per file).
    fiscal_years : (first, last), optional
        Import only stays admitted in these fiscal years (others are counted as skipped).
    keep_identifiers : bool
        Keep the postcode, insurer numbers and doctor codes in ``out/private/identifiers.parquet``
        (dropped by default: no study needs them).
    memory_limit : str, optional
        DuckDB's memory limit while staging and building (e.g. ``'512MB'``; default
        ``$HOSPSTUDY_MEMORY_LIMIT`` or ``'1GB'``): past it, the work tables spill to a folder
        beside ``out``. The import's peak memory is about this plus 0.5-0.7 GB up to 50M EF lines,
        0.75-1.0 GB at 100M (two runs, bench/RESULTS.md, docs/data_model.md); past about 20M
        stays at 1GB, EF is read in passes rather than holding more stays.
    workers : int, optional
        Threads: above 1 (the default when there are 2 CPUs or more), a pool of this many threads
        splits and types the blocks of a raw file while DuckDB stages the previous ones; when
        given, DuckDB builds the tables with this many threads (default: DuckDB's, every CPU), and
        billing is written by one thread when it is 1 (else two).

    Returns
    -------
    ImportResult
        ``.exit_code`` 0 (clean) or 1 (lines rejected), ``.report`` (as in import_report.json).

    Raises
    ------
    DataUnusableError
        Nothing usable (no Form 1 file, an undecodable file, a facilities file missing columns).

    Examples
    --------
    >>> from hospstudy.data.dpc import import_dpc
    >>> r = import_dpc("raw/", "raw/facilities.csv", "db")  # doctest: +SKIP
    >>> r.exit_code, r.lines["imported"]  # doctest: +SKIP
    """
    import duckdb

    t0, c0 = time.perf_counter(), time.process_time()
    raw, out = Path(raw), Path(out)
    enc = R.check_encoding_option(encoding)
    if fiscal_years is not None and not (fiscal_years[0] <= fiscal_years[1]):
        raise InputError(f"The 'fiscal_years' parameter must be (first, last) with first <= last. Got {fiscal_years!r} instead.")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise InputError(f"{out}: exists and is not empty; choose a new folder or pass --overwrite")
    fac_table, ids, fac_enc = read_facilities(facilities, fiscal_years)
    fac_path = Path(facilities).resolve()
    paths = [p for p in R.find_files(raw) if p.resolve() != fac_path]
    base = raw if raw.is_dir() else raw.parent
    files = []
    for i, p in enumerate(paths):
        f = R.detect(p, p.relative_to(base).as_posix(), enc)
        f.file_id = i
        files.append(f)
    if not any(f.kind == "form1" for f in files):
        kinds = ", ".join(sorted({f"{f.label}" for f in files})) or "no files"
        raise DataUnusableError(f"{raw}: no Form 1 file found (a file of 17 tab-separated fields with a payload code "
                                f"in field 6); found: {kinds}")
    duck_threads = workers  # None: DuckDB's own default (every core) while building
    workers = workers or R.cpu_workers()

    # The work database lives in memory: an on-disk one compressed and wrote every staged line
    # and cost a third of the import's CPU time. It stays bounded all the same: past
    # ``memory_limit`` DuckDB evicts the in-memory tables' blocks to ``temp_directory``.
    con = duckdb.connect(os.environ.get("HOSPSTUDY_IMPORT_DB") or ":memory:")
    memory_limit = memory_limit or os.environ.get("HOSPSTUDY_MEMORY_LIMIT") or "1GB"
    try:
        con.execute(f"SET memory_limit = {sql_str(memory_limit)}")
    except duckdb.Error:
        con.close()
        raise InputError(f"The memory limit (--memory-limit or $HOSPSTUDY_MEMORY_LIMIT) must be a size such as "
                         f"'1GB' or '512MB'. Got {memory_limit!r} instead.") from None
    tmp = out.parent / f".{out.name}.importing"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        con.execute(f"SET temp_directory = '{tmp / '_spill'}'")
        con.execute("SET preserve_insertion_order = false")
        con.execute("SET enable_progress_bar = false")
        code_of = {v: k for k, v in ids.items()}
        fac_rel = pa.table({
            "facility_code": pa.array([code_of[h] for h in fac_table.column("hospital_id").to_pylist()], pa.string()),
            "fiscal_year": fac_table.column("fiscal_year").cast(pa.int32()),
            "hospital_id": fac_table.column("hospital_id"),
        })
        con.register("fac_arrow", fac_rel)
        con.execute("CREATE TABLE fac AS SELECT CAST(facility_code AS INTEGER) AS fac, fiscal_year, hospital_id FROM fac_arrow")
        con.unregister("fac_arrow")
        F1.create_staging(con, keep_identifiers)
        EF.create_staging(con, keep_identifiers)
        other_lines: dict[int, tuple[str, int]] = {}
        tally = EF.Tally()
        # While staging, DuckDB only appends what the reader hands it: a second DuckDB thread
        # there spent CPU time waiting (1M EF lines: 2.1 -> 1.0 CPU s).
        threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
        build_threads = f"SET threads = {int(duck_threads or threads)}"
        with _Staging(con, files, workers, keep_identifiers, other_lines, tally, show_progress) as stage:
            t1, c1 = time.perf_counter(), time.process_time()
            stage.describe("reading raw DPC files (Form 1)")
            con.execute("SET threads = 1")
            stage.run("form1", facilities=F1.Facilities.load(con, fiscal_years))
            con.execute(build_threads)
            t2, c2 = time.perf_counter(), time.process_time()
            # Form 1 is built before EF is read: EF lines are joined to the stays as they are read
            stage.describe("building admissions from Form 1")
            F1.build(con, keep_identifiers)
            t2b, c2b = time.perf_counter(), time.process_time()
            # The stays' arrays live outside DuckDB while EF is read: they count against the
            # memory limit (DuckDB gets the rest). When they would take more than half of it
            # (18 bytes a stay and 8 a patient: about 20M stays at 1GB), EF is read in passes, each over the stays of a range of
            # patients, so the import's memory stays bounded whatever the number of stays.
            limit = _setting_bytes(con, "memory_limit")
            passes = EF.Stays.ranges(con, stays_budget(limit))
            stage.ef_passes(len(passes))
            codes = EF.Codes()
            con.execute("CREATE TABLE ef_seen (stay_no INTEGER)")  # admissions with an imported EF line
            for i, (lo, hi) in enumerate(passes):
                stage.describe("reading raw DPC files (EF)" + (f", pass {i + 1} of {len(passes)}" if len(passes) > 1 else ""))
                stays = EF.Stays.load(con, lo, hi, first=i == 0)
                con.execute(f"SET memory_limit = '{max(limit - stays.nbytes, limit // 4)}B'")
                con.execute("SET threads = 1")
                stage.run("ef", stays=stays, codes=codes)
                con.execute(f"SET memory_limit = '{limit}B'")
                con.register("seen_arrow", pa.table({"stay_no": stays.stay_no[stays.seen]}))
                con.execute("INSERT INTO ef_seen SELECT stay_no FROM seen_arrow")
                con.unregister("seen_arrow")
                del stays
            con.execute(build_threads)
            t3a, c3a = time.perf_counter(), time.process_time()
            EF.build(con)
            t3, c3 = time.perf_counter(), time.process_time()
            stage.describe("writing the tables (sorted, by fiscal year)")
            tables = _write_tables(con, tmp, fac_table, codes, workers)
            t4, c4 = time.perf_counter(), time.process_time()
        private = tmp / "private"
        private.mkdir()
        with open(private / "hospital_ids.csv", "w", encoding="utf-8") as fh:
            fh.write("facility_code,hospital_id\n")
            for code in sorted(ids):
                fh.write(f"{code},{ids[code]}\n")
        if keep_identifiers:
            _write_identifiers(con, private)
        rep = _report(con, files, other_lines, tally, raw, facilities, fac_enc, fiscal_years, tables, keep_identifiers)
        rep["ef_passes"] = len(passes)
        rep["ef_blocks_skipped"] = tally.skipped
        rep["ef_blocks_keys_only"] = tally.keys_only
        rep["seconds"] = round(time.perf_counter() - t0, 2)
        t5, c5 = time.perf_counter(), time.process_time()
        # wall and CPU seconds (this process, every thread) per phase
        phases = ("detect", "read Form 1", "build Form 1", "read EF", "build EF", "write", "report")
        rep["timings"] = {k: round(b - a, 2) for k, a, b in zip(phases, (t0, t1, t2, t2b, t3a, t3, t4), (t1, t2, t2b, t3a, t3, t4, t5))}
        rep["cpu_seconds"] = {k: round(b - a, 2) for k, a, b in zip(phases, (c0, c1, c2, c2b, c3a, c3, c4), (c1, c2, c2b, c3a, c3, c4, c5))}
    except BaseException:
        con.close()
        shutil.rmtree(tmp, ignore_errors=True)  # a failed import leaves nothing behind
        raise
    finally:
        con.close()
    (tmp / "_work.duckdb").unlink(missing_ok=True)
    for p in tmp.glob("_work.duckdb*"):
        p.unlink()
    shutil.rmtree(tmp / "_spill", ignore_errors=True)
    REP.write(rep, tmp)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return ImportResult(out=out, report=rep, tables=tables)


class _Staging:
    """Reads the raw files of one kind at a time into the work tables, with one progress bar
    over every file (other files' lines are counted at once)."""

    def __init__(self, con, files, workers, keep_identifiers, other_lines, tally, show_progress):
        self.con, self.files, self.workers, self.keep_identifiers = con, files, workers, keep_identifiers
        self.other_lines, self.tally, self.show_progress = other_lines, tally, show_progress

    def __enter__(self):
        from hospstudy.console import progress

        self._progress = progress()
        bar = self._progress.__enter__()
        self.total = max(sum(f.size for f in self.files), 1)
        self.bar, self.task = bar, bar.add_task("reading raw DPC files", total=self.total)
        if not self.show_progress:
            bar.disable = True
        for f in self.files:
            if f.kind in ("form1", "ef"):
                continue
            reason = {"other": "other_dpc_file", "empty": "blank_line"}.get(f.kind)
            if reason is None:
                reason = "unrecognised_file" if f.path.name.split("_", 1)[0] in ("FF1", "EFn") else "not_a_dpc_file"
            self.other_lines[f.file_id] = (reason, R.count_lines(f.path) if f.kind != "empty" else 0)
            bar.advance(self.task, f.size)
        return self

    def __exit__(self, *exc):
        return self._progress.__exit__(*exc)

    def ef_passes(self, k: int) -> None:
        """EF is read ``k`` times: the bar's total grows by the EF files' size for each pass after the first."""
        if k > 1:
            extra = (k - 1) * sum(f.size for f in self.files if f.kind == "ef")
            self.total += extra
            self.bar.update(self.task, total=self.total)

    def describe(self, what: str) -> None:
        """What the import is doing now (the bar's text; its spinner and clock keep running
        through the steps that are not reading)."""
        self.bar.update(self.task, description=what)

    def run(self, kind: str, stays: "EF.Stays | None" = None, facilities: "F1.Facilities | None" = None,
            codes: "EF.Codes | None" = None) -> None:
        """Stage every file of ``kind`` ('form1' into f1_stage, each item checked against
        ``facilities``; 'ef' into ef_billing and the small ef_* tables, joined to ``stays`` as
        they are read)."""
        from itertools import chain, groupby, islice

        con, bar, task = self.con, self.bar, self.task
        staged = []
        for f in self.files:
            if f.kind != kind:
                continue
            if kind == "form1":
                staged.append((f, partial(F1.parse_chunk, file_id=f.file_id, facilities=facilities,
                                          keep_identifiers=self.keep_identifiers), F1.COLS))
            else:
                staged.append((f, partial(EF.parse_chunk, file_id=f.file_id, keep_identifiers=self.keep_identifiers,
                                          stays=stays, codes=codes), EF.cols(self.keep_identifiers)))
        # One stream of blocks over every file (one pool of threads, busy across file
        # boundaries); each file's blocks stream through an Arrow reader into INSERT statements
        # of at most INSERT_BLOCKS blocks (below); an EF block's few other rows (rejected
        # lines, surgery codes) are inserted after each statement.
        # a pass after the first passes over the blocks that hold none of its patients
        skip = None if stays is None or stays.first else self.tally.skips(stays, lambda nbytes: bar.advance(task, nbytes))
        # the first of several passes reads only the keys of a block none of whose lines is its
        peek = None if stays is None else lambda f, data, first_line: stays.foreign(data, f.file_id, first_line)
        for _, chunks in groupby(R.iter_files(staged, self.workers, skip=skip, peek=peek), key=lambda t: t[0].file_id):
            f, _, first = next(chunks)
            main = "f1_stage" if kind == "form1" else "ef_billing"
            schema = (first if kind == "form1" else first.tables[main]).schema
            blocks = chain([first], (t for _, _, t in chunks))
            done, failed, side = 0, [], {}

            def batches(part):
                """The Arrow batches of one INSERT statement's blocks, with the progress bar."""
                nonlocal done
                try:
                    for block in part:
                        if kind == "ef":
                            self.tally.add(block)
                            for name, t in block.tables.items():
                                if name != main:
                                    side.setdefault(name, []).append(t)
                            block = block.tables[main]
                        yield from block.cast(schema).to_batches()
                        step = min(R.CHUNK_BYTES, max(f.size - done, 0))
                        done += step
                        bar.advance(task, step)
                except BaseException as e:  # re-raised below: DuckDB would wrap it in its own error
                    failed.append(e)
                    raise

            while (head := next(blocks, None)) is not None:
                reader = pa.RecordBatchReader.from_batches(schema, batches(chain([head], islice(blocks, INSERT_BLOCKS - 1))))
                _insert(con, main, reader, failed)
                for name, parts in side.items():
                    _insert(con, name, pa.concat_tables(parts, promote_options="permissive"), failed)
                side.clear()


def _setting_bytes(con, name: str) -> int:
    """A DuckDB size setting in bytes (DuckDB shows them as e.g. '953.6 MiB')."""
    text = con.execute(f"SELECT current_setting('{name}')").fetchone()[0]
    n = size_bytes(text)
    if n is None:
        raise AssertionError(f"DuckDB's {name} {text!r} is not a size")
    return n


def _insert(con, table: str, rows, failed: list) -> None:
    """INSERT the Arrow ``rows`` (a table or a reader) into ``table`` (by column name); an
    error raised while the reader ran (in ``failed``) is raised as itself."""
    con.register("chunks", rows)
    try:
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM chunks")
    except Exception:
        if failed:
            raise failed[0] from None
        raise
    finally:
        con.unregister("chunks")


# Blocks (of R.CHUNK_BYTES, 8 MiB) per INSERT statement: 128 MiB of raw lines. One INSERT per
# block cost DuckDB ~5x the CPU time (a fixed cost per statement of ~0.15 s); one INSERT per file
# kept the file's rows in the statement's transaction-local storage, so the import's peak memory
# grew with the largest file past DuckDB's memory limit. 50 M EF lines in two files (+ 10 M Form 1
# lines), 2026-12-06:
# one INSERT per file peaked at 2,112 MiB; per 32 / 8 / 4 blocks 2,117 / 1,844 / 1,766 MiB, with
# staging CPU 64.4 / 64.9 / 69.2 s (blocks of 16 MiB then: 8 per statement).
INSERT_BLOCKS = 16


def _select_list(table: str) -> str:
    return ", ".join(f"CAST({c.name} AS {_DUCK[c.type]}) AS {c.name}" for c in TABLES[table])


def _write_tables(con, tmp: Path, fac_table: pa.Table, codes: EF.Codes, workers: int = 2) -> dict:
    pq.write_table(fac_table, tmp / "facilities.parquet")
    # sorted by admission as stay_no, its rank: an integer sort (1M admissions and 1M diagnoses,
    # 2026-12-06: 2.3 CPU s by the text of admission_id, 1.8 by stay_no; the same rows, same order)
    sources = {
        "admissions": ("SELECT * FROM admissions_out", "stay_no"),
        "diagnoses": ("SELECT d.*, a.fiscal_year, a.stay_no FROM diagnoses_out d JOIN admissions_out a USING (admission_id)",
                      "stay_no, role, icd10, suspected, file_id, line_no"),
        "procedures": ("SELECT p.*, a.fiscal_year, a.stay_no FROM (SELECT * FROM procedures_out UNION ALL SELECT * FROM ef_procedures) p "
                       "JOIN admissions_out a USING (admission_id)", "stay_no, proc_date, proc_code"),
        "billing": ("SELECT * FROM ef_billing", None),  # written by _write_billing
    }
    counts = {"facilities": fac_table.num_rows}
    for name, (sql, order) in sources.items():
        n = con.execute(f"SELECT count(*) FROM ({sql})").fetchone()[0]
        counts[name] = int(n)
        if n == 0:
            pq.write_table(arrow_schema(name).empty_table(), tmp / f"{name}.parquet")
            continue
        if name == "billing":
            _write_billing(con, tmp / name, codes, staged=n, threads=min(2, workers))
            continue
        # One sorted file per fiscal year, as PARTITION_BY (fiscal_year) writes them: written one
        # year at a time, 1M billing lines took 0.49 CPU s instead of 0.73 (2026-12-06).
        for (fy,) in con.execute(f"SELECT DISTINCT fiscal_year FROM ({sql}) ORDER BY 1").fetchall():
            part = tmp / name / f"fiscal_year={int(fy)}"
            part.mkdir(parents=True)
            con.execute(f"""COPY (SELECT {_select_list(name)} FROM ({sql}) WHERE fiscal_year = {int(fy)} ORDER BY {order})
                            TO '{part / 'data_0.parquet'}' (FORMAT parquet, COMPRESSION snappy)""")
    return counts


def stays_budget(memory_limit: int) -> int:
    """Bytes the stays' arrays may take while EF is read (half of DuckDB's memory limit); past it
    EF is read in passes (:meth:`hospstudy.data.dpc.ef.Stays.ranges`)."""
    return memory_limit // 2


# Billing rows per part file: consecutive rows of the year's sorted order (the last part of a year
# holds the rest). Part files are written by two threads (pyarrow writes one file on one thread).
PART_ROWS = 4_000_000
_BATCH_ROWS = 122_880  # DuckDB's row group size
# Pieces of billing rows (at most _BATCH_ROWS each) handed to the writing threads and not yet
# written: the most the reader runs ahead of them (~4M rows: 67 MB of sorted rows, 17 bytes
# each, and as much again while they are encoded), and what DuckDB's memory limit is lowered by
# while it sorts for them (50M EF lines, 2026-12-07: the import's peak 1,646 MiB without,
# 1,550-1,559 MiB with; the write phase 16.1-20.6 s wall, 30.8-38.1 CPU s, against 25.0 s and
# 47.2 CPU s by one sort per part).
_PENDING = 32
_PENDING_BYTES = 128 << 20


class _AdmissionIds:
    """The admission ids by stay number, read from a stream sorted by stay number as far as the
    billing rows have reached: the ids of the stays behind them are let go, and only the ids of
    the stays a piece holds are taken (a piece can span many admissions without billing, e.g.
    hospitals without EF files: their ids are read past, never gathered)."""

    def __init__(self, result):
        from hospstudy.data.dpc.ef import _batches

        self._batches = iter(_batches(result, _BATCH_ROWS))
        self._chunks: list[tuple[np.ndarray, pa.Array]] = []  # (stay numbers, ids), in order

    def of(self, stays: np.ndarray) -> tuple[np.ndarray, pa.Array]:
        """For ``stays`` (sorted, unique, after every stay of the calls before): the stay number
        found for each (the next one where a stay has no admission: the caller checks) and its id."""
        nos, ids, i = [], [], 0
        while i < len(stays):
            while self._chunks and self._chunks[0][0][-1] < stays[i]:
                self._chunks.pop(0)
            if not self._chunks:
                b = next(self._batches, None)
                if b is None:
                    break
                if b.num_rows:
                    self._chunks.append((b.column(0).to_numpy(), b.column(1)))
                continue
            n, a = self._chunks[0]
            j = int(np.searchsorted(stays, n[-1], side="right"))  # the stays up to this chunk's last
            pos = np.searchsorted(n, stays[i:j])
            nos.append(n[pos])
            ids.append(a.take(pa.array(pos)))
            i = j
        if len(nos) == 1:
            return nos[0], ids[0]
        return (np.concatenate(nos), pa.concat_arrays(ids)) if nos else (np.empty(0, np.int64), pa.array([], pa.string()))


def _write_billing(con, folder: Path, codes: EF.Codes, staged: int, threads: int = 2) -> None:
    """The billing table, sorted by (stay, service date, code, kind, quantity): one folder per
    fiscal year, each year in part files of :data:`PART_ROWS` consecutive rows
    (``data_00000.parquet``, ...: read in name order, the whole year in that order), written by
    ``threads`` threads (two; one with ``--workers 1``); ``staged``: the rows of ef_billing, every
    one of which must be written.

    One DuckDB sort of every staged row (spilling past the memory limit), streamed: the reader
    cuts it into pieces at the years' and the parts' ends and hands each part's pieces to one
    writing thread, parts taking turns. It sorted by one query per part before, each a scan of
    every staged row when the input interleaves hospitals, so the write grew as parts x rows
    (sort and fetch alone, stays interleaved, 2026-12-07: 100M rows 52.3 CPU s in 25 parts,
    31.5 in one sort; 20M 5.6-6.1 vs 4.9-5.2; peak 1,016 vs 1,095 MiB).

    stay_no ranks admission_id (fixed-width fields, so the same order) as an integer. DuckDB
    sorts the narrow staged rows by it and the admission ids are put in afterwards, from a second
    stream of admissions_out sorted by stay_no: carrying the 29-byte id through DuckDB's sort was
    most of the write (one fiscal year of 10M rows: 7.0-8.9 CPU s with it, 3.7-4.2 without).
    Every billing row has its admission (its stay was 'ok' when it was read); one without fails
    here, it does not vanish."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    from hospstudy.data.dpc.ef import _batches

    # admission_id, kind and code are written dictionary-encoded from integers: the admission's
    # and the code's rank, the kind's index (no string goes through DuckDB's sort or Parquet's
    # dictionary hashing; without the Arrow schema in the file they read back as strings, as the
    # synthetic writer's). One fiscal year of 2.4M rows (2026-12-06): 0.80 -> 0.56 CPU s, the
    # same rows and file size.
    dict_type = pa.dictionary(pa.int32(), pa.string())
    schema = pa.schema([pa.field(f.name, dict_type if f.name in ("admission_id", "kind", "code") else f.type, nullable=True)
                        for f in arrow_schema("billing")])
    kinds = pa.array(L.KINDS, pa.string())
    # Each code's rank in text order: the sort compares integers, not strings (one fiscal year of
    # 2.4M rows in random order, 2026-12-06: 0.91-1.26 CPU s by the code's and the kind's text,
    # 0.64-0.82 by their ranks; in the order they were staged, mostly sorted already, about the
    # same: 0.41-0.58 and 0.50-0.53; the same rows in the same order)
    rank, code_text = codes.ranked()
    con.register("code_rank_arrow", pa.table({"code_id": pa.array(np.arange(len(rank), dtype=np.int32)), "code_rank": rank}))
    con.execute("CREATE OR REPLACE TABLE code_rank AS SELECT * FROM code_rank_arrow")
    con.unregister("code_rank_arrow")
    # each fiscal year is a range of stay numbers (form1.build numbers the admissions by year first)
    years = con.execute("SELECT fiscal_year, max(stay_no) FROM admissions_out GROUP BY 1 ORDER BY 1").fetchall()
    year_last = np.array([last for _, last in years], np.int64)

    def dictionary(indices: np.ndarray, values: pa.Array) -> pa.DictionaryArray:
        """``values[indices]`` as a dictionary array of the values used only."""
        used = np.zeros(len(values), bool)
        used[indices] = True
        remap = (np.cumsum(used) - 1).astype(np.int32)
        return pa.DictionaryArray.from_arrays(pa.array(remap[indices]), values.take(pa.array(np.flatnonzero(used))))

    lanes = [ThreadPoolExecutor(1, thread_name_prefix=f"hospstudy-write{i}") for i in range(max(1, threads))]
    open_files: list[dict] = [{} for _ in lanes]  # each lane's writer: {"path": ..., "writer": ...}

    def write(lane: int, path: Path, piece: pa.RecordBatch, nos: np.ndarray, ids: pa.Array) -> None:
        """In lane ``lane``'s thread: the piece into the file at ``path`` (the lane's file until
        another path comes)."""
        f = open_files[lane]
        if f.get("path") != path:
            if f.get("writer") is not None:
                f["writer"].close()
            f["path"], f["writer"] = path, None  # (stays None if the new file cannot be opened)
            f["writer"] = pq.ParquetWriter(path, schema, compression="snappy", store_schema=False,
                                           dictionary_pagesize_limit=8 << 20)
        stay = piece.column(0).to_numpy()
        pos = np.minimum(np.searchsorted(nos, stay), max(len(nos) - 1, 0))
        if len(nos) == 0 or not (nos[pos] == stay).all():
            raise AssertionError("a billing row without its admission")  # a bug, not bad input
        # kind: its index in L.KINDS, which is in text order
        f["writer"].write_batch(pa.record_batch([
            dictionary(pos, ids), piece.column(1), dictionary(piece.column(2).to_numpy().astype(np.intp), kinds),
            dictionary(piece.column(3).to_numpy(), code_text), piece.column(4)], schema=schema))

    # the pieces in flight are held outside DuckDB: its sort gets the rest of the memory limit
    limit = _setting_bytes(con, "memory_limit")
    con.execute(f"SET memory_limit = '{max(limit - _PENDING_BYTES, limit // 2)}B'")
    rows_cur, ids_cur = con.cursor(), con.cursor()
    pending: deque = deque()
    written, files, part, year, in_part, path = 0, 0, -1, -1, 0, None
    try:
        rows = rows_cur.execute("""SELECT stay_no, service_date, kind, code_rank, quantity
          FROM ef_billing JOIN code_rank USING (code_id)
          ORDER BY stay_no, service_date, code_rank, kind, quantity""")
        admissions = _AdmissionIds(ids_cur.execute("SELECT stay_no, admission_id FROM admissions_out ORDER BY stay_no"))
        for b in _batches(rows, _BATCH_ROWS):
            stay = b.column(0).to_numpy()
            start = 0
            while start < b.num_rows:
                y = int(np.searchsorted(year_last, stay[start]))  # the row's fiscal year
                if y == len(years):
                    raise AssertionError("a billing row without its admission")  # a bug, not bad input
                if y != year or in_part >= PART_ROWS:
                    part = part + 1 if y == year else 0
                    if y != year:
                        (folder / f"fiscal_year={int(years[y][0])}").mkdir(parents=True)
                    year, in_part = y, 0
                    path = folder / f"fiscal_year={int(years[y][0])}" / f"data_{part:05d}.parquet"
                    lane = files % len(lanes)  # files take turns
                    files += 1
                end = min(int(np.searchsorted(stay, year_last[y], side="right")), start + PART_ROWS - in_part)
                piece_stays = stay[start:end]
                nos, ids = admissions.of(piece_stays[np.r_[True, piece_stays[1:] != piece_stays[:-1]]])
                pending.append(lanes[lane].submit(write, lane, path, b.slice(start, end - start), nos, ids))
                written += end - start
                in_part += end - start
                start = end
                while len(pending) > _PENDING:
                    pending.popleft().result()  # a writing thread's error is raised here
        while pending:
            pending.popleft().result()
    finally:
        for pool in lanes:
            pool.shutdown(cancel_futures=True)
        for f in open_files:
            if f.get("writer") is not None:
                f["writer"].close()
        rows_cur.close()
        ids_cur.close()
        con.execute(f"SET memory_limit = '{limit}B'")
    con.execute("DROP TABLE code_rank")
    if written != staged:  # a row lost by the sort or the pieces: a bug, not bad input
        raise AssertionError(f"billing: {written} rows written of {staged}")


def _write_identifiers(con, private: Path) -> None:
    con.execute(f"""COPY (
      SELECT a.admission_id, any_value(c.postcode) AS postcode,
        (SELECT string_agg(DISTINCT e.insurer_no, ' ' ORDER BY e.insurer_no) FROM ef_ids e WHERE e.stay_no = a.stay_no) AS insurer_no,
        (SELECT string_agg(DISTINCT e.doctor_code, ' ' ORDER BY e.doctor_code) FROM ef_ids e WHERE e.stay_no = a.stay_no) AS doctor_codes
      FROM admissions_out a LEFT JOIN f1_postcodes c ON c.fac = a.fac AND c.pid = a.pid AND c.admit_date = a.admit_date
      GROUP BY a.admission_id, a.stay_no ORDER BY a.admission_id
    ) TO '{private / 'identifiers.parquet'}' (FORMAT parquet)""")


def _report(con, files, other_lines, tally, raw, facilities, fac_enc, fiscal_years, tables, keep_identifiers) -> dict:
    from hospstudy import __version__

    con.execute("""CREATE VIEW acct AS
      SELECT 'form1' AS kind, file_id, line_no, reason, detail FROM f1_rejected
      UNION ALL SELECT 'ef', file_id, line_no, reason, detail FROM ef_rejected""")
    by_file: dict[int, dict] = {}
    for fid, reason, n in con.execute("SELECT file_id, coalesce(reason, 'imported'), count(*) FROM acct GROUP BY ALL").fetchall():
        by_file.setdefault(fid, {})[reason] = int(n)
    # lines imported (EF: the billing rows; rejected and skipped lines are in acct)
    for fid, n in [*con.execute("SELECT file_id, lines FROM f1_imported").fetchall(), *tally.imported.items()]:
        if n:
            by_file.setdefault(fid, {})["imported"] = int(n)
    for fid, (reason, n) in other_lines.items():
        if n:
            by_file.setdefault(fid, {})[reason] = n
    fy_by_file: dict[int, list] = {}
    for fid, fy in con.execute("SELECT file_id, fy FROM f1_years ORDER BY 1, 2").fetchall():
        fy_by_file.setdefault(fid, []).append(int(fy))
    for fid, years in tally.years.items():
        fy_by_file[fid] = sorted(years)
    widths = tally.f17_widths
    file_rows, totals = [], {"total": 0, "imported": 0, "skipped": 0, "rejected": 0}
    years_seen: set[int] = set()
    for f in files:
        counts = by_file.get(f.file_id, {})
        imported = counts.get("imported", 0)
        skipped = sum(n for r, n in counts.items() if r in REP.SKIPPED)
        rejected = sum(n for r, n in counts.items() if r != "imported" and r not in REP.SKIPPED)
        d = f.to_dict()
        d["fiscal_years"] = fy_by_file.get(f.file_id, [])
        years_seen.update(d["fiscal_years"])
        if f.kind == "ef":
            ws = widths.get(f.file_id, {})
            lays = sorted({L.ef_layout_of_flag(w) or f"field 17 width {w}" for w in ws})
            d["layout"] = " + ".join(lays) if lays else f.layout
            for fy in d["fiscal_years"]:
                want = L.profile_for(fy).ef if L.profile_for(fy) else None
                if want and lays and want not in lays:
                    d["notes"].append(f"FY{fy} lines, but field 17 follows {', '.join(lays)} (the FY{fy} manual has {want}); "
                                      "read as they are (field 17 is not imported)")
        if f.kind == "form1" and any(y < 2014 for y in d["fiscal_years"]):
            d["notes"].append("FY2012-2013 lines read with the FY2014 layout (no transcription of those manuals)")
        d.update(lines=sum(counts.values()), imported=imported, skipped=skipped, rejected=rejected)
        file_rows.append(d)
        totals["total"] += d["lines"]
        totals["imported"] += imported
        totals["skipped"] += skipped
        totals["rejected"] += rejected
    rel = {f.file_id: f.rel for f in files}
    reasons = []
    for kind, reason, n, ex in con.execute("""
        SELECT kind, reason, count(*), arg_min(struct_pack(f := file_id, l := line_no, d := detail),
                                               file_id::BIGINT * 1000000000000 + line_no, 5)
        FROM acct WHERE reason IS NOT NULL GROUP BY ALL ORDER BY 1, 2""").fetchall():
        ex = sorted(ex, key=lambda e: (e["f"], e["l"]))
        reasons.append({"kind": kind, "reason": reason, "severity": REP.REASONS[reason][0], "count": int(n),
                        "examples": [{"file": rel[e["f"]], "line": int(e["l"]), "detail": e["d"]} for e in ex]})
    for fid, (reason, n) in other_lines.items():
        if n:
            reasons.append({"kind": "other", "reason": reason, "severity": REP.REASONS[reason][0], "count": n,
                            "examples": [{"file": rel[fid], "line": 1, "detail": next(f.label for f in files if f.file_id == fid)}]})
    q = lambda sql: con.execute(sql).fetchall()  # noqa: E731
    no_ef = q("""SELECT count(*), list(admission_id ORDER BY admission_id)[1:5] FROM admissions_out a
                 ANTI JOIN ef_seen USING (stay_no)""")[0]
    no_f1 = q(f"""SELECT count(*), list(k ORDER BY k)[1:5] FROM (SELECT DISTINCT {F1.key_text()} AS k
                  FROM ef_rejects WHERE reason = 'no_form1_stay')""")[0]
    stays = {
        "form1_stays": int(q("SELECT count(*) FROM stays")[0][0]),
        "admissions": tables["admissions"],
        "form1_without_ef": {"count": int(no_ef[0]), "examples": list(no_ef[1] or [])},
        "ef_without_form1": {"count": int(no_f1[0]), "examples": list(no_f1[1] or [])},
        "ef_only_procedures": int(q("SELECT count(*) FROM ef_procedures")[0][0]),
    }
    payload = {"not_used": {}, "unknown": {}}
    for code, reason, n in q("""SELECT code, reason, count(*) FROM f1_rejected WHERE reason IN ('payload_not_used', 'unknown_payload_code')
                                GROUP BY ALL ORDER BY 1"""):
        payload["not_used" if reason == "payload_not_used" else "unknown"][code] = int(n)
    unknown = [{"what": "EF データ区分", "code": c, "count": int(n), "treated_as": "billing kind by receipt code and 解釈番号"}
               for c, n in sorted(tally.categories.items()) if c not in L.EF_CATEGORIES]
    norm = [{"raw": r, "code": c, "source": s, "count": int(n)} for r, c, s, n in q("""
        SELECT raw_code, proc_code, source, count(*) FROM (SELECT * FROM procedures_out UNION ALL SELECT * FROM ef_procedures)
        WHERE raw_code <> proc_code GROUP BY ALL ORDER BY 1, 2""")]
    partial, disagree = q("SELECT count_if(partial_birth), count_if(death_codes_disagree) FROM admissions_out")[0]
    qty_empty = tally.qty_empty
    notes = REP.profile_notes(years_seen) + [
        "patient_id = <施設コード>-<データ識別番号>; admission_id = <施設コード>-<データ識別番号>-<入院年月日>; "
        "hospital_id = a stable pseudonym of 施設コード (map: private/hospital_ids.csv)",
        f"age: completed years at admission from the birth date (A000010 payload 1); {int(partial or 0):,} admission(s) "
        "had an unknown birth month or day (written 0), taken as 1 July / the 15th",
        f"discharge_to 'death' = 退院先 8 or 転帰 6/7; {int(disagree or 0):,} admission(s) had only one of the two",
        f"EF 使用量 empty: quantity 1 ({int(qty_empty or 0):,} imported line(s))",
        "height (A001010 payload 2) read as cm and weight (payload 3) as kg; 0 or empty = not recorded (units not in the transcription)",
        "spinal_level: derived from the disease name (payload 9) of a confirmed C79.5 diagnosis naming the spine's region; null otherwise",
        "personal identifiers (A000010 postcode, EF 保険者番号 and 医師コード) "
        + ("kept in private/identifiers.parquet (--keep-identifiers)" if keep_identifiers else "dropped"),
    ]
    rep = {
        "raw": str(raw), "facilities_file": str(facilities), "facilities_encoding": fac_enc,
        "fiscal_years": list(fiscal_years) if fiscal_years else None,
        "hospstudy_version": __version__, "lines": totals, "tables": tables, "files": file_rows,
        "reasons": reasons, "stays": stays, "payload_codes": payload, "unknown_codes": unknown,
        "code_normalisation": norm, "notes": notes,
    }
    rep["exit_code"] = 1 if totals["rejected"] else 0
    return rep
