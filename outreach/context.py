"""What every CLI command shares: the loaded config and the store, built once per invocation."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from outreach.config import Config, ConfigError, find_default_config, load_config

if TYPE_CHECKING:  # the store (SQLAlchemy, Alembic) is imported only by commands that use it
    from results.store import Store

log = logging.getLogger(__name__)

EXIT_USAGE = 2


@dataclass
class AppContext:
    config_path: Path | None = None
    db_url: str | None = None
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
        assert self._config is not None
        return self._config

    def store(self) -> Store:
        if self._store is None:
            from results.store import Store, StoreError

            try:
                self._store = Store(self.config().database.url, echo=self.config().database.echo)
            except StoreError as exc:
                fail(str(exc))
        assert self._store is not None
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def fail(message: str, code: int = EXIT_USAGE) -> None:
    """Print a clear error to stderr and exit with `code` (2 = unusable input)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def get_ctx(ctx: typer.Context) -> AppContext:
    obj = ctx.find_root().obj
    if not isinstance(obj, AppContext):
        obj = AppContext()
        ctx.find_root().obj = obj
    return obj
