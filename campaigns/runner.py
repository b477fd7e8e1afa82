"""Runs a dialog session over a text channel: the same engine and NLU as live calls, without audio."""

from __future__ import annotations

import logging

from dialer.base import ListenSpec, Reply, TextChannel
from dialogs.types import (
    DialogSession,
    Dtmf,
    End,
    Event,
    HangUp,
    Listen,
    NoInput,
    Say,
    ScreeningResult,
    Utterance,
)

log = logging.getLogger(__name__)

MAX_EVENTS = 200  # a dialog that needs more events than this is looping


class DialogLoopError(RuntimeError):
    """The dialog neither ended nor asked for input: a script or engine bug."""


def listen_spec(listen: Listen) -> ListenSpec:
    return ListenSpec(
        node=listen.node,
        expect=listen.expect,
        field=listen.field,
        no_input_s=listen.no_input_s,
        hints=listen.hints,
        dtmf=listen.dtmf,
        dtmf_terminator=listen.dtmf_terminator,
    )


def reply_event(reply: Reply) -> Event:
    if reply.kind == "speech":
        return Utterance(reply.text, reply.confidence)
    if reply.kind == "dtmf":
        return Dtmf(reply.text)
    if reply.kind == "no_input":
        return NoInput()
    return HangUp()


async def run_text_dialog(session: DialogSession, channel: TextChannel) -> ScreeningResult:
    """Play the session's prompts on `channel` and feed the replies back until the dialog ends.

    Multi-key entries (e.g. a temperature typed as 37*5#) arrive from the channel as one string and
    are fed to the engine key by key.
    """
    actions = session.start()
    for _ in range(MAX_EVENTS):
        listen: Listen | None = None
        for action in actions:
            if isinstance(action, Say):
                await channel.say(action.text, action.node, barge_in=action.barge_in)
            elif isinstance(action, Listen):
                listen = action
            elif isinstance(action, End):
                listen = None
        if session.done:
            break
        if channel.hung_up:
            actions = session.handle(HangUp())
            continue
        if listen is None:
            raise DialogLoopError("the dialog is not done but does not listen for anything")
        reply = await channel.listen(listen_spec(listen))
        if reply.kind == "dtmf" and len(reply.text) > 1:
            for digit in reply.text[:-1]:
                session.handle(Dtmf(digit))
            actions = session.handle(Dtmf(reply.text[-1]))
        else:
            actions = session.handle(reply_event(reply))
    else:
        raise DialogLoopError(f"the dialog did not end after {MAX_EVENTS} events")
    await channel.hangup()
    return session.result
