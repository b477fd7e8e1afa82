"""Rasa interop against a local HTTP server speaking Rasa's documented `POST /model/parse` JSON."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from dialogs.nlu import make_nlu
from dialogs.nlu.rasa import RASA_INTENT_MAP, RASA_TRAINED_INTENTS, RasaNlu
from dialogs.nlu.types import (
    GLOBAL_INTENTS,
    NOT_ANSWER_INTENTS,
    TEMPERATURE_INTENTS,
    YES_NO_INTENTS,
    Expectation,
)
from outreach.config import NluConfig

ROOT = Path(__file__).resolve().parent.parent
RASA_DIR = ROOT / "dialogs" / "rasa"
YES_NO = Expectation("yes_no")
TEMP = Expectation("temperature")


@dataclass
class Reply:
    """What the fake server answers for one text: a parse result, an error, or a slow answer."""

    status: int = 200
    body: Any = None
    delay_s: float = 0.0


@dataclass
class FakeRasa:
    """A Rasa HTTP API stand-in: answers per text, records every request (path, query, JSON body)."""

    replies: dict[str, Reply] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    @staticmethod
    def parse_result(
        text: str, intent: str, confidence: float, entities: list[dict[str, Any]] | None = None
    ) -> Reply:
        """Rasa's ParseResult, as `rasa run --enable-api` returns it."""
        return Reply(
            body={
                "text": text,
                "intent": {"name": intent, "confidence": confidence},
                "entities": entities or [],
                "intent_ranking": [{"name": intent, "confidence": confidence}],
                "response_selector": {"all_retrieval_intents": [], "default": {}},
            }
        )

    @staticmethod
    def failure(status: int, reason: str, message: str) -> Reply:
        """Rasa's documented error body."""
        return Reply(
            status=status,
            body={
                "version": "3.6.21",
                "status": "failure",
                "reason": reason,
                "message": message,
                "code": status,
            },
        )


def _handler(fake: FakeRasa) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            return

        def do_POST(self) -> None:
            url = urlparse(self.path)
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            fake.requests.append({"path": url.path, "query": parse_qs(url.query), "json": body})
            if url.path != "/model/parse":
                self._send(FakeRasa.failure(404, "NotFound", f"no route {url.path}"))
                return
            reply = fake.replies.get(body.get("text", ""))
            if reply is None:
                reply = FakeRasa.failure(500, "ParsingError", "no reply scripted for this text")
            if reply.delay_s:
                time.sleep(reply.delay_s)
            self._send(reply)

        def _send(self, reply: Reply) -> None:
            data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                pass

    return Handler


@pytest.fixture
def fake_rasa() -> Iterator[FakeRasa]:
    fake = FakeRasa()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_normal_parse_maps_intent_and_sends_text_and_token(fake_rasa: FakeRasa) -> None:
    fake_rasa.replies["没有"] = FakeRasa.parse_result("没有", "deny", 0.97)
    with RasaNlu(fake_rasa.url, timeout_s=2, token="s3cret") as nlu:
        res = nlu.parse("没有", YES_NO)
        assert (res.intent, res.value, res.confidence, res.uncertain, res.source) == (
            "deny",
            False,
            0.97,
            False,
            "rasa",
        )
        assert nlu.fallbacks == 0
    assert fake_rasa.requests == [
        {"path": "/model/parse", "query": {"token": ["s3cret"]}, "json": {"text": "没有"}}
    ]


def test_affirm_keeps_builtin_details_and_low_confidence_is_uncertain(fake_rasa: FakeRasa) -> None:
    fake_rasa.replies["一直在咳"] = FakeRasa.parse_result("一直在咳", "affirm", 0.91)
    fake_rasa.replies["嗯"] = FakeRasa.parse_result("嗯", "affirm", 0.41)
    with RasaNlu(fake_rasa.url, timeout_s=2) as nlu:
        res = nlu.parse("一直在咳", YES_NO)
        assert (res.intent, res.value, res.source) == ("affirm", True, "rasa")
        assert dict(res.detail)["symptoms"] == ("cough",)
        weak = nlu.parse("嗯", YES_NO)
        assert (weak.intent, weak.uncertain, weak.confidence) == ("affirm", True, 0.41)
    assert "token" not in fake_rasa.requests[0]["query"]


