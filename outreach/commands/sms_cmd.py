"""`outreach sms preview|send-due|status|webhooks`: SMS reminders for operators (docs/sms.md)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import typer

from outreach.context import fail, get_ctx

app = typer.Typer(help="SMS reminders: preview a template, send what is due, show the state.", no_args_is_help=True)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@app.command("preview")
def preview(
    ctx: typer.Context,
    template: str = typer.Option("second_test_reminder", "--template", help="Template name (sms.templates)."),
    phone: str | None = typer.Option(None, "--phone", help="Render for the stored resident with this number."),
    name: str = typer.Option("张三", "--name", help="Resident name when no --phone is given."),
    due: str | None = typer.Option(None, "--due-date", help="Due date YYYY-MM-DD (default: today)."),
) -> None:
    """Render a template for a resident and count its length as the network does (UCS-2: 70 characters
    in one message, 67 per part of a long one, the 【signature】 included)."""
    from campaigns.reminders import render
    from outreach.sms_wiring import reminder_settings
    from sms.text import TemplateError

    app_ctx = get_ctx(ctx)
    cfg = app_ctx.config()
    settings = reminder_settings(cfg)
    try:
        due_date = dt.date.fromisoformat(due) if due else dt.date.today()
    except ValueError:
        fail(f"--due-date {due!r}: not a date YYYY-MM-DD")
        return
    if phone:
        from campaigns.contacts import InvalidValue, normalize_phone
        from results.sms import resident_for_preview

        try:
            e164 = normalize_phone(phone)
        except InvalidValue as exc:
            fail(f"--phone {phone!r}: {exc}")
            return
        found = resident_for_preview(app_ctx.store(), e164)
        if found is None:
            fail(f"--phone {phone!r}: no stored resident has this number")
            return
        name, _, arrival = found
        if arrival and not due:
            due_date = arrival + dt.timedelta(days=settings.second_test_after_days)
    try:
        r = render(settings, template, name=name, due_date=due_date)
    except TemplateError as exc:
        fail(str(exc))
        return
    print(r.body)
    print(f"{r.length.units} characters ({r.length.encoding}), {r.length.parts} part{'s' if r.length.parts > 1 else ''}")
    if r.params:
        print("template params: " + json.dumps(r.params, ensure_ascii=False))
    if r.length.parts > 1:
        typer.echo(f"warning: the text takes {r.length.parts} messages (each part is billed); keep it within "
                   "70 characters including the signature", err=True)


@app.command("send-due")
def send_due(
    ctx: typer.Context,
    limit: int | None = typer.Option(None, "--limit", min=1, help="Send at most this many now."),
    plan: bool = typer.Option(True, "--plan/--no-plan", help="First plan the reminders that are needed."),
) -> None:
    """Plan the needed reminders and ring-back texts, then send what is due now (inside the SMS window,
    at the configured rate, once per message)."""
    from campaigns.reminders import make_dispatcher
    from campaigns.reminders import plan as plan_texts
    from outreach.sms_wiring import build_gateway, reminder_settings
    from sms.dispatcher import DispatchPaused
    from sms.types import SmsError

    app_ctx = get_ctx(ctx)
    cfg = app_ctx.config()
    store = app_ctx.store()
    settings = reminder_settings(cfg)
    try:
        gateway = build_gateway(cfg)
    except SmsError as exc:
        fail(f"sms.gateway {cfg.sms.gateway}: {exc.message}")
        return
    if plan:
        p = plan_texts(store, settings, _now())
        print(f"planned {p.second_test} second-test reminders and {p.ring_back} ring-back texts"
              + (f" ({p.over_one_part} longer than one message)" if p.over_one_part else ""))
    d = make_dispatcher(store, gateway, settings)
    try:
        stats = asyncio.run(d.run_once(limit=limit))
    except DispatchPaused as exc:
        fail(str(exc), code=1)
        return
    finally:
        d.close()
    print(f"{gateway.name}: sent {stats.sent}, failed {stats.failed}, retry later {stats.requeued}, "
          f"unclear {stats.unresolved}; reconciled {stats.reconciled_found} found, {stats.reconciled_resend} to resend")
    if stats.window_closed:
        print(f"the SMS window {settings.window} ({settings.timezone}) is closed: the rest waits for it")


@app.command("status")
def status(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Messages by kind and state, error codes, replies."""
    from results.sms import sms_status
    from sms.codes import explain

    st = sms_status(get_ctx(ctx).store())
    if as_json:
        print(json.dumps(st, ensure_ascii=False))
        return
    if not st["messages"]:
        print("no SMS planned yet")
    for kind, states in sorted(st["messages"].items()):
        print(f"{kind}: " + ", ".join(f"{k} {v}" for k, v in sorted(states.items())))
    for code, n in sorted(st["errors"].items()):
        print(f"  error {code}: {n} ({explain(code)})")
    if st["replies"]:
        print("replies: " + ", ".join(f"{k} {v}" for k, v in sorted(st["replies"].items())))
    if st["sending"]:
        print(f"{st['sending']} left 'sending' (checked with the provider on the next run)")
    if st["next_scheduled"]:
        print(f"next due: {st['next_scheduled']}")


@app.command("webhooks")
def webhooks(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8321, "--port", min=0, max=65535),
    log_file: Path | None = typer.Option(None, "--access-log", help="Append HTTP access lines here."),
) -> None:
    """Serve only the delivery-receipt and reply endpoints (`outreach serve` mounts the same router)."""
    import uvicorn

    from outreach.sms_wiring import sms_app

    app_ctx = get_ctx(ctx)
    typer.echo(f"SMS webhooks on http://{host}:{port}/sms/ (Ctrl-C stops)", err=True)
    uvicorn.run(sms_app(app_ctx.config(), app_ctx.store()), host=host, port=port, log_level="info",
                access_log=log_file is not None)
