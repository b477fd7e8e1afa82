"""The simulated phone network: seeded residents who answer (or not) and talk back in text.

Every resident gets a persona derived from (seed, phone): reachability, age (slow speakers ask to
repeat), dialect, hedging, key pressing, and the truth about their health and travel. Each attempt
draws its outcome from (seed, phone, attempt number), so a demo is reproducible and independent of
call order. Answered calls run in text mode: the dialog's prompts arrive as text, the persona answers
each question in varied real-world phrasing, and all timing (ring, speech, thinking, silence) is
accounted in seconds on the call's own timeline, not slept, unless a `sleep` function is given.

Default mix (DESIGN.md): answers 55 %, no answer 30 %, busy 6 %, switched off / congestion 5 %,
invalid number 3 % (a property of the number: the same residents every time).

It implements the whole telephony contract (dialer/base.py) and lets tests inject system faults:
`go_down(reason)` / `come_up()` (or `down_until` on the given clock) make `originate` raise
`TelephonyUnavailable`, `congested` makes it raise `TrunkCongestion`, and `force(phone, behaviour)` fixes
one number's next calls: a `CallOutcome` value, `stuck` (answers, then never says anything again until
we hang up: a call that never ends) or `trunk_congestion`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from common.masking import mask_phone
from dialer.base import (
    CallOutcome,
    DuplicateChannel,
    Health,
    ListenSpec,
    OriginateRequest,
    OriginateResult,
    Reply,
    TelephonyBase,
    TelephonyUnavailable,
    TrunkCongestion,
)

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]

SPEECH_CHARS_PER_S = 4.5  # prompt speed of a Mandarin TTS voice
TRAILING_SILENCE_S = 0.7

_DIGITS = "零一二三四五六七八九"


def chinese_number(n: int) -> str:
    """0..99 in Chinese words: 36 -> 三十六."""
    if n < 10:
        return _DIGITS[n]
    tens, ones = divmod(n, 10)
    head = "十" if tens == 1 else _DIGITS[tens] + "十"
    return head + (_DIGITS[ones] if ones else "")


def temperature_phrases(t: float) -> list[str]:
    whole = int(t)
    tenth = round((t - whole) * 10)
    if tenth == 10:
        whole, tenth = whole + 1, 0
    w = chinese_number(whole)
    if tenth == 0:
        return [f"{w}度", f"{whole}度", f"量了一下{w}度", f"{whole}.0", f"体温{w}度"]
    return [
        f"{w}度{_DIGITS[tenth]}",
        f"{whole}度{tenth}",
        f"{w}点{_DIGITS[tenth]}度",
        f"{whole}.{tenth}",
        f"刚量的，{w}度{_DIGITS[tenth]}",
        f"嗯 {whole}.{tenth} 度",
    ]


# Answers by record field and truth. Plain, hedged, dialect and filler-laden variants.
_YES_NO: dict[str, dict[bool, dict[str, list[str]]]] = {
    "identity_confirmed": {
        True: {
            "plain": ["是", "是的", "对", "嗯，是我", "对对对，是我", "是我，什么事", "嗯", "对的"],
            "hedge": ["应该是吧", "嗯……是我"],
            "dialect": ["是噻", "是我嘛"],
        },
        False: {"plain": ["不是", "不是我"], "hedge": ["好像不是"], "dialect": ["不是噻"]},
    },
    "has_symptoms": {
        False: {
            "plain": ["没有", "没有不舒服", "都没有", "没有没有，挺好的", "那个，就是没有啊", "没有发烧也不咳嗽", "没有 发烧"],
            "hedge": ["大概没有吧", "应该没有"],
            "dialect": ["没得", "冇", "没得没得"],
        },
        True: {
            "plain": ["有", "有点咳嗽", "一直在咳", "喉咙有点痛", "不是没有，有一点"],
            "hedge": ["好像有点发烧", "好像有"],
            "dialect": ["有得", "有嘞，咳得厉害"],
        },
    },
    "traveled": {
        False: {
            "plain": ["没有", "没出去过", "一直在家", "没有出去"],
            "hedge": ["应该没有吧"],
            "dialect": ["没得", "冇去过"],
        },
        True: {
            "plain": ["去过", "有", "嗯，出去过", "有的"],
            "hedge": ["好像去过"],
            "dialect": ["去过噻"],
        },
    },
    "contact_case": {
        False: {
            "plain": ["没有", "没接触过", "没有接触"],
            "hedge": ["应该没有吧", "大概没有"],
            "dialect": ["没得", "冇"],
        },
        True: {"plain": ["有", "接触过"], "hedge": ["好像接触过"], "dialect": ["有得"]},
    },
    "second_test_done": {
        True: {"plain": ["做了", "已经做了", "做过了", "做了做了"], "hedge": ["应该做了吧"], "dialect": ["做了噻"]},
        False: {"plain": ["还没做", "没有", "还没呢"], "hedge": ["好像还没有"], "dialect": ["还没得"]},
    },
}
_GENERIC = {
    True: {"plain": ["是的", "对", "有"], "hedge": ["好像是"], "dialect": ["是噻"]},
    False: {"plain": ["没有", "不是"], "hedge": ["大概没有"], "dialect": ["没得"]},
}
_PLACES = ["武汉", "北京", "上海", "广州", "深圳", "郑州", "成都", "杭州", "西安", "石家庄"]
_REPEAT = ["啊？你说什么？", "再说一遍", "没听清，再说一遍好吗", "你说慢一点"]
_HUMAN = ["我要找人工", "转人工", "有没有真人啊", "我要跟工作人员说"]
_OPT_OUT = ["以后别给我打电话了", "不要再打了", "别再打了，烦不烦"]
_CALLBACK = [
    ("我在开车，下午三点再打吧", 0),
    ("现在不方便，过半个小时再打", 30),
    ("我在忙，晚点再打", 0),
    ("明天上午再打吧", 0),
]
_WRONG = ["你打错了", "打错了，不是这个人"]
_YES_KEYS = ("yes", "affirm", "true", "是", "有", "1")
_NO_KEYS = ("no", "deny", "false", "否", "没有", "2")


@dataclass(frozen=True, slots=True)
class Persona:
    """Who a resident is on the phone. Derived from (seed, phone); never stored."""

    invalid: bool
    reach: float  # multiplier on the answer probability (hard-to-reach residents < 1)
    elderly: bool
    dialect: bool
    hedger: bool
    key_presser: bool
    # the truth
    has_symptoms: bool
    temperature: float
    traveled: bool
    travel_place: str
    contact_case: bool
    second_test_done: bool

    @classmethod
    def for_resident(cls, seed: int, phone: str, invalid_rate: float = 0.03) -> Persona:
        r = random.Random(f"persona|{seed}|{phone}")
        has_symptoms = r.random() < 0.04
        fever = r.random() < (0.5 if has_symptoms else 0.015)
        temp = round(r.uniform(37.3, 38.9), 1) if fever else round(r.uniform(36.0, 37.0), 1)
        return cls(
            invalid=r.random() < invalid_rate,
            reach=0.25 if r.random() < 0.15 else 1.13,
            elderly=r.random() < 0.18,
            dialect=r.random() < 0.12,
            hedger=r.random() < 0.12,
            key_presser=r.random() < 0.10,
            has_symptoms=has_symptoms,
            temperature=temp,
            traveled=r.random() < 0.25,
            travel_place=r.choice(_PLACES),
            contact_case=r.random() < 0.01,
            second_test_done=r.random() < 0.7,
        )

    def truth(self, field_name: str | None) -> bool | None:
        if field_name == "identity_confirmed":
            return True
        value = getattr(self, field_name, None) if field_name else None
        return value if isinstance(value, bool) else None


@dataclass(frozen=True, slots=True)
class CallPlan:
    """What one answered call will bring: at most one special behaviour."""

    behaviour: str  # normal, hang_up_early, human, opt_out, callback, wrong_number, silent
    at_question: int  # the question index where the behaviour shows


class SimulatedCall:
    """One answered call in text mode (a `dialer.base.TextChannel`)."""

    def __init__(self, channel_id: str, persona: Persona, plan: CallPlan, rng: random.Random,
                 sleep: Sleep | None = None, *, stuck: bool = False) -> None:
        self._channel_id = channel_id
        self._stuck = stuck
        self._ended = asyncio.Event()
        self.persona = persona
        self.plan = plan
        self._rng = rng
        self._sleep = sleep
        self._elapsed = 0.0
        self._hung_up = False
        self._questions = 0
        self._repeats: dict[str, int] = {}
        self._no_inputs = 0
        self.transcript: list[tuple[str, str]] = []

    @property
    def channel_id(self) -> str:
        return self._channel_id

    @property
    def elapsed_s(self) -> float:
        return self._elapsed

    @property
    def hung_up(self) -> bool:
        return self._hung_up

    async def _pass(self, seconds: float) -> None:
        self._elapsed += seconds
        if self._sleep is not None:
            await self._sleep(seconds)

    async def say(self, text: str, node: str, *, barge_in: bool = True) -> None:
        if self._hung_up:
            return
        duration = len(text) / SPEECH_CHARS_PER_S + 0.2
        if self.plan.behaviour == "hang_up_early" and self._questions >= self.plan.at_question:
            await self._pass(duration * self._rng.uniform(0.2, 0.8))
            self._hung_up = True
            self.transcript.append(("hangup", node))
            return
        self.transcript.append(("bot", text))
        await self._pass(duration)

    async def listen(self, spec: ListenSpec) -> Reply:
        if self._hung_up:
            return Reply("hangup")
        if self._stuck:  # the line stays open and silent, and no timer of ours fires: wait for our hang-up
            await self._ended.wait()
            return Reply("hangup")
        reply = self._decide(spec)
        if reply.kind == "no_input":
            await self._pass(spec.no_input_s)
        elif reply.kind == "hangup":
            self._hung_up = True
            await self._pass(self._rng.uniform(0.5, 2.0))
        else:
            think = self._rng.uniform(1.2, 3.5) if self.persona.elderly else self._rng.uniform(0.3, 1.4)
            speak = len(reply.text) / (2.5 if self.persona.elderly else 3.8)
            await self._pass(think + speak + TRAILING_SILENCE_S)
        self.transcript.append((reply.kind, reply.text))
        return reply

    async def hangup(self) -> None:
        self._hung_up = True
        self._ended.set()

    # ------------------------------------------------------------------ behaviour

    def _decide(self, spec: ListenSpec) -> Reply:
        r, p = self._rng, self.persona
        node_repeats = self._repeats.get(spec.node, 0)
        if node_repeats == 0:
            self._questions += 1
        q = self._questions
        behaviour = self.plan.behaviour
        if behaviour == "silent":
            self._no_inputs += 1
            return Reply("hangup") if self._no_inputs > 6 else Reply("no_input")
        if behaviour == "hang_up_early" and q > self.plan.at_question:
            return Reply("hangup")
        if node_repeats == 0 and q == self.plan.at_question:
            if behaviour == "human":
                return Reply("speech", r.choice(_HUMAN))
            if behaviour == "opt_out":
                return Reply("speech", r.choice(_OPT_OUT))
            if behaviour == "callback":
                return Reply("speech", r.choice(_CALLBACK)[0])
            if behaviour == "wrong_number":
                return Reply("speech", r.choice(_WRONG))
        repeat_p = 0.22 if p.elderly else 0.03
        if node_repeats < 1 and r.random() < repeat_p:
            self._repeats[spec.node] = node_repeats + 1
            return Reply("speech", r.choice(_REPEAT))
        self._repeats[spec.node] = node_repeats + 1
        if p.elderly and r.random() < 0.04:
            return Reply("no_input")
        return self._answer(spec)

    def _answer(self, spec: ListenSpec) -> Reply:
        r, p = self._rng, self.persona
        if spec.expect == "temperature" or spec.field == "temperature":
            return Reply("speech", r.choice(temperature_phrases(p.temperature)))
        if spec.expect == "free_text" or spec.field == "travel_place":
            return Reply("speech", r.choice([p.travel_place, f"去了{p.travel_place}", f"就是{p.travel_place}"]))
        if spec.expect == "choice":
            options = spec.hints or ("第一个",)
            return Reply("speech", r.choice(options))
        truth = p.truth(spec.field)
        if truth is None:
            truth = r.random() < 0.5
        if p.key_presser and spec.dtmf:
            wanted = _YES_KEYS if truth else _NO_KEYS
            for key, meaning in spec.dtmf:
                if meaning.lower() in wanted:
                    return Reply("dtmf", key)
        table = _YES_NO.get(spec.field or "", _GENERIC)[truth]
        if p.dialect and r.random() < 0.6:
            style = "dialect"
        elif p.hedger and r.random() < 0.5:
            style = "hedge"
        else:
            style = "plain"
        if r.random() < 0.01:
            return Reply("speech", "说不清")
        return Reply("speech", r.choice(table[style]))


class SimulatedNetwork(TelephonyBase):
    """The in-process phone network (a `dialer.base.Telephony`)."""

    name = "simulated"
    supports_transfer = False

    def __init__(
        self,
        *,
        seed: int = 20201,
        answer_rate: float = 0.55,
        no_answer_rate: float = 0.30,
        busy_rate: float = 0.06,
        congestion_rate: float = 0.05,
        invalid_rate: float = 0.03,
        dial_log: Path | None = None,
        sleep: Sleep | None = None,
        now: Callable[[], dt.datetime] | None = None,
    ) -> None:
        rates = (answer_rate, no_answer_rate, busy_rate, congestion_rate)
        if any(x < 0 for x in (*rates, invalid_rate)) or sum(rates) <= 0:
            raise ValueError("simulation rates must be non-negative and not all zero")
        total = sum(rates)
        self.seed = seed
        self.invalid_rate = invalid_rate
        self._p_answer, self._p_no_answer, self._p_busy = (x / total for x in rates[:3])
        self._sleep = sleep
        self._dialed: set[str] = set()
        self._log: IO[str] | None = None
        if dial_log is not None:
            dial_log.parent.mkdir(parents=True, exist_ok=True)
            self._log = dial_log.open("a", encoding="utf-8")
        self._personas: dict[str, Persona] = {}
        self._now = now
        self._live: dict[str, SimulatedCall] = {}
        self._forced: dict[str, str] = {}
        self.down_reason: str | None = None
        self.down_until: dt.datetime | None = None  # with `now`: an outage that ends by itself
        self.congested = False
        self.refused = 0  # originates refused by an injected fault

    # ------------------------------------------------------------------ fault injection (tests)

    def go_down(self, reason: str = "simulated outage", *, until: dt.datetime | None = None) -> None:
        self.down_reason = reason
        self.down_until = until

    def come_up(self) -> None:
        self.down_reason = None
        self.down_until = None

    def force(self, phone: str, behaviour: str | None) -> None:
        """Fix what calls to `phone` do: a CallOutcome value, `stuck`, `trunk_congestion` (None: undo)."""
        if behaviour is None:
            self._forced.pop(phone, None)
            return
        if behaviour not in {*CallOutcome, "stuck", "trunk_congestion"}:
            raise ValueError(f"unknown simulated behaviour {behaviour!r}")
        self._forced[phone] = behaviour

    def _down(self) -> str | None:
        if self.down_reason is None:
            return None
        if self.down_until is not None and self._now is not None and self._now() >= self.down_until:
            self.come_up()
            return None
        return self.down_reason

    # ------------------------------------------------------------------ contract

    def health(self) -> Health:
        reason = self._down()
        if reason is not None:
            return Health(False, reason)
        if self.congested:
            return Health(False, "trunk congested")
        return Health(True, f"{len(self._live)} calls up")

    async def hangup(self, channel_id: str) -> None:
        call = self._live.pop(channel_id, None)
        if call is not None:
            await call.hangup()

    async def reconcile(self, owned: Collection[str]) -> set[str]:
        for cid in [c for c, call in self._live.items() if call.hung_up]:
            del self._live[cid]
        return {cid for cid in owned if cid in self._live}

    def persona(self, phone: str) -> Persona:
        p = self._personas.get(phone)
        if p is None:
            p = Persona.for_resident(self.seed, phone, self.invalid_rate)
            if len(self._personas) < 200_000:
                self._personas[phone] = p
        return p

    async def originate(self, request: OriginateRequest) -> OriginateResult:
        if request.channel_id in self._dialed:
            raise DuplicateChannel(f"channel {request.channel_id} was already dialled; refusing to dial it twice")
        forced = self._forced.get(request.phone)
        down = self._down()
        if down is not None:
            self.refused += 1
            raise TelephonyUnavailable(f"simulated network down: {down}")
        if self.congested or forced == "trunk_congestion":
            self.refused += 1
            raise TrunkCongestion("simulated trunk congestion (SIP 503)")
        self._dialed.add(request.channel_id)
        if self._log is not None:
            # The carrier's call log: one line per dial, written before the call (kill tests read it).
            self._log.write(f"{request.channel_id}\t{request.phone}\t{request.attempt_no}\n")
            self._log.flush()
        persona = self.persona(request.phone)
        r = random.Random(f"call|{self.seed}|{request.phone}|{request.attempt_no}")
        cid = request.channel_id
        if forced is not None:
            return await self._forced_call(request, forced, persona, r)
        if persona.invalid:
            return await self._fail(cid, CallOutcome.invalid_number, r.uniform(1.0, 3.0), "1 UNALLOCATED")
        u = r.random()
        p_answer = min(0.97, self._p_answer * persona.reach)
        if u < p_answer:
            ring = min(request.timeout_s * 0.9, r.uniform(4.0, 22.0))
            if self._sleep is not None:
                await self._sleep(ring)
            call = SimulatedCall(cid, persona, self._plan(r), r, self._sleep)
            self._track(call)
            log.debug("sim %s answered %s", cid, mask_phone(request.phone))
            return OriginateResult(cid, CallOutcome.answered, ring, "16 NORMAL_CLEARING", text=call)
        rest = (u - p_answer) / (1 - p_answer) if p_answer < 1 else 0.0
        scale = 1 - self._p_answer
        if rest < self._p_no_answer / scale:
            return await self._fail(cid, CallOutcome.no_answer, request.timeout_s, "19 NO_ANSWER")
        if rest < (self._p_no_answer + self._p_busy) / scale:
            return await self._fail(cid, CallOutcome.busy, r.uniform(1.0, 4.0), "17 USER_BUSY")
        return await self._fail(cid, CallOutcome.congestion, r.uniform(2.0, 6.0), "34 NORMAL_CIRCUIT_CONGESTION")

    def _track(self, call: SimulatedCall) -> None:
        if len(self._live) > 10_000:  # finished calls are dropped lazily
            for done in [c for c, live in self._live.items() if live.hung_up]:
                del self._live[done]
        self._live[call.channel_id] = call

    async def _forced_call(
        self, request: OriginateRequest, forced: str, persona: Persona, r: random.Random
    ) -> OriginateResult:
        cid = request.channel_id
        if forced in ("answered", "stuck"):
            call = SimulatedCall(cid, persona, CallPlan("normal", 0), r, self._sleep, stuck=forced == "stuck")
            self._track(call)
            return OriginateResult(cid, CallOutcome.answered, 1.0, "16 NORMAL_CLEARING", text=call)
        causes = {
            "no_answer": "19 NO_ANSWER", "busy": "17 USER_BUSY", "congestion": "20 SUBSCRIBER_ABSENT",
            "failed": "31 NORMAL_UNSPECIFIED", "invalid_number": "1 UNALLOCATED",
        }
        ring = request.timeout_s if forced == "no_answer" else 2.0
        return await self._fail(cid, CallOutcome(forced), ring, causes[forced])

    async def _fail(self, cid: str, outcome: CallOutcome, ring: float, cause: str) -> OriginateResult:
        if self._sleep is not None:
            await self._sleep(ring)
        return OriginateResult(cid, outcome, ring, cause)

    @staticmethod
    def _plan(r: random.Random) -> CallPlan:
        u = r.random()
        at = r.randint(1, 4)
        for behaviour, p in (
            ("hang_up_early", 0.05),
            ("callback", 0.04),
            ("human", 0.02),
            ("opt_out", 0.015),
            ("silent", 0.01),
            ("wrong_number", 0.005),
        ):
            if u < p:
                return CallPlan(behaviour, 1 if behaviour == "wrong_number" else at)
            u -= p
        return CallPlan("normal", 0)

    async def stop(self) -> None:
        for call in list(self._live.values()):
            await call.hangup()
        self._live.clear()
        if self._log is not None:
            self._log.close()
            self._log = None
