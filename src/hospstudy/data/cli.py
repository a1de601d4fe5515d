"""CLI: hospstudy import-dpc, hospstudy synth, hospstudy validate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from hospstudy.console import console, out


def _parse_years(text: str) -> tuple[int, int]:
    try:
        a, _, b = text.partition("-")
        first, last = int(a), int(b or a)
    except ValueError:
        raise typer.BadParameter(f"expected a range of fiscal years like 2012-2020, got {text!r}")
    if not (1990 <= first <= last <= 2100):
        raise typer.BadParameter(f"expected first <= last fiscal year within 1990-2100, got {text!r}")
    return first, last


def register(app: typer.Typer) -> None:
    @app.command("import-dpc")
    def import_dpc_cmd(
        raw: Path = typer.Argument(..., help="Raw DPC files: a file or a folder tree of Form 1 (様式1) and EF files, any split, CP932 or UTF-8."),
        facilities: Path = typer.Option(..., "--facilities", help="FACILITIES.csv: facility_code, fiscal_year, cancer_center, beds, teaching, region."),
        out_dir: Path = typer.Option(..., "--out", help="Database folder to write (with import_report.json and .md)."),
        encoding: str = typer.Option("auto", "--encoding", help="auto (detect per file), cp932 or utf-8."),
        years: Optional[str] = typer.Option(None, "--fiscal-years", help="Import only stays admitted in these fiscal years, FIRST-LAST (default: all)."),
        keep_identifiers: bool = typer.Option(False, "--keep-identifiers", help="Keep postcode, insurer numbers and doctor codes in DB/private/ (dropped by default)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing database in --out."),
        workers: Optional[int] = typer.Option(None, "--workers", min=1, max=64, help="Threads: 1 reads raw files in one thread (no pool cutting and typing blocks) and writes billing in one; also DuckDB's threads while building (default: every CPU)."),
        memory_limit: Optional[str] = typer.Option(None, "--memory-limit", help="DuckDB's memory limit while importing, e.g. 512MB (default: $HOSPSTUDY_MEMORY_LIMIT or 1GB); past it the work tables spill to disk. Peak memory is about this plus 0.3-0.8 GB (measured at 512MB and 1GB)."),
    ):
        """Import raw DPC Form 1 and EF files into a database. Exit 0 clean, 1 lines rejected (the rest imported), 2 unusable input."""
        from hospstudy.data.dpc import import_dpc

        fy = _parse_years(years) if years else None
        r = import_dpc(raw, facilities, out_dir, encoding=encoding, fiscal_years=fy, keep_identifiers=keep_identifiers,
                       overwrite=overwrite, workers=workers, memory_limit=memory_limit)
        t = r.lines
        console.print(f"[green]✓[/] database written to [bold]{out_dir}[/] ({r.report['seconds']} s)")
        for k, v in r.tables.items():
            console.print(f"  {k}: {v:,}")
        console.print(f"  raw lines: {t['total']:,} = {t['imported']:,} imported + {t['skipped']:,} skipped + {t['rejected']:,} rejected")
        for x in r.report["reasons"]:
            if x["severity"] == "rejected":
                e = x["examples"][0]
                console.print(f"  [red]rejected[/] {x['reason']}: {x['count']:,} line(s), e.g. {e['file']} line {e['line']}"
                              + (f": {e['detail']}" if e.get("detail") else ""), soft_wrap=True)
        console.print(f"  report: {out_dir / 'import_report.md'}")
        raise typer.Exit(r.exit_code)

    @app.command()
    def synth(
        out_dir: Path = typer.Option(..., "--out", help="Folder to write the database into (created)."),
        seed: int = typer.Option(20240601, "--seed", help="Random seed: same seed and options give byte-identical files."),
        scale: float = typer.Option(1.0, "--scale", min=0.001, max=100.0, help="Multiplies hospitals and every count of patients, admissions and billing lines."),
        years: str = typer.Option("2012-2020", "--years", help="Fiscal years, FIRST-LAST."),
        effects: Optional[Path] = typer.Option(None, "--effects", exists=True, dir_okay=False, help="TOML overriding planted effects (see docs/synthetic.md)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing database in --out."),
        background: bool = typer.Option(True, "--background/--no-background", help="--no-background skips background admissions and the billing of all but metastatic surgical admissions (fast replicate simulations)."),
        fmt: str = typer.Option("parquet", "--format", help="parquet: the database; dpc-raw: the same world as raw Form 1 (FF1_<fy>.txt) and EF (EFn_<fy>.txt) files in CP932 plus facilities.csv, the input of import-dpc."),
    ):
        """Generate a synthetic nationwide DPC-layout database (and truth.json), or the same world as raw DPC files."""
        from hospstudy.data.synth import FORMATS, generate

        if fmt not in FORMATS:
            raise typer.BadParameter(f"expected one of {', '.join(FORMATS)}, got {fmt!r}", param_hint="--format")
        first, last = _parse_years(years)
        summary = generate(out_dir, seed=seed, scale=scale, years=(first, last), effects=effects, overwrite=overwrite,
                           background=background, format=fmt)
        what = "raw DPC files" if fmt == "dpc-raw" else "database"
        console.print(f"[green]✓[/] synthetic {what} written to [bold]{out_dir}[/]")
        if summary:
            for k, v in summary.items():
                console.print(f"  {k}: {v:,}" if isinstance(v, int) else f"  {k}: {v}")

    @app.command()
    def validate(
        data: Path = typer.Argument(..., help="Database folder (Parquet tables or CSV in UTF-8/CP932)."),
        as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON on stdout."),
        encoding: Optional[str] = typer.Option(None, "--encoding", help="CSV encoding (utf-8 or cp932); detected when omitted."),
        memory_limit: Optional[str] = typer.Option(None, "--memory-limit", help="DuckDB's memory limit, e.g. 6GB (default: $HOSPSTUDY_MEMORY_LIMIT or 2GB); past it DuckDB spills to a temporary folder ($TMPDIR)."),
    ):
        """Check a database against the data model. Exit 0 clean, 1 errors, 2 unusable input."""
        from hospstudy.data.validate import validate_database

        report = validate_database(data, encoding=encoding, memory_limit=memory_limit)
        if as_json:
            out.print_json(json.dumps(report.to_dict()))
        else:
            report.render(console)
        raise typer.Exit(report.exit_code)
