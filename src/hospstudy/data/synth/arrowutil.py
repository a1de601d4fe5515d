"""Fast, deterministic construction of Arrow columns and Parquet files for the generator."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hospstudy.data.schema import arrow_schema

EPOCH = dt.date(1970, 1, 1)
ROW_GROUP_SIZE = 1_000_000


def day_number(d: dt.date) -> int:
    """Days since 1970-01-01 (Arrow date32)."""
    return (d - EPOCH).days


def fy_start(fy: int) -> int:
    return day_number(dt.date(fy, 4, 1))


def fy_length(fy: int) -> int:
    return day_number(dt.date(fy + 1, 4, 1)) - day_number(dt.date(fy, 4, 1))


def fixed_width_strings(matrix: np.ndarray) -> pa.Array:
    """A string array from an (n, width) uint8 matrix of ASCII bytes, without Python objects."""
    n, width = matrix.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int64)
    if offsets[-1] < 2**31:
        return pa.StringArray.from_buffers(n, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(np.ascontiguousarray(matrix)))
    large = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(matrix)))
    return large.cast(pa.string())


def id_strings(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """``prefix`` followed by ``numbers`` zero-padded to ``width`` digits (e.g. 'A2012300000017')."""
    x = np.asarray(numbers, dtype=np.int64).copy()
    if len(x) and (x.min() < 0 or x.max() >= 10**width):
        raise ValueError(f"identifier numbers do not fit {width} digits")
    n = len(x)
    pre = np.frombuffer(prefix.encode("ascii"), np.uint8)
    mat = np.empty((n, len(pre) + width), np.uint8)
    mat[:, : len(pre)] = pre
    for j in range(len(pre) + width - 1, len(pre) - 1, -1):
        mat[:, j] = 48 + (x % 10)
        x //= 10
    return fixed_width_strings(mat)


_VOCAB_CACHE: dict = {}


def _vocab_matrix(vocab: tuple[str, ...]):
    got = _VOCAB_CACHE.get(vocab)
    if got is None:
        enc = [v.encode("utf-8") for v in vocab]
        width = max((len(e) for e in enc), default=0) or 1
        mat = np.zeros((len(enc), width), np.uint8)
        for i, e in enumerate(enc):
            mat[i, : len(e)] = np.frombuffer(e, np.uint8)
        got = (mat, np.array([len(e) for e in enc], np.int64))
        _VOCAB_CACHE[vocab] = got
    return got


def vocab_take(vocab, idx: np.ndarray) -> pa.Array:
    """Strings of a small vocabulary by index, built from byte arrays (much faster than
    ``Array.take`` on millions of rows, and no Python objects)."""
    mat, lengths = _vocab_matrix(tuple(vocab))
    idx = np.asarray(idx, dtype=np.int64)
    if len(set(lengths.tolist())) == 1:
        return fixed_width_strings(mat[idx])
    flat = np.concatenate([mat[i, : lengths[i]] for i in range(len(lengths))])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    lens = lengths[idx]
    offsets = np.zeros(len(idx) + 1, np.int64)
    np.cumsum(lens, out=offsets[1:])
    pos = np.repeat(starts[idx] - offsets[:-1], lens) + np.arange(offsets[-1])
    data = flat[pos]
    if offsets[-1] >= 2**31:
        return pa.LargeStringArray.from_buffers(len(idx), pa.py_buffer(offsets), pa.py_buffer(data)).cast(pa.string())
    return pa.StringArray.from_buffers(len(idx), pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data))


def vocab_dictionary(vocab, idx: np.ndarray) -> pa.DictionaryArray:
    """A dictionary-encoded column (written to Parquet as plain strings without materialising)."""
    return pa.DictionaryArray.from_arrays(pa.array(np.asarray(idx, dtype=np.int32)), pa.array(list(vocab), pa.string()))


def fixed_matrix(arr: pa.Array) -> np.ndarray:
    """The (n, width) byte matrix of a string array whose values all have the same width."""
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], np.int32)[arr.offset: arr.offset + n + 1]
    data = np.frombuffer(arr.buffers()[2], np.uint8)[offsets[0]: offsets[-1]]
    if n == 0:
        return np.zeros((0, 1), np.uint8)
    width = (offsets[-1] - offsets[0]) // n
    if width * n != offsets[-1] - offsets[0] or arr.null_count:
        raise ValueError("fixed_matrix needs non-null strings of one width")
    return data.reshape(n, width)


def take_fixed(arr: pa.Array, idx: np.ndarray) -> pa.Array:
    """``arr.take(idx)`` for a fixed-width string array (identifiers), via numpy."""
    return fixed_width_strings(fixed_matrix(arr)[np.asarray(idx, dtype=np.int64)])


def with_nulls(arr: pa.Array, null_mask: np.ndarray) -> pa.Array:
    """``arr`` with the rows of ``null_mask`` set to null."""
    if not null_mask.any():
        return arr
    return pc.if_else(pa.array(~null_mask), arr, pa.scalar(None, arr.type))


def dates(days: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(days, dtype=np.int32)).view(pa.date32())


def table(name: str, columns: dict) -> pa.Table:
    """A table with exactly the canonical schema of ``name`` (column order, types, nullability)."""
    schema = arrow_schema(name)
    arrays, fields = [], []
    for field in schema:
        col = columns[field.name]
        if not isinstance(col, (pa.Array, pa.ChunkedArray)):
            col = pa.array(col, type=field.type)
        elif pa.types.is_dictionary(col.type) and col.type.value_type == field.type:
            field = field.with_type(col.type)  # Parquet stores it as the plain value type
        elif col.type != field.type:
            col = col.cast(field.type)
        arrays.append(col)
        fields.append(field)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def concat(tables: list[pa.Table]) -> pa.Table:
    return pa.concat_tables([t for t in tables if t is not None]).combine_chunks()


def write(tbl: pa.Table, path: Path) -> None:
    """Write a Parquet file deterministically: fixed row groups, no timestamps in the metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        tbl,
        path,
        row_group_size=ROW_GROUP_SIZE,
        compression="snappy",
        use_dictionary=True,
        write_statistics=True,
        # Without the Arrow schema in the metadata, dictionary-encoded string columns read
        # back as plain strings: the file's types are exactly the canonical ones.
        store_schema=False,
        dictionary_pagesize_limit=8 << 20,
    )


def concat_arrays(arrays: list[pa.Array]) -> pa.Array:
    arrays = [a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a for a in arrays]
    return arrays[0] if len(arrays) == 1 else pa.concat_arrays(arrays)
