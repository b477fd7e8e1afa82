"""Bulk loading of generated rows into one table, as fast as each database allows (benchmarks fill stores
of millions of rows with it): PostgreSQL COPY, SQLite executemany on the driver."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import JSON

from results.models import Base, UtcDateTime
from results.store import Store


def load_rows(store: Store, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], *,
              batch: int = 20_000) -> int:
    """Insert `rows` (tuples in `columns` order) into `table`; datetimes must be aware (stored as naive UTC),
    JSON columns take Python values. One transaction. Returns the number of rows."""
    t = Base.metadata.tables[table]
    kinds = [t.c[c].type for c in columns]
    json_cols = [i for i, k in enumerate(kinds) if isinstance(k, JSON)]
    time_cols = [i for i, k in enumerate(kinds) if isinstance(k, UtcDateTime)]

    sqlite = store.dialect == "sqlite"

    def prep(row: Sequence[Any]) -> tuple[Any, ...]:
        out = list(row)
        for i in json_cols:
            out[i] = json.dumps(out[i], ensure_ascii=False)
        for i in time_cols:
            if out[i] is not None:
                utc = out[i].astimezone(dt.UTC).replace(tzinfo=None)
                out[i] = utc.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else utc
        return tuple(out)

    n = 0
    raw = store.engine.raw_connection()
    try:
        cur = raw.cursor()
        if store.dialect == "postgresql":
            with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
                for row in rows:
                    cp.write_row(prep(row))
                    n += 1
        else:
            sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
            chunk: list[tuple[Any, ...]] = []
            for row in rows:
                chunk.append(prep(row))
                if len(chunk) >= batch:
                    cur.executemany(sql, chunk)
                    n += len(chunk)
                    chunk.clear()
            if chunk:
                cur.executemany(sql, chunk)
                n += len(chunk)
        raw.commit()
    except BaseException:
        raw.rollback()
        raise
    finally:
        raw.close()
    return n


def analyze(store: Store) -> None:
    """Refresh the planner's statistics after a bulk load."""
    raw = store.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()
