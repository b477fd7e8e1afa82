"""The TTS interface. Every engine returns telephone audio: 8 kHz, s16le, mono, trimmed and normalised."""

from __future__ import annotations

from typing import Protocol


class TtsError(RuntimeError):
    """Synthesis failed; the message names the engine and the text."""


class TtsEngine(Protocol):
    name: str  # "espeak" or "edge"
    voice: str

    def settings_key(self) -> str:
        """Everything besides the text that changes the audio (voice, rate, pitch...), for the cache key."""
        ...

    async def synthesize(self, text: str) -> bytes:
        """Render `text` to 8 kHz s16le mono PCM."""
        ...
