"""The shard: what the flush policies cut and the shard writers write (pure, no Beam).

A shard travels as ``(shard_key, value)``.  ``value`` is either

- ``Shard(tokens, table)``: its rows column-wise, an Arrow table in the key's schema, and
  the ack tokens of the messages that hold them (what the columnar parser produces, and
  what ``BatchedFlushPolicy`` cuts from it), or
- a list of ``(token, row_tuple)`` values, one per message (what the per-message parsers
  produce; a token or a row may be ``None``, see ``split_values``).

``as_shard(value, schema, sort_by)`` turns either into a ``Shard`` with its rows sorted
stably by ``sort_by``, so a writer has one thing to write, and ``shard_rows(value)`` gives
the row tuples of either, in the order given (what content-addressed names hash).  Nothing
here knows where tokens come from or how they are acknowledged.
"""
from __future__ import annotations

from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc

from transforms.arrow_rows import rows_to_table


class Shard(NamedTuple):
    """A shard in columnar form.

    ``tokens``: the ack tokens of the messages the shard holds (no ``None``); ``table``:
    the shard's rows in the key's schema, in any order.  A message may hold several rows
    or none, so ``len(tokens)`` need not equal ``table.num_rows``; where the rows are one
    per message (the columnar parser), row ``i`` belongs to ``tokens[i]``.
    """
    tokens: list
    table: pa.Table


def table_rows(table: pa.Table) -> list[tuple]:
    """The table's rows as tuples in column order, with the Python values the per-message
    parsers give (int, float, str, None, lists)."""
    return list(zip(*(col.to_pylist() for col in table.columns)))


def split_values(values) -> tuple[list, list]:
    """``[(token, row), ...]`` -> ``(tokens, rows)``, in order, without the ``None``
    tokens and ``None`` rows (a message that became several rows carries its token on one
    of them only; a message that became no row is ``(token, None)``)."""
    tokens, rows = [], []
    for token, row in values:
        if token is not None:
            tokens.append(token)
        if row is not None:
            rows.append(row)
    return tokens, rows


def shard_rows(value) -> list[tuple]:
    """The row tuples of a shard value (``Shard`` or list of values), in the given order."""
    if type(value) is Shard:
        return table_rows(value.table)
    return split_values(value)[1]


def as_shard(value, schema: pa.Schema, sort_by: str) -> Shard:
    """A shard value as a ``Shard`` whose table is in ``schema`` and sorted stably by
    ``sort_by`` (equal values keep their order).  ValueError if a columnar table is not in
    ``schema`` or a row does not fit it."""
    if type(value) is Shard:
        tokens, table = value
        if not table.schema.equals(schema):
            raise ValueError(f"shard table is not in the key's schema: {table.schema}")
        if table.num_rows > 1:
            table = table.take(pc.sort_indices(table[sort_by]))      # stable
        return Shard(tokens, table)
    tokens, rows = split_values(value)
    return Shard(tokens, rows_to_table(rows, schema, sort_by=sort_by))
