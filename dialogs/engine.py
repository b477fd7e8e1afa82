"""The pure, deterministic dialog engine: events in, actions out, a growing screening record.

No I/O and no clock: the same script, contact, NLU and events always give the same actions and the
same result. Whoever runs a session turns `Say`/`Listen`/`End` into speech and listening and feeds
`Utterance`/`Dtmf`/`NoInput`/`HangUp` back.

Behaviour in every question node:
- Global intents (from the NLU): repeat (say the last prompt again, at most `max_repeats` times),
  busy (ends `callback_requested`, the NLU's time hint kept), human (`human_requested`), wrong number
  (`wrong_number`), stop calling (`opted_out`, `result.opt_out`). A hang-up ends `hung_up` and keeps
  what was recorded so far.
- A node's `keywords` (e.g. family words in the greeting) are matched before the NLU's yes/no
  reading, but stop calling, wrong number and human still win over them.
- Keys work at any time once a question was asked, also while its prompt is still playing: the
  node's DTMF map (yes/no default 1 = yes, 2 = no), and for temperatures digits with `*` as the
  decimal point ended by `#` (37*5# = 37.5).
- No input / no match: up to `max_tries` re-prompts each, then one DTMF-only prompt, then the call
  ends with `no_response` (silence) or `not_understood`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dialogs.nlu.context import key_text
from dialogs.nlu.temperature import parse_key_temperature
from dialogs.nlu.types import GLOBAL_INTENTS, NOT_ANSWER_INTENTS, Expectation, Nlu, NluResult, understand
from dialogs.rules import RuleContext
from dialogs.types import (
    Action,
    Answer,
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

if TYPE_CHECKING:  # the script module builds sessions of this engine; here its types are annotations only
    from dialogs.script import Node, Script

log = logging.getLogger(__name__)

TEMPERATURE_RANGE = (34.0, 43.0)
_RISK_ORDER = {"none": 0, "flagged": 1, "high": 2}
_GLOBAL_OUTCOMES = {
    "busy": "callback_requested",
    "human": "human_requested",
    "wrong_number": "wrong_number",
    "opt_out": "opted_out",
}
# Global intents that win over a node's keywords: a keyword (妈妈, 儿子) inside "别再打了" or "打错了"
# must not turn a stop-calling or wrong-number reply into an answer.
_OVERRIDING_INTENTS = frozenset(("opt_out", "wrong_number", "human"))
_YES_NO_HINTS = ("是", "是的", "对", "嗯", "不是", "有", "没有", "没", "有点", "不知道")
_TEMPERATURE_HINTS = ("三十五度", "三十六度", "三十七度", "三十八度", "三十九度", "四十度", "点", "度", "没量", "不知道")
_GLOBAL_HINTS = ("再说一遍", "没听清", "在忙", "在开车", "晚点打", "人工", "打错了", "不要再打了")
_TEMPERATURE_DTMF = tuple((d, d) for d in "0123456789") + (("*", "."),)
_UNCERTAIN_MARGIN = 0.5  # °C (or the field's unit): how far an uncertain value may be off
_MAX_KEYS = 6  # a temperature entry longer than this is a mistake (e.g. 37*55555)


class DialogError(RuntimeError):
    """The session was driven wrongly (e.g. handle() before start())."""


def _match_option(text: str, options: tuple[tuple[str, tuple[str, ...]], ...]) -> str | None:
    """Fallback for choice questions: the option whose longest phrase occurs in the text."""
    best: tuple[int, str] | None = None
    for value, phrases in options:
        for p in phrases:
            p = "".join(p.split())
            if p and p in text and (best is None or len(p) > best[0]):
                best = (len(p), value)
    return best[1] if best else None


class Session:
    """One conversation with one contact (implements dialogs.types.DialogSession)."""

    def __init__(
        self,
        script: Script,
        contact: Mapping[str, Any],
        nlu: Nlu,
        *,
        low_confidence: float = 0.6,
        defer_nlu: bool = False,
    ) -> None:
        """`defer_nlu`: answer an utterance with an `Understand` action instead of calling the NLU
        inline (live calls: the driver awaits the NLU off the audio path, then sends `Understood`)."""
        self._script = script
        self._defer = defer_nlu
        self._pending: tuple[Node, Utterance, str, str] | None = None
        self._contact = dict(contact)
        self._nlu = nlu
        self._low = low_confidence
        self._result = ScreeningResult()
        self._node: Node | None = None
        self._started = False
        self._done = False
        self._no_input = 0
        self._no_match = 0
        self._repeats = 0
        self._dtmf_only = False
        self._keys = ""
        self._last_say: str | None = None
        self._rendered: dict[str, str] = {}
        self._listens: dict[str, Listen] = {}
        self._risk_fields = frozenset(script.risk_fields)
        self._holding = False  # "稍等，我去叫他": waiting on the line for the resident
        self._holds = 0
        self._scams = 0

    # -------------------------------------------------------------- protocol

    @property
    def done(self) -> bool:
        return self._done

    @property
    def result(self) -> ScreeningResult:
        return self._result

    @property
    def node(self) -> str | None:
        """The node waiting for an answer (None before start and after the end)."""
        return None if self._done or self._node is None else self._node.name

    def start(self) -> list[Action]:
        if self._started:
            raise DialogError("start() was already called on this session")
        self._started = True
        return self._enter(self._script.start)

    def handle(self, event: Event) -> list[Action]:
        if not self._started:
            raise DialogError("handle() before start()")
        if self._done:
            return []  # e.g. the socket closing after our goodbye
        node = self._node
        assert node is not None
        if isinstance(event, Understood):
            if self._pending is None:
                raise DialogError("Understood without a pending Understand")
            pnode, utt, text, compact = self._pending
            self._pending = None
            return self._on_understood(pnode, utt, text, compact, event.result)
        self._pending = None  # an event instead of the reading (e.g. a hang-up): the utterance is dropped
        if isinstance(event, HangUp):
            self._turn(node, "hang_up", None, None, None)
            return self._finish("hung_up", None)
        holding, self._holding = self._holding, False
        if isinstance(event, Dtmf):
            return self._on_dtmf(node, event.digit)
        if isinstance(event, NoInput):
            self._turn(node, "no_input", None, None, None)
            if holding:  # waited for the resident: greet again, whoever comes to the phone
                return self._ask(node)
            return self._on_failure(node, "no_input")
        if isinstance(event, Utterance):
            return self._on_utterance(node, event)
        raise DialogError(f"unknown event {event!r}")

    # -------------------------------------------------------------- flow

    def _say(self, template: str, node: str, *, barge_in: bool = True) -> Say:
        text = self._rendered.get(template)
        if text is None:
            text = self._rendered[template] = self._script.render(template, self._contact)
        return Say(text=text, node=node, barge_in=barge_in)

    def _enter(self, name: str) -> list[Action]:
        actions: list[Action] = []
        for _ in range(len(self._script.nodes) + 1):
            node = self._script.nodes[name]
            self._node = node
            self._no_input = self._no_match = self._repeats = self._holds = 0
            self._dtmf_only = False
            self._keys = ""
            if node.kind == "end":
                assert node.end is not None
                self._result.outcome = node.end
                return actions + self._finish(node.end, self._prompt(node))
            template = self._prompt(node)
            assert template is not None
            say = self._say(template, node.name)
            actions.append(say)
            if node.kind == "question":
                self._last_say = say.text
                actions.append(self._listen(node))
                return actions
            target = node.target("default")
            assert target is not None
            name = target
        raise DialogError(f"script {self._script.name}: statement nodes loop without a question or an end")

    def _context(self) -> RuleContext:
        answers = self._result.answers
        return RuleContext(
            values={k: a.value for k, a in answers.items()},
            uncertain=frozenset(k for k, a in answers.items() if a.uncertain),
            risk_fields=self._risk_fields,
        )

    def _proxy(self) -> bool:
        """A relative answers for the resident (the script's `settings.proxy_when` holds)."""
        cond = self._script.proxy_when
        return cond is not None and bool(cond(self._context()))

    def _prompt(self, node: Node) -> str | None:
        """What a node says now: the first `say_when` that holds, the third-person prompt when a relative
        answers, else `say`."""
        if node.say_when:
            ctx = self._context()
            for cond, text in node.say_when:
                if cond(ctx):
                    return text
        if node.say_proxy and self._proxy():
            return node.say_proxy
        return node.say

    def _ask(self, node: Node, *before: Say) -> list[Action]:
        """Say `before`, then the question again, and listen."""
        say = self._say(self._prompt(node) or "", node.name)
        self._last_say = say.text
        return [*before, say, self._listen(node)]

    def _listen(self, node: Node) -> Listen:
        listen = self._listens.get(node.name)
        if listen is None:
            hints: list[str] = list(node.hints)
            if node.expect == "yes_no":
                hints.extend(_YES_NO_HINTS)
            elif node.expect == "temperature":
                hints.extend(_TEMPERATURE_HINTS)
            elif node.expect == "choice":
                hints.extend(p for _, phrases in node.options for p in phrases)
            hints.extend(p for _, phrases in node.keywords for p in phrases)
            if node.expect != "free_text":
                hints.extend(_GLOBAL_HINTS)
            temperature = node.expect == "temperature"
            assert node.expect is not None
            listen = Listen(
                node=node.name,
                expect=node.expect,
                field=node.field,
                no_input_s=node.no_input_s,
                hints=tuple(dict.fromkeys(hints)),
                dtmf=_TEMPERATURE_DTMF if temperature else node.dtmf,
                dtmf_terminator="#" if temperature else None,
                risk=node.risk,
            )
            self._listens[node.name] = listen
        return listen

    def _finish(self, outcome: str, say: str | None) -> list[Action]:
        node = self._node.name if self._node else ""
        actions: list[Action] = []
        if say:
            actions.append(self._say(say, node, barge_in=False))
        self._result.outcome = outcome
        self._done = True
        self._apply_rules()
        return [*actions, End(outcome)]

    # -------------------------------------------------------------- events

    def _on_dtmf(self, node: Node, digit: str) -> list[Action]:
        if node.expect == "temperature":
            if digit != "#":
                if digit.isdigit() or digit == "*":
                    self._keys += digit
                    if len(self._keys) <= _MAX_KEYS:
                        return []  # keep collecting until #
                raw = self._keys + digit
                self._keys = ""
                self._turn(node, "dtmf", raw, None, 1.0)
                return self._on_failure(node, "no_match")
            raw, self._keys = self._keys + "#", ""
            value = parse_key_temperature(raw[:-1])
            self._turn(node, "dtmf", raw, "temperature" if value is not None else "no_match", 1.0)
            if value is None:
                return self._on_failure(node, "no_match")
            return self._answer(node, "value", value, raw, 1.0, "dtmf", "temperature", False)
        branch = dict(node.dtmf).get(digit)
        if branch is None:
            self._turn(node, "dtmf", digit, "no_match", 1.0)
            return self._on_failure(node, "no_match")
        intent = {"yes": "affirm", "no": "deny"}.get(branch, branch) if node.expect == "yes_no" else branch
        self._turn(node, "dtmf", digit, intent, 1.0)
        key_value: bool | str | None = {"yes": True, "no": False}.get(branch) if node.expect == "yes_no" else branch
        return self._answer(node, branch, key_value, digit, 1.0, "dtmf", intent, False)

    def _on_utterance(self, node: Node, utt: Utterance) -> list[Action]:
        text = utt.text.strip()
        compact = "".join(text.split())
        if not compact:
            self._turn(node, "utterance", text, None, utt.confidence)
            return self._on_failure(node, "no_input")
        keys = key_text(text) if node.expect in ("yes_no", "temperature") else None
        if keys is not None and (node.expect == "temperature" or len(keys) == 1):
            # key presses that arrived as text (37*5#, "1") are handled exactly like real ones
            if node.expect == "temperature" and not keys.endswith("#"):
                keys += "#"
            actions: list[Action] = []
            for k in keys:
                actions = self._on_dtmf(node, k)
                if self._done or self._node is not node:
                    break
            return actions
        expect = Expectation(kind=node.expect or "free_text", options=node.options, topic=node.topic,
                             keywords=node.keywords)
        if self._defer:
            self._pending = (node, utt, text, compact)
            return [Understand(text=text, expect=expect, node=node.name)]
        return self._on_understood(node, utt, text, compact, self._nlu.parse(text, expect))

    async def understand(self, request: Understand) -> NluResult:
        """The NLU's reading for an `Understand` action (awaited: Rasa goes over HTTP)."""
        return await understand(self._nlu, request.text, request.expect)

    def _on_understood(self, node: Node, utt: Utterance, text: str, compact: str, r: NluResult) -> list[Action]:
        confidence = min(utt.confidence, r.confidence)
        if r.intent in _OVERRIDING_INTENTS:  # 打错了，我没有儿子 / 别再打了，我老公说的: not a family answer
            self._turn(node, "utterance", text, r.intent, confidence)
            return self._on_global(node, r)
        if r.intent in NOT_ANSWER_INTENTS:
            self._turn(node, "utterance", text, r.intent, confidence)
            return self._not_an_answer(node, r, text, confidence, utt)
        for kw_branch, phrases in node.keywords:
            if any(p in compact for p in phrases):
                self._turn(node, "utterance", text, kw_branch, utt.confidence)
                return self._answer(
                    node, kw_branch, kw_branch, text, utt.confidence, "keywords", kw_branch,
                    utt.confidence < self._low, audio_ref=utt.audio_ref,
                )
        self._turn(node, "utterance", text, r.intent, confidence)
        if r.intent in GLOBAL_INTENTS:
            return self._on_global(node, r)
        detail = dict(r.detail)
        for kw_branch, _ in node.keywords:
            if kw_branch in detail:  # the NLU noticed it too (e.g. detail "family" for 我是他家属)
                return self._answer(
                    node, kw_branch, kw_branch, text, confidence, r.source, kw_branch,
                    confidence < self._low, audio_ref=utt.audio_ref, detail=detail,
                )
        branch, value = self._understand(node, r, compact)
        if branch is None:
            return self._on_failure(node, "no_match")
        uncertain = r.uncertain or branch == "unsure" or confidence < self._low
        if uncertain and branch == "value" and node.field and self._near_threshold(node.field, value):
            # an uncertain value that would decide a rule (大概三十七度): neither sets nor clears a flag;
            # recorded as unsure (the heard value kept) so a person calls back
            detail["uncertain_value"] = value
            branch, value = "unsure", None
        intent = r.intent if r.intent != "no_match" else node.expect or "free_text"
        return self._answer(
            node, branch, value, text, confidence, r.source, intent, uncertain,
            audio_ref=utt.audio_ref, detail=detail,
        )

    def _not_an_answer(self, node: Node, r: NluResult, text: str, confidence: float, utt: Utterance) -> list[Action]:
        """Someone fetching the resident, an acknowledgement, an answer to another question, the speaker
        saying who they are, "are you a robot?", a scam suspicion: wait, explain or ask again."""
        globs = self._script.globals
        if r.intent == "hold_on":
            self._holds += 1
            if self._holds > 2:
                return self._reask(node)
            self._holding = True
            listen = dataclasses.replace(self._listen(node), no_input_s=self._script.hold_wait_s)
            return [self._say(globs["hold_on"], node.name), listen]
        if r.intent == "ask_bot":
            return self._explain(node, "ask_bot")
        if r.intent == "scam":
            self._result.scam_suspected = True
            self._scams += 1
            if self._scams > 1:  # still not trusted after the reassurance: end politely
                return self._finish("opted_out", globs["scam_end"])
            return self._explain(node, "scam")
        if node.topic == "identity" and r.intent in ("self_resident", "self_relative"):
            if r.intent == "self_resident":
                branch = "resident"
                detail: dict[str, Any] = {"speaker": "resident"}
            else:
                relation = str(r.value or "")
                detail = {"speaker": "relative", "relation": relation}
                branch = next((b for b, phrases in node.keywords if relation in phrases), "")
                if not branch:
                    branch = "family" if node.target("family") is not None and any(
                        b == "family" for b, _ in node.keywords) else "yes"
            return self._answer(
                node, branch, branch if branch not in ("yes", "resident") else True, text, confidence, r.source,
                r.intent, confidence < self._low, audio_ref=utt.audio_ref, detail=detail,
            )
        if r.intent == "self_resident" and self._proxy():
            self._resident_took_over(text)
        return self._reask(node)

    def _resident_took_over(self, text: str) -> None:
        """The resident came to the phone after a relative started answering: from now on the answers
        are the resident's own (the identity answer becomes a confirmation)."""
        for n in self._script.nodes.values():
            if n.topic == "identity" and n.field and n.field in self._result.answers:
                old = self._result.answers[n.field]
                self._result.answers[n.field] = Answer(
                    field=n.field, value=True, raw=text, confidence=old.confidence, nlu=old.nlu,
                    intent="self_resident", detail={"speaker": "resident", "before": old.value},
                )
        self._apply_rules()

    def _explain(self, node: Node, key: str) -> list[Action]:
        """Answer the resident's question about the call, then ask ours again (bounded like repeats)."""
        self._repeats += 1
        if self._repeats > self._script.max_repeats:
            return self._on_failure(node, "no_match")
        return self._ask(node, self._say(self._script.globals[key], node.name))

    def _reask(self, node: Node) -> list[Action]:
        """Not an answer to this question: ask it again (counts as a failed try)."""
        self._no_match += 1
        if self._no_match > node.max_tries:
            self._no_match -= 1
            return self._on_failure(node, "no_match")
        return self._ask(node, self._say(self._script.globals["reask"], node.name))

    def _near_threshold(self, fld: str, value: Any) -> bool:
        """Would moving `value` by half a unit change the rules' verdict (risk, escalation)?"""
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return False
        outcomes = set()
        base = {k: a.value for k, a in self._result.answers.items()}
        for v in (value - _UNCERTAIN_MARGIN, value, value + _UNCERTAIN_MARGIN):
            ctx = RuleContext(values={**base, fld: v}, uncertain=frozenset(), risk_fields=self._risk_fields)
            outcomes.add(tuple(bool(rule.risk) and bool(rule.when(ctx)) for rule in self._script.rules))
        return len(outcomes) > 1

    def _understand(self, node: Node, r: NluResult, compact: str) -> tuple[str | None, Any]:
        kind = node.expect
        if kind == "yes_no":
            if r.intent == "affirm":
                return "yes", True
            if r.intent == "deny":
                return "no", False
            if r.intent == "unsure":
                return "unsure", None
        elif kind == "temperature":
            if r.intent == "temperature" and isinstance(r.value, (int, float)) and not isinstance(r.value, bool):
                lo, hi = TEMPERATURE_RANGE
                if lo <= float(r.value) <= hi:
                    return "value", float(r.value)
            if r.intent == "unsure":
                if dict(r.detail).get("implausible") is not None:  # 一百度: ask again, it was a slip
                    return None, None
                return "unsure", None
        elif kind == "choice":
            options = {v for v, _ in node.options}
            if r.intent == "choice" and r.value in options:
                return str(r.value), r.value
            if r.intent in ("choice", "no_match", "free_text"):
                value = _match_option(compact, node.options)
                if value is not None:
                    return value, value
        elif kind == "free_text":
            if r.intent == "free_text" and isinstance(r.value, str) and r.value.strip():
                return "value", "".join(r.value.split())  # the NLU dropped fillers
            return "value", compact
        return None, None

    def _on_global(self, node: Node, r: NluResult) -> list[Action]:
        if r.intent == "repeat":
            self._repeats += 1
            if self._repeats > self._script.max_repeats:
                return self._on_failure(node, "no_match")
            prompt = self._last_say or ""
            return [
                self._say(self._script.globals["repeat"], node.name),
                Say(text=prompt, node=node.name),
                self._listen(node),
            ]
        outcome = _GLOBAL_OUTCOMES[r.intent]
        if r.intent == "busy":
            self._result.callback_hint = dict(r.value) if isinstance(r.value, Mapping) else None
        elif r.intent == "opt_out":
            self._result.opt_out = True
        log.debug("dialog %s: node %s ends with %s", self._script.name, node.name, outcome)
        return self._finish(outcome, self._script.globals[r.intent])

    def _on_failure(self, node: Node, kind: str) -> list[Action]:
        """No input or no match: re-prompt, then a DTMF-only prompt, then give up."""
        self._keys = ""
        proxy = self._proxy()
        if kind == "no_input":
            self._no_input += 1
            count, reprompts = self._no_input, node.reprompt_no_input
            if proxy and node.reprompt_proxy_no_input:
                reprompts = node.reprompt_proxy_no_input
        else:
            self._no_match += 1
            count, reprompts = self._no_match, node.reprompt_no_match
            if proxy and node.reprompt_proxy_no_match:
                reprompts = node.reprompt_proxy_no_match
        outcome = "no_response" if kind == "no_input" else "not_understood"
        if self._dtmf_only:
            return self._finish(outcome, self._script.globals[outcome])
        if count <= node.max_tries:
            if reprompts:
                say = self._say(reprompts[min(count, len(reprompts)) - 1], node.name)
                self._last_say = say.text
                return [say, self._listen(node)]
            return self._ask(node, self._say(self._script.globals[kind], node.name))
        if node.dtmf_prompt and (node.dtmf or node.expect == "temperature"):
            self._dtmf_only = True
            dtmf_prompt = node.dtmf_prompt_proxy if proxy and node.dtmf_prompt_proxy else node.dtmf_prompt
            say = self._say(dtmf_prompt, node.name)
            self._last_say = say.text
            return [say, self._listen(node)]
        return self._finish(outcome, self._script.globals[outcome])

    # -------------------------------------------------------------- record

    def _turn(self, node: Node, kind: str, text: str | None, intent: str | None, confidence: float | None) -> None:
        self._result.turns.append(
            {"node": node.name, "event": kind, "text": text, "intent": intent, "confidence": confidence}
        )

    def _answer(
        self,
        node: Node,
        branch: str,
        value: Any,
        raw: str,
        confidence: float,
        nlu: str,
        intent: str,
        uncertain: bool,
        *,
        audio_ref: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> list[Action]:
        if node.field:
            values = dict(node.values)
            if branch in values:
                value = values[branch]
            self._result.answers[node.field] = Answer(
                field=node.field,
                value=value,
                raw=raw,
                confidence=confidence,
                nlu=nlu,
                intent=intent,
                uncertain=uncertain,
                audio_ref=audio_ref,
                detail=detail or {},
            )
            self._apply_rules()
        target = node.target(branch)
        if target is None:  # validation makes this impossible for loaded scripts
            raise DialogError(f"node '{node.name}' has no target for answer '{branch}'")
        return self._enter(target)

    def _apply_rules(self) -> None:
        ctx = self._context()
        risk = "none"
        reasons: list[str] = []
        reminder = escalate = False
        for rule in self._script.rules:
            if not rule.when(ctx):
                continue
            if rule.risk and _RISK_ORDER[rule.risk] > _RISK_ORDER[risk]:
                risk = rule.risk
            if rule.reason and rule.reason not in reasons:
                reasons.append(rule.reason)
            reminder = reminder or rule.reminder
            escalate = escalate or rule.escalate
        res = self._result
        res.risk, res.reasons, res.reminder_needed, res.escalate_human = risk, reasons, reminder, escalate