def test_temperature_from_the_entity_or_the_text(fake_rasa: FakeRasa) -> None:
    ent = [
        {
            "start": 0,
            "end": 5,
            "value": "三十七度五",
            "entity": "temperature",
            "confidence_entity": 0.99,
            "extractor": "DIETClassifier",
        }
    ]
    fake_rasa.replies["三十七度五吧"] = FakeRasa.parse_result("三十七度五吧", "inform_temperature", 0.95, ent)
    fake_rasa.replies["37度2"] = FakeRasa.parse_result("37度2", "inform_temperature", 0.9)
    fake_rasa.replies["二十度"] = FakeRasa.parse_result("二十度", "inform_temperature", 0.9)
    with RasaNlu(fake_rasa.url) as nlu:
        assert (nlu.parse("三十七度五吧", TEMP).intent, nlu.parse("三十七度五吧", TEMP).value) == (
            "temperature",
            37.5,
        )
        assert nlu.parse("37度2", TEMP).value == 37.2
        implausible = nlu.parse("二十度", TEMP)
        assert (implausible.intent, implausible.value, implausible.detail) == (
            "unsure",
            None,
            (("implausible", 20.0),),
        )
        assert nlu.fallbacks == 0


def test_busy_carries_the_callback_time(fake_rasa: FakeRasa) -> None:
    fake_rasa.replies["下午三点打过来"] = FakeRasa.parse_result("下午三点打过来", "call_later", 0.88)
    with RasaNlu(fake_rasa.url) as nlu:
        res = nlu.parse("下午三点打过来", YES_NO)
    assert (res.intent, res.value["time"], res.source) == ("busy", "15:00", "rasa")


@pytest.mark.parametrize(
    "reply",
    [
        FakeRasa.failure(500, "ParsingError", "An unexpected error occurred. Error: model not loaded"),
        FakeRasa.failure(400, "BadRequest", "No text message defined in request_body."),
        FakeRasa.failure(401, "NotAuthenticated", "User is not authenticated."),
        Reply(status=200, body=b"<html>proxy error</html>"),
        Reply(status=200, body=["not", "an", "object"]),
        Reply(status=200, body={"text": "没有", "entities": []}),
    ],
    ids=["500", "400", "401", "not-json", "json-list", "no-intent"],
)
def test_errors_fall_back_to_builtin_and_are_counted(
    fake_rasa: FakeRasa, reply: Reply, caplog: pytest.LogCaptureFixture
) -> None:
    fake_rasa.replies["没有"] = reply
    with RasaNlu(fake_rasa.url, timeout_s=2) as nlu:
        res = nlu.parse("没有", YES_NO)
        assert (res.intent, res.value, res.source) == ("deny", False, "builtin")
        assert nlu.fallbacks == 1
        nlu.parse("没有", YES_NO)
        assert nlu.fallbacks == 2
    assert "rasa NLU failed" in caplog.text and "fallbacks so far: 2" in caplog.text


def test_error_message_names_rasa_reason(fake_rasa: FakeRasa, caplog: pytest.LogCaptureFixture) -> None:
    fake_rasa.replies["有"] = FakeRasa.failure(500, "ParsingError", "model not loaded")
    with RasaNlu(fake_rasa.url) as nlu:
        assert nlu.parse("有", YES_NO).intent == "affirm"
    assert "HTTP 500: ParsingError model not loaded" in caplog.text


def test_slow_reply_past_the_timeout_falls_back(fake_rasa: FakeRasa) -> None:
    fake_rasa.replies["三十七度二"] = Reply(
        delay_s=2.0, body=FakeRasa.parse_result("三十七度二", "inform_temperature", 0.9).body
    )
    with RasaNlu(fake_rasa.url, timeout_s=0.2) as nlu:
        res = nlu.parse("三十七度二", TEMP)
        assert (res.intent, res.value, res.source) == ("temperature", 37.2, "builtin")
        assert nlu.fallbacks == 1


@pytest.mark.parametrize("intent", ["greet", "nlu_fallback", "chitchat"])
def test_unknown_intent_falls_back(fake_rasa: FakeRasa, intent: str) -> None:
    fake_rasa.replies["不是没有"] = FakeRasa.parse_result("不是没有", intent, 0.6)
    with RasaNlu(fake_rasa.url) as nlu:
        res = nlu.parse("不是没有", YES_NO)
        assert (res.intent, res.source) == ("affirm", "builtin")
        assert nlu.fallbacks == 1


def test_intent_that_does_not_answer_the_question_falls_back(fake_rasa: FakeRasa) -> None:
    fake_rasa.replies["三十七度五"] = FakeRasa.parse_result("三十七度五", "affirm", 0.8)
    with RasaNlu(fake_rasa.url) as nlu:
        res = nlu.parse("三十七度五", TEMP)
        assert (res.intent, res.value, res.source) == ("temperature", 37.5, "builtin")
        assert nlu.fallbacks == 1


def test_unreachable_server_falls_back() -> None:
    with RasaNlu("http://127.0.0.1:9", timeout_s=0.5) as nlu:
        assert nlu.parse("没有", YES_NO).intent == "deny"
        assert nlu.fallbacks == 1


