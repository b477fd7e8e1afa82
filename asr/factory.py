"""Choosing a recognizer by name (config `asr.engine`). Apart from asr/base.py so that the engines,
which implement its protocol, and the protocol do not import each other."""

from __future__ import annotations

from asr.base import AsrError, Recognizer
from asr.vosk_asr import DEFAULT_DECODE_NICE, DEFAULT_FRAMES_PER_CHUNK


def make_recognizer(
    engine: str,
    *,
    model_path: str = "",
    server_url: str = "",
    threads: int = 0,
    frames_per_chunk: int = DEFAULT_FRAMES_PER_CHUNK,
    decode_nice: int = DEFAULT_DECODE_NICE,
) -> Recognizer:
    """The recognizer `asr.engine` names (`vosk` or `vosk-server`); pass the fields of config `asr`.

    Raises:
        AsrError: the engine is `text` (the simulated network exchanges text, there is no audio to
            recognize) or unknown, or the Vosk model cannot be loaded.
    """
    if engine == "vosk":
        from asr.vosk_asr import VoskRecognizer

        return VoskRecognizer(model_path, threads=threads, frames_per_chunk=frames_per_chunk, decode_nice=decode_nice)
    if engine == "vosk-server":
        from asr.vosk_server import VoskServerRecognizer

        return VoskServerRecognizer(server_url)
    raise AsrError(f"asr.engine {engine!r} does not recognize audio; use 'vosk' or 'vosk-server' for voice calls")
