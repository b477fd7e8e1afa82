"""The NLU interface every understanding engine implements (built-in rules, Rasa over HTTP)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

# Intents an answer can have. Global intents work in every question.
GLOBAL_INTENTS = ("repeat", "busy", "human", "wrong_number", "opt_out")
# Replies that are not an answer to the question asked; the engine re-asks, waits or explains instead
# of guessing: someone asks to wait / fetches the resident, an acknowledgement only (嗯, 好的 at an
# either-or question), an answer to another question (a temperature at the travel question), the
# speaker saying they are the resident or a relative (value: the relation word), "are you a robot?",
# and suspecting a scam.
NOT_ANSWER_INTENTS = ("hold_on", "ack", "other_answer", "self_resident", "self_relative", "ask_bot", "scam")
YES_NO_INTENTS = ("affirm", "deny", "unsure", *GLOBAL_INTENTS, *NOT_ANSWER_INTENTS)
TEMPERATURE_INTENTS = ("temperature", "unsure", *GLOBAL_INTENTS, *NOT_ANSWER_INTENTS)
EXPECT_TYPES = ("yes_no", "temperature", "choice", "free_text")
# What a question is about (a script node's `topic`); "" = unknown, read without context.
TOPICS = ("identity", "symptoms", "temperature", "travel", "contact", "second_test", "generic")


@dataclass(frozen=True, slots=True)
class Expectation:
    """What the current question expects. `options` maps a choice value to phrases naming it."""

    kind: str  # one of EXPECT_TYPES
    options: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # The question's context: its topic (TOPICS) and the script's keywords (branch -> phrases), e.g.
    # the relatives a script names (family: [女儿, 老伴, ...]) so a relative is recognised at every
    # identity question.
    topic: str = ""
    keywords: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True, slots=True)
class NluResult:
    """What a reply means.

    intent: affirm/deny/unsure, temperature, choice, free_text, or a global intent; "no_match" when
      nothing fits the expectation.
    value: True/False for affirm/deny, float °C for temperature, the option for choice, the text for
      free_text, for busy an optional time phrase; else None.
    uncertain: hedged ("好像有") or low confidence.
    detail: extra facts, e.g. {"symptoms": ["cough"]} when a symptom was named instead of yes.
    """

    intent: str
    value: Any = None
    confidence: float = 1.0
    uncertain: bool = False
    source: str = "builtin"
    detail: tuple[tuple[str, Any], ...] = ()


class Nlu(Protocol):
    name: str

    def parse(self, text: str, expect: Expectation) -> NluResult: ...


@runtime_checkable
class AsyncNlu(Protocol):
    """An NLU that can be awaited: what a live call uses, so understanding never blocks the audio loop.

    The built-in NLU answers at once (it is cheap and pure); Rasa awaits its HTTP server with a timeout."""

    name: str

    def parse(self, text: str, expect: Expectation) -> NluResult: ...

    async def understand(self, text: str, expect: Expectation) -> NluResult: ...


async def understand(nlu: Nlu, text: str, expect: Expectation) -> NluResult:
    """Await `nlu` if it is an `AsyncNlu`; otherwise call its `parse` (a cheap, local NLU)."""
    if isinstance(nlu, AsyncNlu):
        return await nlu.understand(text, expect)
    return nlu.parse(text, expect)
