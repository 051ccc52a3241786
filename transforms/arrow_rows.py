"""Row tuples -> a typed Arrow table in an exact schema (pure, no Beam)."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc


def rows_to_table(rows: list[tuple], schema: pa.Schema, sort_by: str | None = None) -> pa.Table:
    """Builds a table whose columns are ``schema``'s, from tuples in schema order.

    date32 columns take days since the epoch.  Raises ValueError if a non-nullable column
    holds a null or a value does not fit its type.  Rows are sorted by ``sort_by``
    (stable, so equal timestamps keep arrival order).
    """
    columns = list(zip(*rows)) if rows else [[] for _ in schema]
    arrays = []
    for field, values in zip(schema, columns):
        if pa.types.is_date32(field.type):
            arr = pa.array(values, pa.int32()).cast(pa.date32())
        else:
            arr = pa.array(values, field.type)
        if not field.nullable and arr.null_count:
            raise ValueError(f"column {field.name} is not nullable but holds nulls")
        arrays.append(arr)
    table = pa.Table.from_arrays(arrays, schema=schema)
    if sort_by and table.num_rows > 1:
        idx = pc.sort_indices(table[sort_by])   # stable
        table = table.take(idx)
    return table
