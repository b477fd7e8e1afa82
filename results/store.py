"""Engine, schema migrations and sessions of the results store."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from common.masking import mask_text

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")


class StoreError(RuntimeError):
    """The store cannot be opened or is at the wrong schema version."""


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for another database or an in-memory one)."""
    try:
        u = make_url(url)
    except Exception:
        return None
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database).expanduser()


def _check_sqlite_file(url: str, *, create: bool, create_folder: bool) -> None:
    """A SQLite store's file: its folder must exist (a typo must not create a new store somewhere), it
    must not be a folder, and commands that only read never create it."""
    path = sqlite_path(url)
    if path is None:
        return
    if path.is_dir():
        raise StoreError(f"the store {path} is a folder, not a database file; check --db / database.url")
    if path.exists():
        return
    if not path.parent.is_dir() and not (create and create_folder):
        raise StoreError(
            f"the folder {path.parent} of the store {path.name} does not exist; check --db / database.url "
            "or create the folder first"
        )
    if not create:
        raise StoreError(
            f"no store at {path}: the file does not exist (check --db / database.url; a new store is created by "
            "`outreach db upgrade` or `outreach contacts import`)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """Create an engine for a SQLite or PostgreSQL URL.

    Statement parameters are never shown, neither in logs nor in error messages (they hold phone and ID
    numbers). `echo` logs the statements through the `sqlalchemy.engine` logger, i.e. through the
    application's masking log handlers, never through a handler of SQLAlchemy's own.
    """
    try:
        u = make_url(url)
    except Exception as exc:
        raise StoreError(f"invalid database URL {_shown(url)}: {exc}") from exc
    kwargs: dict[str, Any] = {"hide_parameters": True}
    if u.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"timeout": 30}
    elif u.get_backend_name() == "postgresql":
        if u.drivername == "postgresql":
            u = u.set(drivername="postgresql+psycopg")
        kwargs["pool_pre_ping"] = True
    else:
        raise StoreError(f"unsupported database {u.get_backend_name()!r}: use sqlite:/// or postgresql://")
    if echo:
        logging.getLogger("sqlalchemy.engine").setLevel(logging.INFO)
    try:
        engine = create_engine(u, **kwargs)
    except Exception as exc:  # a missing driver, a bad port or option in the URL
        raise StoreError(f"invalid database URL {_shown(url)}: {exc}") from exc
    if u.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def describe_db_error(exc: BaseException) -> str:
    """A database error for a message: the driver's first line, numbers masked, no SQL and no parameters."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return mask_text(first)


def _shown(url: str) -> str:
    """The URL for messages: its password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return repr(url)


def _alembic_config(engine: Engine) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` (default: the newest) with Alembic."""
    with engine.begin() as conn:
        cfg = _alembic_config(engine)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_alembic_config(create_engine("sqlite://"))).get_current_head()


class Store:
    """The shared store: one engine, a session factory, migrations applied on open."""

    def __init__(
        self, url: str, *, echo: bool = False, migrate: bool = True, create: bool = True,
        create_folder: bool = True,
    ) -> None:
        """Open the store at `url`.

        `create=False` (commands that only read or change existing work): the store must exist and have the
        schema. `create_folder=False`: a SQLite file's folder must exist. A database that has tables but no
        outreach schema is never migrated into. Raises StoreError with a message naming the store.
        """
        self.url = url
        _check_sqlite_file(url, create=create, create_folder=create_folder)
        self.engine = make_engine(url, echo=echo)
        try:
            have = current_revision(self.engine)
            if have is None:
                foreign = [t for t in inspect(self.engine).get_table_names() if t != "alembic_version"]
                if foreign:
                    shown = ", ".join(sorted(foreign)[:5])
                    raise StoreError(
                        f"{_shown(url)} is not an outreach store: it holds other tables ({shown}) and no outreach "
                        "schema; check --db / database.url"
                    )
                if not create:
                    raise StoreError(
                        f"{_shown(url)} has no outreach schema (an empty database); create it with "
                        "`outreach db upgrade`"
                    )
            if migrate:
                upgrade(self.engine)
            else:
                want = head_revision()
                if have != want:
                    raise StoreError(
                        f"database schema is at {have!r}, this version needs {want!r}: run `outreach db upgrade`"
                    )
        except SQLAlchemyError as exc:
            self.engine.dispose()
            raise StoreError(f"cannot open the database {_shown(url)}: {describe_db_error(exc)}") from exc
        except StoreError:
            self.engine.dispose()
            raise
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session inside one transaction: committed on success, rolled back on any error."""
        with self.sessions() as s, s.begin():
            yield s

    def close(self) -> None:
        self.engine.dispose()


# ----------------------------------------------------------------------------- the one retry policy of store writes


def transient_db_error(exc: BaseException) -> bool:
    """A database error worth retrying: the server unreachable or restarting, a lock that timed out."""
    from sqlalchemy.exc import DBAPIError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    if isinstance(exc, OperationalError | PoolTimeout):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def store_retry(attempts: int = 4, *, first_wait_s: float = 0.05, max_wait_s: float = 2.0) -> Any:
    """The retry policy of store operations (common.retry: tenacity): transient errors only, bounded, with
    jittered exponential backoff; the last error is re-raised. Use it off the event loop (it sleeps)."""
    from common.retry import retrying

    return retrying(transient_db_error, attempts=attempts, first_s=first_wait_s, max_s=max_wait_s)