def test_choice_uses_rasa_only_for_global_intents(fake_rasa: FakeRasa) -> None:
    expect = Expectation("choice", (("wuhan", ("武汉",)), ("beijing", ("北京",))))
    fake_rasa.replies["北京"] = FakeRasa.parse_result("北京", "affirm", 0.5)
    fake_rasa.replies["转人工"] = FakeRasa.parse_result("转人工", "human", 0.93)
    with RasaNlu(fake_rasa.url) as nlu:
        assert nlu.parse("北京", expect).value == "beijing"
        human = nlu.parse("转人工", expect)
        assert (human.intent, human.source) == ("human", "rasa")
        assert nlu.fallbacks == 0


def test_make_nlu_with_rasa_engine_talks_to_the_server(fake_rasa: FakeRasa) -> None:
    fake_rasa.replies["打错了"] = FakeRasa.parse_result("打错了", "wrong_number", 0.99)
    cfg = NluConfig(engine="rasa", rasa_url=fake_rasa.url + "/", timeout_s=2, rasa_token="t0k")
    nlu = make_nlu(cfg)
    assert isinstance(nlu, RasaNlu)
    try:
        res = nlu.parse("打错了", YES_NO)
    finally:
        nlu.close()
    assert (res.intent, res.source) == ("wrong_number", "rasa")
    assert fake_rasa.requests[0]["query"] == {"token": ["t0k"]}


# --------------------------------------------------------------------------- shipped training files


def _nlu_yml() -> dict[str, Any]:
    data = yaml.safe_load((RASA_DIR / "nlu.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _examples(block: str) -> list[str]:
    return [line[2:].strip() for line in block.splitlines() if line.strip().startswith("- ")]


def test_every_intent_the_engine_uses_is_in_nlu_yml() -> None:
    data = _nlu_yml()
    assert data["version"] == "3.1"
    trained = {item["intent"]: _examples(item["examples"]) for item in data["nlu"] if "intent" in item}
    assert set(RASA_TRAINED_INTENTS) <= set(trained)
    for name in trained:
        assert name in RASA_INTENT_MAP, f"nlu.yml trains {name!r}, which outreach does not map"
    # the "not an answer" kinds need the question's context, which Rasa does not get: the built-in NLU
    # reads them (RasaNlu asks it first when the question has a topic)
    engine_intents = (set(YES_NO_INTENTS) | set(TEMPERATURE_INTENTS)) - set(NOT_ANSWER_INTENTS)
    reachable = {RASA_INTENT_MAP[name] for name in trained}
    assert engine_intents <= reachable, f"no Rasa intent for {engine_intents - reachable}"
    assert set(GLOBAL_INTENTS) <= reachable
    for name, examples in trained.items():
        assert len(examples) >= 15, f"{name}: only {len(examples)} examples"
        assert len(set(examples)) == len(examples), f"{name}: duplicate examples"


def test_nlu_yml_examples_agree_with_the_builtin_nlu() -> None:
    """The shipped examples are labelled consistently with what the built-in NLU understands."""
    from dialogs.nlu.builtin import BuiltinNlu

    builtin = BuiltinNlu()
    data = _nlu_yml()
    for item in data["nlu"]:
        if "intent" not in item:
            continue
        ours = RASA_INTENT_MAP[item["intent"]]
        expect = TEMP if ours == "temperature" else YES_NO
        for example in _examples(item["examples"]):
            text = example.replace("[", "").split("](")[0] + (
                example.split(")", 1)[1] if "](" in example else ""
            )
            got = builtin.parse(text, expect).intent
            assert got == ours, f"{item['intent']}: {example!r} -> {got}"


def test_config_yml_is_a_chinese_pipeline() -> None:
    cfg = yaml.safe_load((RASA_DIR / "config.yml").read_text(encoding="utf-8"))
    assert cfg["language"] == "zh"
    names = [c["name"] for c in cfg["pipeline"]]
    assert names[0] == "JiebaTokenizer"
    assert "DIETClassifier" in names and "FallbackClassifier" in names
    assert any(c.get("analyzer") == "char_wb" for c in cfg["pipeline"])


def test_not_an_answer_kinds_come_from_the_builtin_reading_in_context(fake_rasa: FakeRasa) -> None:
    """Rasa does not know the question: with a topic, 稍等我去叫他 / 我是他女儿 are read by the built-in
    NLU (no request to Rasa); a plain answer still goes to Rasa."""
    fake_rasa.replies["没有"] = FakeRasa.parse_result("没有", "deny", 0.97)
    identity = Expectation("yes_no", topic="identity")
    with RasaNlu(fake_rasa.url, timeout_s=2) as nlu:
        assert nlu.parse("稍等，我去叫他", identity).intent == "hold_on"
        res = nlu.parse("我是他女儿", identity)
        assert (res.intent, res.value, res.source) == ("self_relative", "女儿", "builtin")
        assert fake_rasa.requests == []
        assert nlu.parse("没有", Expectation("yes_no", topic="symptoms")).source == "rasa"
        assert nlu.fallbacks == 0
