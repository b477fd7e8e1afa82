"""Understanding through a Rasa server (`POST {rasa_url}/model/parse`), falling back to the built-in NLU.

Rasa's documented reply (`ParseResult`): {"text", "intent": {"name", "confidence"}, "entities": [...],
"intent_ranking": [...]}; errors come as {"version", "status": "failure", "reason", "message", "code"}
with 4xx/5xx. Authentication is the `token` query parameter (`rasa run --enable-api --auth-token X`).

Every reply Rasa cannot answer usefully goes to the fallback NLU and is counted in `fallbacks`:
transport errors and timeouts, non-200 answers, malformed JSON, `nlu_fallback` or an intent we do not
know, and an intent that makes no sense for the question (e.g. `inform_temperature` on a yes/no).
Choice and free-text questions are answered by the fallback unless Rasa hears a global intent (Rasa
does not know a script's options); that is by design and not counted.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from dialogs.nlu.builtin import BuiltinNlu
from dialogs.nlu.temperature import find_temperature
from dialogs.nlu.timeparse import parse_callback_time
from dialogs.nlu.types import GLOBAL_INTENTS, NOT_ANSWER_INTENTS, Expectation, Nlu, NluResult

log = logging.getLogger(__name__)

# Rasa intent name (as in dialogs/rasa/nlu.yml, plus common synonyms) -> our intent.
RASA_INTENT_MAP: dict[str, str] = {
    "affirm": "affirm",
    "deny": "deny",
    "unsure": "unsure",
    "dont_know": "unsure",
    "inform_temperature": "temperature",
    "repeat": "repeat",
    "busy": "busy",
    "call_later": "busy",
    "human": "human",
    "request_human": "human",
    "wrong_number": "wrong_number",
    "opt_out": "opt_out",
    "stop": "opt_out",
}
# The intent names the shipped dialogs/rasa/nlu.yml must define.
RASA_TRAINED_INTENTS = (
    "affirm",
    "deny",
    "unsure",
    "inform_temperature",
    "repeat",
    "busy",
    "human",
    "wrong_number",
    "opt_out",
)
_VALID_FOR = {
    "yes_no": {"affirm", "deny", "unsure", *GLOBAL_INTENTS},
    "temperature": {"temperature", "unsure", *GLOBAL_INTENTS},
    "choice": set(GLOBAL_INTENTS),
    "free_text": set(GLOBAL_INTENTS),
}


class RasaError(RuntimeError):
    """Rasa did not give a usable answer; the message says why."""


class RasaNlu:
    """NLU over a Rasa server's HTTP API, with the built-in NLU as fallback.

    Args:
        url: the server's base URL, e.g. http://127.0.0.1:5005.
        timeout_s: the whole request's time limit.
        token: Rasa's --auth-token, sent as the `token` query parameter.
        fallback: the NLU used when Rasa fails (default: a BuiltinNlu).
        low_confidence: answers below this confidence are marked uncertain.
        client: an httpx.Client to reuse (tests, connection pooling); one is created otherwise.
    """

    name = "rasa"

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 1.5,
        token: str | None = None,
        fallback: Nlu | None = None,
        low_confidence: float = 0.6,
        client: httpx.Client | None = None,
        async_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = url.rstrip("/") + "/model/parse"
        self.timeout_s = timeout_s
        self.low_confidence = low_confidence
        self.fallback: Nlu = fallback if fallback is not None else BuiltinNlu(low_confidence)
        self.fallbacks = 0
        self._params = {"token": token} if token else None
        self._client = client if client is not None else httpx.Client(timeout=httpx.Timeout(timeout_s))
        self._own_client = client is None
        # Created now, not on the first call: building its TLS context takes ~0.1 s of CPU.
        self._aclient: httpx.AsyncClient | None = (
            async_client if async_client is not None else httpx.AsyncClient(timeout=httpx.Timeout(timeout_s))
        )
        self._own_aclient = async_client is None

    def close(self) -> None:
        """Release the HTTP connection pool (only if this object created the client)."""
        if self._own_client:
            self._client.close()

    async def aclose(self) -> None:
        """Release the async connection pool (only if this object created it) and the sync one."""
        if self._aclient is not None and self._own_aclient:
            await self._aclient.aclose()
            self._aclient = None
        self.close()

    def __enter__(self) -> RasaNlu:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- public

    def _in_context(self, text: str, expect: Expectation) -> NluResult | None:
        """Rasa does not know the question: the "not an answer" kinds (hold on, an acknowledgement, an
        answer to another question, who is speaking, robot or scam questions) come from the built-in
        reading with the question's context."""
        if not expect.topic:
            return None
        local = self.fallback.parse(text, expect)
        return local if local.intent in NOT_ANSWER_INTENTS else None

    def parse(self, text: str, expect: Expectation) -> NluResult:
        """Ask Rasa (blocking); on any failure answer with the fallback NLU and count it."""
        local = self._in_context(text, expect)
        if local is not None:
            return local
        try:
            data = self._post(text)
        except RasaError as exc:
            return self._fallback(exc, text, expect)
        return self._result(data, text, expect)

    async def understand(self, text: str, expect: Expectation) -> NluResult:
        """Ask Rasa without blocking the event loop (live calls); same answers and fallbacks as `parse`."""
        local = self._in_context(text, expect)
        if local is not None:
            return local
        try:
            data = await self._apost(text)
        except RasaError as exc:
            return self._fallback(exc, text, expect)
        return self._result(data, text, expect)

    def _fallback(self, exc: RasaError, text: str, expect: Expectation) -> NluResult:
        self.fallbacks += 1
        log.warning(
            "rasa NLU failed (%s); using %s (fallbacks so far: %d)",
            exc,
            self.fallback.name,
            self.fallbacks,
        )
        return self.fallback.parse(text, expect)

    def _result(self, data: dict[str, Any], text: str, expect: Expectation) -> NluResult:
        try:
            result = self._map(data, text, expect)
        except RasaError as exc:
            return self._fallback(exc, text, expect)
        if result is None:  # choice / free text: Rasa heard no global intent
            return self.fallback.parse(text, expect)
        return result

    # ----------------------------------------------------------------- internals

    def _post(self, text: str) -> dict[str, Any]:
        try:
            resp = self._client.post(
                self.url, json={"text": text}, params=self._params, timeout=self.timeout_s
            )
        except httpx.TimeoutException as exc:
            raise RasaError(f"no answer from {self.url} within {self.timeout_s} s") from exc
        except httpx.HTTPError as exc:
            raise RasaError(f"cannot reach {self.url}: {exc}") from exc
        return self._decode(resp)

    async def _apost(self, text: str) -> dict[str, Any]:
        if self._aclient is None:
            self._aclient = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout_s))
        try:
            resp = await self._aclient.post(
                self.url, json={"text": text}, params=self._params, timeout=self.timeout_s
            )
        except httpx.TimeoutException as exc:
            raise RasaError(f"no answer from {self.url} within {self.timeout_s} s") from exc
        except httpx.HTTPError as exc:
            raise RasaError(f"cannot reach {self.url}: {exc}") from exc
        return self._decode(resp)

    def _decode(self, resp: httpx.Response) -> dict[str, Any]:
        if resp.status_code != 200:
            reason = ""
            try:
                body = resp.json()
                if isinstance(body, dict):
                    reason = f": {body.get('reason', '')} {body.get('message', '')}".rstrip()
            except ValueError:
                pass
            raise RasaError(f"{self.url} answered HTTP {resp.status_code}{reason}")
        try:
            data = resp.json()
        except ValueError as exc:
            raise RasaError(f"{self.url} answered with invalid JSON") from exc
        if not isinstance(data, dict):
            raise RasaError(f"{self.url} answered with a JSON {type(data).__name__}, expected an object")
        return data

    def _map(self, data: dict[str, Any], text: str, expect: Expectation) -> NluResult | None:
        intent_obj = data.get("intent")
        if not isinstance(intent_obj, dict) or not isinstance(intent_obj.get("name"), str):
            raise RasaError("reply has no intent.name")
        rasa_name = intent_obj["name"]
        try:
            confidence = float(intent_obj.get("confidence") or 0.0)
        except (TypeError, ValueError) as exc:
            raise RasaError(f"intent.confidence is not a number: {intent_obj.get('confidence')!r}") from exc
        ours = RASA_INTENT_MAP.get(rasa_name)
        if ours is None:
            raise RasaError(f"unknown intent {rasa_name!r}")
        valid = _VALID_FOR.get(expect.kind)
        if valid is None:
            raise ValueError(f"unknown expectation kind {expect.kind!r}")
        if ours not in valid:
            if expect.kind in ("choice", "free_text"):
                return None
            raise RasaError(f"intent {rasa_name!r} does not answer a {expect.kind} question")
        value: Any = None
        detail: tuple[tuple[str, Any], ...] = ()
        uncertain = confidence < self.low_confidence
        if ours in ("affirm", "deny"):
            value = ours == "affirm"
            # Keep the built-in reading's facts (symptoms named, hedges) when both agree.
            local = self.fallback.parse(text, expect)
            if local.intent == ours:
                detail = local.detail
                uncertain = uncertain or local.uncertain
        elif ours == "temperature":
            temp = None
            for ent in data.get("entities") or ():
                if isinstance(ent, dict) and ent.get("entity") == "temperature":
                    temp = find_temperature(str(ent.get("value", "")))
                    break
            if temp is None:
                temp = find_temperature(text)
            if temp is None or not temp.plausible:
                heard = temp.value if temp is not None else None
                return NluResult("unsure", None, confidence, True, self.name, (("implausible", heard),))
            value = temp.value
            uncertain = uncertain or temp.approximate
        elif ours == "busy":
            value = parse_callback_time(text)
        return NluResult(ours, value, round(confidence, 3), uncertain, self.name, detail)
