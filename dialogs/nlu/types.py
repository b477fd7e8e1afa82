"""The NLU interface every understanding engine implements (built-in rules, Rasa over HTTP)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

# Intents an answer can have. Global intents work in every question.
GLOBAL_INTENTS = ("repeat", "busy", "human", "wrong_number", "opt_out")
YES_NO_INTENTS = ("affirm", "deny", "unsure", *GLOBAL_INTENTS)
TEMPERATURE_INTENTS = ("temperature", "unsure", *GLOBAL_INTENTS)
EXPECT_TYPES = ("yes_no", "temperature", "choice", "free_text")


@dataclass(frozen=True, slots=True)
class Expectation:
    """What the current question expects. `options` maps a choice value to phrases naming it."""

    kind: str  # one of EXPECT_TYPES
    options: tuple[tuple[str, tuple[str, ...]], ...] = ()


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
