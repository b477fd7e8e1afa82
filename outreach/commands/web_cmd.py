"""`outreach serve` (the web console) and `outreach users add|list`."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from outreach.config import DatabaseConfig
from outreach.context import AppContext, fail, get_ctx
from outreach.services import ServiceError

users_app = typer.Typer(help="Accounts of the web console.", no_args_is_help=True)


def register(main: typer.Typer) -> None:
    main.command("serve")(serve)


def serve(
    ctx: typer.Context,
    host: str | None = typer.Option(None, "--host", help="Address to listen on (default: web.host, 127.0.0.1)."),
    port: int | None = typer.Option(None, "--port", min=0, max=65535, help="Port (default: web.port, 8320)."),
    proxy: str = typer.Option("127.0.0.1", "--trust-proxy", help="Addresses of reverse proxies whose X-Forwarded-Proto is believed (TLS → Secure cookies)."),
) -> None:
    """Run the web console for hotline staff and community workers (Ctrl-C stops it)."""
    import uvicorn

    from outreach.web.app import create_app

    app_ctx = get_ctx(ctx)
    notice = choose_store(app_ctx)
    cfg = app_ctx.config()
    app = create_app(cfg, app_ctx.store(create=True))
    h, p = host or cfg.web.host, cfg.web.port if port is None else port
    if notice:
        typer.echo(notice, err=True)
    typer.echo(f"outreach web console on http://{h}:{p}/ (Ctrl-C stops it)", err=True)
    uvicorn.run(app, host=h, port=p, proxy_headers=True, forwarded_allow_ips=proxy, log_level="warning",
                access_log=False)


DEMO_STORE = Path("demo") / "outreach.db"  # where `make demo` (`outreach demo`) leaves its store


def choose_store(app_ctx: AppContext) -> str | None:
    """Which store `outreach serve` opens when none was chosen (no --db, database.url left at the built-in
    ./var/outreach.db), and a line saying so. Right after `make demo`, before any real store exists, that
    is the demo's store (demo/outreach.db, when it holds only demo data). When a real store exists, it is
    served, and the line names the --db that opens the demo instead. Returns None when a store was chosen."""
    from results.campaigns import non_demo_data
    from results.store import sqlite_path

    cfg = app_ctx.config()
    default = cfg.database.url
    if app_ctx.db_url or default != DatabaseConfig().url:
        return None
    demo = DEMO_STORE
    demo_url = f"sqlite:///{demo}"
    if not demo.is_file() or non_demo_data(demo) is not None:
        if not app_ctx.store_exists():
            return (f"no store at {sqlite_path(default)} yet: an empty one is created (add a login with "
                    "`outreach users add NAME --role admin`); `make demo` makes a demo store to look at")
        return None
    if app_ctx.store_exists():
        return (f"serving the store {sqlite_path(default)}; the demo's store is {demo}: "
                f"`outreach --db {demo_url} serve` opens it")
    app_ctx.use_store(demo_url)
    return (f"serving the demo store {demo} (no store at {sqlite_path(default)} yet); the demo's logins were "
            f"printed by `make demo`. Another store: `outreach --db URL serve` or database.url in config.yaml")


@users_app.command("add")
def add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Login name."),
    role: str = typer.Option(..., "--role", help="admin | staff | worker"),
    community: list[str] = typer.Option([], "--community", help="A worker's community (repeatable)."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from the first line of stdin."),
    reset: bool = typer.Option(False, "--reset", help="Change an existing account (role, communities, password); logs it out."),
) -> None:
    """Create a web console account; the password is asked for (hidden) or read from stdin."""
    from outreach.services.accounts import add_user

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    try:
        user = add_user(get_ctx(ctx).store(create=True), name, role=role, communities=community, password=password,
                        actor="cli", replace=reset)
    except ServiceError as exc:
        fail(str(exc), code=exc.code)
        return
    scope = f" for {', '.join(user.communities)}" if user.communities else ""
    print(f"{'updated' if reset else 'created'} {user.role} account {user.name!r}{scope}")


@users_app.command("list")
def list_users(ctx: typer.Context) -> None:
    """List the accounts (name, role, communities)."""
    from results.accounts import list_users as db_list

    for u in db_list(get_ctx(ctx).store()):
        print(f"{u.name}\t{u.role}\t{','.join(u.communities)}")
