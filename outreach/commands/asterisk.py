"""`outreach asterisk check`: is the configured Asterisk ready for `outreach run`? One line per problem.

Also the one place that turns the config (`telephony.*`) into the Asterisk backend's settings, used by
`outreach run` (outreach.commands.campaign.build_telephony) and by the check.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import socket
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import typer

from dialer.asterisk.ami import AmiAuthError, AmiClient, AmiDisconnected, AmiError, AmiSettings
from dialer.asterisk.audiosocket import Limits
from dialer.asterisk.backend import AsteriskSettings, AsteriskTelephony, InboundHandler, TrunkRoute
from dialer.base import TelephonyConfigError
from outreach.config import Config
from outreach.context import get_ctx

app = typer.Typer(help="Asterisk: check the AMI login, dialplan contexts and the AudioSocket address.",
                  no_args_is_help=True)

# AMI actions the robot uses; the manager.conf user must be allowed each (ListCommands shows what is).
NEEDED_ACTIONS = ("Originate", "Hangup", "Redirect", "CoreShowChannels", "ShowDialPlan", "Ping")


def ami_settings(cfg: Config) -> AmiSettings:
    a = cfg.telephony.ami
    secret = a.secret.get_secret_value() if a.secret is not None else ""
    return AmiSettings(
        host=a.host, port=a.port, username=a.username, secret=secret, action_timeout_s=a.action_timeout_s,
        ping_interval_s=a.ping_interval_s, ping_timeout_s=a.ping_timeout_s, backoff_initial_s=a.reconnect_s,
    )


def trunk_routes(cfg: Config) -> dict[str, TrunkRoute]:
    """The trunks calls may go out on (`telephony.trunks`: name, channel pattern, limits). The line limit
    is also a hard stop in the backend; admission (shared by every campaign and worker) keeps under it."""
    return {t.name: TrunkRoute(t.name, t.channel, t.max_channels) for t in cfg.telephony.trunks}


def asterisk_settings(cfg: Config) -> AsteriskSettings:
    t = cfg.telephony
    if t.ami.secret is None or not t.ami.secret.get_secret_value():
        raise TelephonyConfigError(
            "telephony.backend is asterisk but the AMI secret is not set: export OUTREACH_TELEPHONY__AMI__SECRET "
            "(the secret of the manager.conf user telephony.ami.username)"
        )
    return AsteriskSettings(
        ami=ami_settings(cfg), audiosocket_host=t.audiosocket.listen_host, audiosocket_port=t.audiosocket.listen_port,
        audiosocket_advertise_host=t.audiosocket.advertise_host,
        trunks=trunk_routes(cfg), robot_context=t.asterisk.robot_context, robot_exten=t.asterisk.robot_exten,
        human_context=t.asterisk.human_queue.context, human_exten=t.asterisk.human_queue.exten,
        limits=Limits(stall_s=t.audiosocket.stall_s),
    )


def make_asterisk(cfg: Config, *, on_inbound: InboundHandler | None = None) -> AsteriskTelephony:
    """The backend for `outreach run`: it keeps running while Asterisk is unreachable (the breaker pauses
    dialing until AMI is back); a refused AMI secret stops it at start."""
    settings = dataclasses.replace(asterisk_settings(cfg), start_wait=False)
    return AsteriskTelephony(settings, on_inbound=on_inbound if cfg.telephony.asterisk.inbound else None)


def human_queue_open(cfg: Config, now: dt.datetime | None = None) -> bool:
    """Whether the human queue is configured and staffed now (hours in campaign.timezone)."""
    q = cfg.telephony.asterisk.human_queue
    if not q.enabled:
        return False
    local = (now or dt.datetime.now(dt.UTC)).astimezone(ZoneInfo(cfg.campaign.timezone))
    hm = local.strftime("%H:%M")
    for span in q.hours:
        start, _, end = span.partition("-")
        if start.strip() <= hm < end.strip():
            return True
    return False


# ----------------------------------------------------------------------------- the check


@dataclass
class CheckReport:
    ok: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": not self.problems, "passed": self.ok, "problems": self.problems}


def _dialplan_targets(items: list[Any]) -> list[str]:
    return [str(m.appdata) for m in items if getattr(m, "event", "") == "ListDialplan"
            and str(getattr(m, "application", "")).lower() == "audiosocket"]


async def run_check(cfg: Config) -> CheckReport:
    rep = CheckReport()
    t = cfg.telephony
    if t.backend != "asterisk":
        rep.problems.append(f"telephony.backend is {t.backend!r}: set it to 'asterisk' to dial through Asterisk")
    try:
        settings = asterisk_settings(cfg)
    except TelephonyConfigError as exc:
        rep.problems.append(str(exc))
        return rep
    try:
        for route in settings.trunks.values():
            route.dial_string("+8613800138000")
        rep.ok.append("trunk patterns " + ", ".join(f"{r.name}: {r.channel!r}" for r in settings.trunks.values()))
    except TelephonyConfigError as exc:
        rep.problems.append(str(exc))
    client = AmiClient(settings.ami)
    try:
        await client.start()
    except AmiAuthError as exc:
        rep.problems.append(f"AMI login: {exc} (check manager.conf and OUTREACH_TELEPHONY__AMI__SECRET)")
        await client.close()
        return rep
    except AmiDisconnected as exc:
        rep.problems.append(f"AMI: {exc} (is Asterisk running, manager.conf enabled, the port open to this host?)")
        await client.close()
        return rep
    try:
        rep.ok.append(f"AMI login as {settings.ami.username} at {settings.ami.host}:{settings.ami.port}")
        await _check_permissions(client, rep)
        contexts = [(t.asterisk.robot_context, "robot context (outbound calls)")]
        if t.asterisk.inbound:
            contexts.append(("outreach-inbound", "inbound context (residents calling back)"))
        if t.asterisk.human_queue.enabled:
            contexts.append((t.asterisk.human_queue.context, "human queue context"))
        targets: list[str] = []
        for name, what in contexts:
            try:
                items = await client.send({"Action": "ShowDialPlan", "Context": name}, wait_s=10)
            except AmiError as exc:
                rep.problems.append(f"dialplan: {what} {name!r} not found: {exc}")
                continue
            items = items if isinstance(items, list) else [items]
            rep.ok.append(f"dialplan: {what} {name!r}")
            if name != t.asterisk.human_queue.context:
                found = _dialplan_targets(items)
                if not found:
                    rep.problems.append(f"dialplan: context {name!r} never runs AudioSocket(...)")
                targets += found
        _check_audiosocket(cfg, targets, rep)
    finally:
        await client.close()
    return rep


async def _check_permissions(client: AmiClient, rep: CheckReport) -> None:
    try:
        reply = await client.send({"Action": "ListCommands"}, wait_s=10)
    except AmiError as exc:
        rep.problems.append(f"AMI: cannot list the actions this user may run: {exc}")
        return
    allowed = {k.lower() for k in dict(reply)}
    missing = [a for a in NEEDED_ACTIONS if a.lower() not in allowed]
    if missing:
        rep.problems.append(
            f"AMI user may not run {', '.join(missing)}: give it write = originate,call,reporting in manager.conf"
        )
    else:
        rep.ok.append(f"AMI permissions: {', '.join(NEEDED_ACTIONS)}")


PER_CALL_ADDRESS = "${AUDIOSOCKET_ADDR}"  # the robot context may take the address each Originate carries


def _check_audiosocket(cfg: Config, targets: list[str], rep: CheckReport) -> None:
    a = cfg.telephony.audiosocket
    want = f"{a.advertise_host}:{a.listen_port}"
    fixed = [d.rpartition(",")[2].strip() for d in targets]
    for addr in fixed:
        if addr not in (want, PER_CALL_ADDRESS):
            rep.problems.append(
                f"dialplan: AudioSocket goes to {addr!r} but the robot listens at {want!r} "
                f"(telephony.audiosocket.advertise_host / listen_port; or write {PER_CALL_ADDRESS} for the "
                "address each Originate carries)"
            )
    if fixed and all(addr in (want, PER_CALL_ADDRESS) for addr in fixed):
        shown = dict.fromkeys(want if addr == want else f"{PER_CALL_ADDRESS} (the placing worker's, {want} here)"
                              for addr in fixed)
        rep.ok.append(f"dialplan: AudioSocket target {', '.join(shown)}")
    # Reachable: the running robot accepts connections there; or, when it is not running, we can listen there.
    try:
        with socket.create_connection((a.advertise_host, a.listen_port), timeout=3):
            rep.ok.append(f"AudioSocket {want}: accepting connections (the robot is running)")
            return
    except OSError:
        pass
    try:
        with socket.create_server((a.listen_host, a.listen_port)):
            rep.ok.append(f"AudioSocket {a.listen_host}:{a.listen_port}: free to listen on (start `outreach run`)")
    except OSError as exc:
        rep.problems.append(f"AudioSocket {a.listen_host}:{a.listen_port}: cannot listen ({exc.strerror})")


@app.command("check")
def check(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Log in to AMI, check permissions, the robot/inbound/human contexts and the AudioSocket address."""
    cfg = get_ctx(ctx).config()
    rep = asyncio.run(run_check(cfg))
    if as_json:
        typer.echo(json.dumps(rep.as_dict(), ensure_ascii=False))
    else:
        for line in rep.ok:
            typer.echo(f"ok       {line}")
        for line in rep.problems:
            typer.echo(f"PROBLEM  {line}")
        typer.echo("Asterisk is ready" if not rep.problems else f"{len(rep.problems)} problem(s)")
    raise typer.Exit(0 if not rep.problems else 1)
