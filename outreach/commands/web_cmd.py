"""`outreach serve` (the web console) and `outreach users add|list`."""

from __future__ import annotations

import sys

import typer

from outreach.context import fail, get_ctx
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
    cfg = app_ctx.config()
    app = create_app(cfg, app_ctx.store(create=True))
    h, p = host or cfg.web.host, cfg.web.port if port is None else port
    typer.echo(f"outreach web console on http://{h}:{p}/ (Ctrl-C stops it)", err=True)
    uvicorn.run(app, host=h, port=p, proxy_headers=True, forwarded_allow_ips=proxy, log_level="warning",
                access_log=False)


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
