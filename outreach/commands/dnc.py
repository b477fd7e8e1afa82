"""`outreach dnc list|add|remove`: the do-not-call list (numbers the robot never calls), audited."""

from __future__ import annotations

import getpass
import json

import typer

from campaigns.contacts import InvalidValue, normalize_phone
from common.masking import mask_phone
from outreach.context import fail, get_ctx
from results.donotcall import SOURCE_LABELS, add_do_not_call_numbers, list_do_not_call, remove_do_not_call
from results.limits import REASON_MAX, field_problem_zh

app = typer.Typer(help="Do-not-call list: numbers the robot never calls again (every change is audited).",
                  no_args_is_help=True)


def _actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def _phone(raw: str) -> str:
    try:
        return normalize_phone(raw)
    except InvalidValue as exc:
        fail(f"--phone {raw!r}: not a usable phone number ({exc})")
        raise  # unreachable: fail() exits


def _reason(reason: str, *, required: bool) -> str:
    """The --reason text as given, or exit 2 with a message naming the option (same limits on every backend)."""
    problem = field_problem_zh("原因（--reason）", reason, REASON_MAX, required=required)
    if problem:
        fail(problem)
    return reason


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    phone: str | None = typer.Option(None, "--phone", help="Only this number."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """List the entries, newest first; numbers are masked."""
    entries = list_do_not_call(get_ctx(ctx).store(), phone=_phone(phone) if phone else None)
    for e in entries:
        when = e.created_at.isoformat(timespec="seconds")
        if as_json:
            print(json.dumps({"phone": mask_phone(e.phone), "source": e.source, "reason": e.reason, "created_at": when},
                             ensure_ascii=False))
        else:
            print(f"{mask_phone(e.phone)}\t{when}\t{SOURCE_LABELS.get(e.source, e.source)}\t{e.reason}")
    if not as_json:
        typer.echo(f"{len(entries)} number(s) on the do-not-call list", err=True)


@app.command("add")
def add_cmd(
    ctx: typer.Context,
    phone: str = typer.Option(..., "--phone", help="The number (any usual form: 138..., +86..., 010-...)."),
    reason: str = typer.Option("工作人员添加", "--reason", help="Why (kept with the entry and in the audit log)."),
) -> None:
    """Put a number on the list: no campaign calls it any more."""
    number = _phone(phone)
    reason = _reason(reason, required=True)
    new = add_do_not_call_numbers(get_ctx(ctx).store(create=True), [number], reason=reason, source="staff", actor=_actor())
    print(f"{'added' if new else 'already listed'}: {mask_phone(number)}")


@app.command("remove")
def remove_cmd(
    ctx: typer.Context,
    phone: str = typer.Option(..., "--phone", help="The number to take off the list."),
    reason: str = typer.Option("", "--reason", help="Why (written to the audit log)."),
) -> None:
    """Take a number off the list (e.g. the resident asked to be called again)."""
    number = _phone(phone)
    reason = _reason(reason, required=False)
    if not remove_do_not_call(get_ctx(ctx).store(), number, actor=_actor(), reason=reason):
        fail(f"{mask_phone(number)} is not on the do-not-call list", code=1)
    print(f"removed: {mask_phone(number)}")
