"""Raw DPC files (Form 1 and the EF integrated file) into the data model: ``hospstudy import-dpc``.

Per-year layouts live as data in :mod:`hospstudy.data.dpc.layouts`; :mod:`.rawfiles` detects and
streams the files, :mod:`.form1`, :mod:`.ef` and :mod:`.facilities` turn each kind into tables,
:mod:`.report` accounts for every line, :func:`import_dpc` runs it all.
"""

from hospstudy.data.dpc.importer import ImportResult, import_dpc

__all__ = ["ImportResult", "import_dpc"]
