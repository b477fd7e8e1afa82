"""Residents in the store: the atomic bulk import (upsert by E.164 phone) and listings.

`import_residents` consumes a stream of normalised rows (any objects with the `ResidentInput` attributes,
e.g. `campaigns.contacts.ContactRow`) inside ONE transaction: a crash, Ctrl-C or kill -9 at any moment
leaves the store exactly as it was. Rows are written in batches with one upsert statement each
(INSERT ... ON CONFLICT (phone) DO UPDATE), so duplicates inside the file and against stored residents
merge into one row: non-empty fields of the newer row win, empty ones keep what was stored, tags are
united.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from sqlalchemy import Connection, Table, case, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from results.models import AuditLog, Resident, utcnow
from results.store import Store

log = logging.getLogger(__name__)

__all__ = [
    "ImportSummary",
    "ResidentInput",
    "count_residents",
    "import_residents",
    "list_residents",
    "record_audit",
]

BATCH_SIZE = 2000
SOURCE_FILE_MAX = 300


class ResidentInput(Protocol):
    """What `import_residents` reads from each row (campaigns.contacts.ContactRow has these)."""

    @property
    def phone(self) -> str: ...  # E.164
    @property
    def name(self) -> str: ...
    @property
    def community(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def national_id(self) -> str | None: ...
    @property
    def arrival_date(self) -> dt.date | None: ...
    @property
    def note(self) -> str: ...
    @property
    def tags(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class ImportSummary:
    """What one import did. `imported`: new residents; `updated`: residents that were already stored;
    `duplicates`: later rows of the file with a phone seen earlier in the same file (merged);
    `rejected`: rows the reader refused."""

    imported: int
    updated: int
    duplicates: int
    rejected: int
    source_file: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _upsert_statement(table: Table, dialect: str, *, source_file: str, now: dt.datetime) -> Any:
    """INSERT ... ON CONFLICT (phone) DO UPDATE with the merge rules; the same source and time on every row."""
    if dialect == "postgresql":
        ins: Any = postgresql.insert(table)
    elif dialect == "sqlite":
        ins = sqlite.insert(table)
    else:  # pragma: no cover - Store only opens these two
        raise ValueError(f"residents import does not support the {dialect!r} database")
    ins = ins.values(source_file=source_file, created_at=now, updated_at=now)
    ex = ins.excluded
    c = table.c

    def keep_if_empty(col: str) -> Any:
        return case((ex[col] == "", c[col]), else_=ex[col])

    return ins.on_conflict_do_update(
        index_elements=[c.phone],
        set_={
            "name": keep_if_empty("name"),
            "community": keep_if_empty("community"),
            "address": keep_if_empty("address"),
            "note": keep_if_empty("note"),
            "national_id": func.coalesce(ex.national_id, c.national_id),
            "arrival_date": func.coalesce(ex.arrival_date, c.arrival_date),
            "tags": ex.tags,
            "source_file": ex.source_file,
            "updated_at": ex.updated_at,
        },
    )


_ROW_KEYS = ("phone", "name", "community", "address", "national_id", "arrival_date", "note", "tags")


class _CompiledUpsert:
    """The upsert compiled once, its rows handed to the driver's executemany.

    Values go through the same per-dialect type processors SQLAlchemy would apply (dates, JSON, UTC times),
    but without SQLAlchemy's per-row parameter building, which was most of the import's time.
    """

    def __init__(self, stmt: Any, dialect: Any) -> None:
        compiled = stmt.compile(dialect=dialect, column_keys=list(_ROW_KEYS), for_executemany=True)
        self.sql = str(compiled)
        procs: dict[str, Callable[[Any], Any] | None] = {
            key: bind.type.dialect_impl(dialect).bind_processor(dialect) for key, bind in compiled.binds.items()
        }
        consts: dict[str, Any] = {}
        for key, value in compiled.construct_params(dict.fromkeys(_ROW_KEYS)).items():
            if key not in _ROW_KEYS:
                proc = procs.get(key)
                consts[key] = proc(value) if proc is not None else value
        order: list[str] | None = list(compiled.positiontup) if compiled.positiontup is not None else None
        self._order = order
        self._consts = consts
        self._template = [consts.get(k) for k in order] if order is not None else []
        keys = order if order is not None else list(_ROW_KEYS)
        self._slots = [(i, k, procs.get(k)) for i, k in enumerate(keys) if k in _ROW_KEYS]

    def params(self, rows: Iterable[dict[str, Any]]) -> list[Any]:
        out: list[Any] = []
        if self._order is not None:  # positional paramstyle (sqlite: qmark)
            for r in rows:
                t = self._template.copy()
                for i, k, proc in self._slots:
                    t[i] = proc(r[k]) if proc is not None else r[k]
                out.append(tuple(t))
        else:  # named paramstyle (psycopg: pyformat)
            for r in rows:
                d = dict(self._consts)
                for _, k, proc in self._slots:
                    d[k] = proc(r[k]) if proc is not None else r[k]
                out.append(d)
        return out

    def execute(self, conn: Connection, rows: Iterable[dict[str, Any]]) -> None:
        conn.exec_driver_sql(self.sql, self.params(rows))


def _merge(into: dict[str, Any], row: dict[str, Any]) -> None:
    """A later row of the same phone inside one batch: its non-empty fields win, tags unite."""
    for key in ("name", "community", "address", "note"):
        if row[key]:
            into[key] = row[key]
    for key in ("national_id", "arrival_date"):
        if row[key] is not None:
            into[key] = row[key]
    into["tags"] = row["tags"]


def import_residents(
    store: Store,
    rows: Iterable[ResidentInput],
    *,
    source_file: str,
    default_community: str = "",
    actor: str = "",
    rejected: Callable[[], int] | None = None,
    progress: Callable[[int], None] | None = None,
    batch_size: int = BATCH_SIZE,
) -> ImportSummary:
    """Upsert `rows` by phone in one transaction and write an audit_log row; all or nothing.

    Args:
        store: the results store.
        rows: normalised rows (phone in E.164); consumed once, as a stream.
        source_file: recorded on every row written and in the audit log (long paths keep their end).
        default_community: the community of new residents whose rows name none (stored residents and
            earlier rows of the same phone keep theirs).
        actor: who imported (recorded in the audit log).
        rejected: called once after `rows` is exhausted, inside the transaction; returns how many rows the
            reader rejected. If it raises (e.g. the rejects file cannot be completed), nothing is imported.
        progress: called after every batch with the number of rows consumed so far.
        batch_size: rows per upsert statement.

    Returns:
        The counts of new, updated and merged rows.
    """
    table: Table = Resident.__table__  # type: ignore[assignment]
    source = source_file[-SOURCE_FILE_MAX:]
    now = utcnow()
    upsert = _CompiledUpsert(
        _upsert_statement(table, store.dialect, source_file=source, now=now), store.engine.dialect
    )
    imported = updated = duplicates = consumed = batches = 0
    with store.engine.connect() as conn, conn.begin():
        _lock_for_import(conn)
        known: dict[str, tuple[str, ...]] = {}
        for phone, tags in conn.execute(select(table.c.phone, table.c.tags)):
            known[phone] = tuple(tags or ())
        stored = frozenset(known)
        seen: set[str] = set()
        flushed: set[str] = set()
        batch: dict[str, dict[str, Any]] = {}

        def flush() -> None:
            nonlocal batches
            if batch:
                if default_community:
                    # The default only fills the community of residents that are new to the store; a stored
                    # or earlier row's community is kept (an empty value keeps it, see the upsert).
                    for phone, v in batch.items():
                        if not v["community"] and phone not in stored and phone not in flushed:
                            v["community"] = default_community
                flushed.update(batch)
                upsert.execute(conn, batch.values())
                batches += 1
                log.debug("residents import: batch %d written (%d rows, %d consumed)", batches, len(batch), consumed)
                batch.clear()
            if progress is not None:
                progress(consumed)

        for r in rows:
            consumed += 1
            phone = r.phone
            if phone in seen:
                duplicates += 1
            else:
                seen.add(phone)
                if phone in stored:
                    updated += 1
                else:
                    imported += 1
            old_tags = known.get(phone, ())
            tags = old_tags + tuple(t for t in r.tags if t not in old_tags) if r.tags else old_tags
            known[phone] = tags
            values = {
                "phone": phone,
                "name": r.name,
                "community": r.community,
                "address": r.address,
                "national_id": r.national_id,
                "arrival_date": r.arrival_date,
                "note": r.note,
                "tags": list(tags),
            }
            pending = batch.get(phone)
            if pending is None:
                batch[phone] = values
            else:
                _merge(pending, values)
            if len(batch) >= batch_size:
                flush()
        flush()
        n_rejected = rejected() if rejected is not None else 0
        summary = ImportSummary(imported, updated, duplicates, n_rejected, source)
        conn.execute(
            insert(AuditLog),
            {"at": now, "actor": actor, "action": "residents.import", "details": summary.as_dict()},
        )
    log.info(
        "imported %s: %d new, %d updated, %d duplicates merged, %d rejected",
        source, imported, updated, duplicates, n_rejected,
    )
    return summary


def _lock_for_import(conn: Connection) -> None:
    """Take the write lock up front so no other writer slips in between reading phones and writing."""
    if conn.dialect.name == "sqlite":
        # pysqlite only begins a transaction before DML; BEGIN IMMEDIATE makes the reads part of it.
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    elif conn.dialect.name == "postgresql":
        # Blocks concurrent writers of residents (not readers) until this import commits or rolls back.
        conn.exec_driver_sql("LOCK TABLE residents IN SHARE ROW EXCLUSIVE MODE")


def list_residents(store: Store, community: str | None = None, limit: int | None = None) -> list[Resident]:
    """Stored residents, by community then id; optionally one community's, at most `limit`."""
    q = select(Resident).order_by(Resident.community, Resident.id)
    if community is not None:
        q = q.where(Resident.community == community)
    if limit is not None:
        q = q.limit(limit)
    with store.session() as s:
        return list(s.scalars(q))


def count_residents(store: Store, community: str | None = None) -> int:
    q = select(func.count()).select_from(Resident)
    if community is not None:
        q = q.where(Resident.community == community)
    with store.session() as s:
        return int(s.scalar(q) or 0)


def record_audit(store: Store, action: str, *, actor: str = "", details: dict[str, Any] | None = None) -> None:
    """Append one audit_log row (e.g. `residents.list_unmasked` when staff show phones in clear)."""
    with store.session() as s:
        s.add(AuditLog(action=action, actor=actor, details=dict(details or {})))
    log.info("audit %s by %s", action, actor or "-")


def list_communities(store: Store) -> list[str]:
    """The communities of stored residents (for the campaign form)."""
    with store.session() as s:
        return sorted(c for (c,) in s.execute(select(Resident.community).distinct()) if c)


def list_source_files(store: Store, limit: int = 200) -> list[str]:
    """The file names residents were imported from, newest import first."""
    with store.session() as s:
        rows = s.execute(
            select(Resident.source_file, func.max(Resident.updated_at).label("t"))
            .group_by(Resident.source_file).order_by(func.max(Resident.updated_at).desc()).limit(limit)
        )
        return [f for f, _ in rows if f]
