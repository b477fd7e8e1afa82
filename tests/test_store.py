"""The store on SQLite and PostgreSQL: migrations, constraints, UTC times, transactions."""

from __future__ import annotations

import datetime as dt
import socket
import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError

from results.models import Base, DoNotCall, Resident
from results.store import Store, StoreError, current_revision, head_revision


def test_migrations_create_every_table_and_match_the_models(store: Store) -> None:
    names = set(inspect(store.engine).get_table_names())
    assert set(Base.metadata.tables) <= names
    assert current_revision(store.engine) == head_revision()
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models and migrations disagree: {diff}"


def test_phone_is_unique(store: Store) -> None:
    with store.session() as s:
        s.add(Resident(name="张三", phone="+8613800138000"))
    with pytest.raises(IntegrityError), store.session() as s:
        s.add(Resident(name="李四", phone="+8613800138000"))
    with store.session() as s:
        assert s.scalar(select(Resident.name).where(Resident.phone == "+8613800138000")) == "张三"


def test_failed_transaction_leaves_nothing(store: Store) -> None:
    with pytest.raises(RuntimeError), store.session() as s:
        s.add(DoNotCall(phone="+8613800138001", reason="test"))
        s.flush()
        raise RuntimeError("boom")
    with store.session() as s:
        assert s.get(DoNotCall, "+8613800138001") is None


def test_datetimes_round_trip_as_utc(store: Store) -> None:
    shanghai = dt.timezone(dt.timedelta(hours=8))
    when = dt.datetime(2026, 11, 23, 9, 30, tzinfo=shanghai)
    with store.session() as s:
        s.add(DoNotCall(phone="+8613800138002", created_at=when))
    with store.session() as s:
        got = s.get(DoNotCall, "+8613800138002")
        assert got is not None
        assert got.created_at == when and got.created_at.tzinfo == dt.UTC


def test_naive_datetime_is_rejected(store: Store) -> None:
    with pytest.raises(Exception, match="naive datetime"), store.session() as s:
        s.add(DoNotCall(phone="+8613800138003", created_at=dt.datetime(2026, 1, 1)))


def test_bad_url_names_itself() -> None:
    with pytest.raises(StoreError, match="unsupported database"):
        Store("mysql://x@y/z")


def test_unopenable_sqlite_file_is_a_store_error(tmp_path: Path) -> None:
    """Review of issue 3: these gave a SQLAlchemy traceback instead of a message naming the database."""
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StoreError, match=r"the store .*dir\.db is a folder, not a database file"):
        Store(f"sqlite:///{tmp_path / 'dir.db'}")
    (tmp_path / "text.db").write_text("not a database\n" * 100)
    with pytest.raises(StoreError, match=r"cannot open the database sqlite:///.*text\.db: file is not a database"):
        Store(f"sqlite:///{tmp_path / 'text.db'}")
    assert (tmp_path / "text.db").read_text() == "not a database\n" * 100


def test_unreachable_postgres_is_a_store_error_without_the_password() -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StoreError) as exc:
        Store(f"postgresql://outreach:hunter2@127.0.0.1:{port}/outreach")
    msg = str(exc.value)
    assert msg.startswith(f"cannot open the database postgresql://outreach:***@127.0.0.1:{port}/outreach: ")
    assert "hunter2" not in msg


def test_workers_starting_together_may_race_to_write_a_store_fact(store: Store) -> None:
    """Two `outreach run` workers starting at once both mark a new store: neither may crash on the insert."""
    import threading

    from results import campaigns as db

    stores = [Store(store.url, migrate=False) for _ in range(8)]
    barrier = threading.Barrier(len(stores), timeout=30)
    errors: list[BaseException] = []

    def write(other: Store) -> None:
        try:
            barrier.wait()
            db.set_meta(other, "kind", "simulation")
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(other,)) for other in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for other in stores:
        other.close()
    assert errors == []
    assert db.get_meta(store, "kind") == "simulation"


def test_a_missing_folder_or_file_never_creates_a_store_silently(tmp_path: Path) -> None:
    """Issue 11: a typo'd --db path created a new empty store (and its folders)."""
    with pytest.raises(StoreError, match=r"the folder .*nosuch of the store x\.db does not exist"):
        Store(f"sqlite:///{tmp_path / 'nosuch' / 'x.db'}", create_folder=False)
    assert not (tmp_path / "nosuch").exists()
    with pytest.raises(StoreError, match=r"no store at .*new\.db"):
        Store(f"sqlite:///{tmp_path / 'new.db'}", create=False)
    assert not (tmp_path / "new.db").exists()
    Store(f"sqlite:///{tmp_path / 'new.db'}", create_folder=False).close()  # an existing folder: created
    Store(f"sqlite:///{tmp_path / 'new.db'}", create=False).close()  # now it exists with the schema


def test_a_database_without_the_schema_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    with pytest.raises(StoreError, match=r"empty\.db has no outreach schema"):
        Store(f"sqlite:///{empty}", create=False)
    foreign = tmp_path / "foreign.db"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE customers (id INTEGER)")
    con.commit()
    con.close()
    for create in (True, False):
        with pytest.raises(StoreError, match=r"foreign\.db is not an outreach store: it holds other tables \(customers\)"):
            Store(f"sqlite:///{foreign}", create=create)
    tables = {r[0] for r in sqlite3.connect(foreign).execute("select name from sqlite_master")}
    assert tables == {"customers"}
