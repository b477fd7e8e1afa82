"""The conversation seam: the one engine loop both drivers (text and voice) share.

The dialer hands over an answered call as a text channel (`dialer.base.TextChannel`, the simulated
network) or a media session (`dialer.media.MediaSession`, AudioSocket); `run_text_dialog` here and
`dialogs.runner.run_dialog` drive the same `DialogSession` over it with the same rules:

- `advance()` feeds one event to the engine and awaits the NLU when the engine asks for it
  (`Understand` → `Understood`), so understanding never blocks the loop that carries audio;
- prompts without a `Listen` re-ask the last question; an engine that returns nothing (a digit of a
  multi-key entry) keeps listening to the same question;
- `End` (after its prompt) or a hang-up ends the conversation; the partial record is kept.
"""

from __future__ import annotations

import logging
import time

from dialer.base import ListenSpec, Reply, TextChannel
from dialogs.types import (
    Action,
    DialogSession,
    Dtmf,
    End,
    Event,
    HangUp,
    Listen,
    NoInput,
    Say,
    ScreeningResult,
    Understand,
    Understood,
    Utterance,
)

log = logging.getLogger(__name__)

MAX_EVENTS = 200  # a dialog that needs more events than this is looping


class DialogLoopError(RuntimeError):
    """The dialog neither ended nor asked for input: a script or engine bug."""


async def resolve(session: DialogSession, actions: list[Action]) -> list[Action]:
    """Answer the engine's `Understand` requests (awaiting the NLU) until it returns real actions. The
    time each reading took goes into the turn it produced (`nlu_ms`: the web console's NLU histogram)."""
    while len(actions) == 1 and isinstance(actions[0], Understand):
        t0 = time.perf_counter()
        reading = await session.understand(actions[0])
        nlu_ms = round((time.perf_counter() - t0) * 1000, 2)
        before = len(session.result.turns)
        actions = session.handle(Understood(reading))
        for turn in session.result.turns[before:]:
            turn.setdefault("nlu_ms", nlu_ms)
    return actions


async def advance(session: DialogSession, event: Event) -> list[Action]:
    """Feed one event to the engine; the actions it answers with (NLU awaited on the way)."""
    return await resolve(session, session.handle(event))


def next_listen(actions: list[Action], last: Listen | None, done: bool) -> Listen | None:
    """What to listen to after `actions`: their Listen, else (prompts only, or nothing while a
    multi-key entry is collected) the question asked last; None once the dialog ended."""
    if done or any(isinstance(a, End) for a in actions):
        return None
    for a in actions:
        if isinstance(a, Listen):
            return a
    return last


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
    are fed to the engine key by key. The call is hung up at the end, also when this is cancelled.
    """
    try:
        actions = await resolve(session, session.start())
        listen: Listen | None = None
        for _ in range(MAX_EVENTS):
            for action in actions:
                if isinstance(action, Say):
                    await channel.say(action.text, action.node, barge_in=action.barge_in)
            listen = next_listen(actions, listen, session.done)
            if session.done:
                break
            if channel.hung_up:
                actions = await advance(session, HangUp())
                continue
            if listen is None:
                raise DialogLoopError("the dialog is not done but does not listen for anything")
            reply = await channel.listen(listen_spec(listen))
            if reply.kind == "dtmf" and len(reply.text) > 1:
                for digit in reply.text[:-1]:
                    await advance(session, Dtmf(digit))
                actions = await advance(session, Dtmf(reply.text[-1]))
            else:
                actions = await advance(session, reply_event(reply))
        else:
            raise DialogLoopError(f"the dialog did not end after {MAX_EVENTS} events")
    finally:
        await channel.hangup()
    return session.result
