"""What every CLI command shares: the loaded config and the store, built once per invocation."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from common.masking import mask_text
from outreach.config import Config, ConfigError, DatabaseConfig, find_default_config, load_config
from outreach.logsetup import add_log_file, setup_logging

if TYPE_CHECKING:  # the store (SQLAlchemy, Alembic) is imported only by commands that use it
    from results.store import Store

log = logging.getLogger(__name__)

EXIT_USAGE = 2


@dataclass
class AppContext:
    config_path: Path | None = None
    db_url: str | None = None
    verbose: bool = False
    _config: Config | None = field(default=None, repr=False)
    _store: Store | None = field(default=None, repr=False)

    def config(self) -> Config:
        if self._config is None:
            path = self.config_path if self.config_path is not None else find_default_config()
            overrides: dict[str, Any] = {}
            if self.db_url:
                overrides["database"] = {"url": self.db_url}
            try:
                self._config = load_config(path, overrides=overrides)
            except ConfigError as exc:
                fail(str(exc))
            self._apply_logging(self._config)
        return self._config

    def _apply_logging(self, cfg: Config) -> None:
        """logging.level and logging.file drive the log file; stderr shows warnings (everything with -v,
        SQL statements with database.echo); logging.unmask_phones turns the masking off everywhere."""
        unmask = cfg.logging.unmask_phones
        stderr_level = logging.DEBUG if self.verbose else logging.INFO if cfg.database.echo else logging.WARNING
        setup_logging(stderr_level, unmask=unmask)
        if cfg.logging.file:
            add_log_file(cfg.logging.file, cfg.logging.level, unmask=unmask)
        if unmask:
            log.warning("logging.unmask_phones is set: phone and ID numbers are logged in clear")

    def store(self, *, create: bool = False) -> Store:
        """The store. Only commands that create one (`db upgrade`, `contacts import`) pass create=True;
        every other command refuses a store that does not exist or has no schema."""
        if self._store is None:
            from results.store import Store, StoreError

            cfg = self.config()
            url = cfg.database.url
            try:
                self._store = Store(
                    url, echo=cfg.database.echo, create=create,
                    # only the built-in default (./var/outreach.db) creates its folder; a typo never does
                    create_folder=url == DatabaseConfig().url,
                )
            except StoreError as exc:
                fail(str(exc))
        return self._store

    def use_store(self, url: str) -> None:
        """Point this invocation at another store before it is opened (`outreach serve` → the demo store)."""
        if self._store is not None:
            raise RuntimeError("the store is already open")
        cfg = self.config()
        self.db_url = url
        self._config = cfg.model_copy(update={"database": cfg.database.model_copy(update={"url": url})})

    def store_exists(self) -> bool:
        """Whether the configured store is there at all (a SQLite file that exists, or any other database):
        for commands whose store is optional, such as `purge`."""
        from results.store import sqlite_path

        path = sqlite_path(self.config().database.url)
        return path is None or path.is_file()

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print a clear error to stderr (numbers masked) and exit with `code` (2 = unusable input)."""
    typer.echo(f"error: {mask_text(message)}", err=True)
    raise typer.Exit(code)


def check_text_options(*checks: tuple[str, str | list[str] | None, int]) -> None:
    """Fail (exit 2) when an option's text cannot be stored (see results.limits.first_problem)."""
    from results.limits import first_problem

    problem = first_problem(*checks)
    if problem:
        fail(problem)


def get_ctx(ctx: typer.Context) -> AppContext:
    obj = ctx.find_root().obj
    if not isinstance(obj, AppContext):
        obj = AppContext()
        ctx.find_root().obj = obj
    return obj
