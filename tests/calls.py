"""Whole calls from a scenario file (tests/data/calls_*.yaml) through the real dialog engine with the
built-in NLU in text mode, and what a careful agent would check in the result.

The harness follows the file's own rules: it feeds the next turn whose `q` matches the question the
robot asks (by meaning: the node's topic, `family` for the family question); when the robot asks a
question again and the next turn is for another question, the person repeats their last reply to it;
after a hold-on the next turn is what is said when the robot speaks again.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from campaigns.policy import AttemptFacts, RetryPolicy, decide
from campaigns.windows import CallingWindows
from dialogs.engine import Session
from dialogs.nlu import BuiltinNlu
from dialogs.script import Script
from dialogs.types import Dtmf, Event, HangUp, Listen, NoInput, ScreeningResult, Utterance

OUTCOMES = {
    "completed": "completed", "proxy_completed": "completed", "wrong_number": "wrong_number",
    "callback": "callback_requested", "human": "human_requested", "opt_out": "opted_out",
    "hung_up_partial": "hung_up", "no_answer_repeated": "no_response",
}
FIELDS = {"symptoms": "has_symptoms", "travel": "traveled", "contact": "contact_case",
          "second_test_done": "second_test_done", "travel_place": "travel_place"}
MAX_STEPS = 60


@dataclass
class CallRun:
    result: ScreeningResult
    asked: list[str] = field(default_factory=list)  # the question meaning of every Listen
    said: list[str] = field(default_factory=list)


def load_calls(path: Path) -> list[dict[str, Any]]:
    calls = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(calls, list)
    return calls


def meaning(script: Script, node: str) -> str:
    n = script.nodes[node]
    if n.topic == "identity":
        return "family" if n.field and node != script.start else "identity"
    if n.field == "travel_place":
        return "travel_place"
    return n.topic or node


def _events(turn: dict[str, Any]) -> list[Event]:
    if turn.get("hangup"):
        return [HangUp()]
    if turn.get("silence"):
        return [NoInput()]
    if "dtmf" in turn:
        return [Dtmf(k) for k in str(turn["dtmf"])]
    return [Utterance(str(turn["text"]))]


def run_call(script: Script, call: dict[str, Any]) -> CallRun:
    session = script.new_session({"name": call["contact"]}, BuiltinNlu())
    assert isinstance(session, Session)
    turns = list(call["turns"])
    run = CallRun(session.result)
    last: dict[str, dict[str, Any]] = {}
    actions = session.start()
    i = 0
    after_hold = False
    for _ in range(MAX_STEPS):
        if session.done:
            break
        listens = [a for a in actions if isinstance(a, Listen)]
        run.said.extend(getattr(a, "text", "") for a in actions if hasattr(a, "text"))
        q = meaning(script, listens[-1].node) if listens else run.asked[-1]
        run.asked.append(q)
        if i < len(turns) and (turns[i]["q"] == q or after_hold):
            turn = turns[i]
            i += 1
        elif q in last:
            turn = last[q]
        elif i < len(turns):
            turn = turns[i]
            i += 1
        else:
            turn = {"hangup": True}
        last[q] = turn
        actions = []
        for event in _events(turn):
            actions = session.handle(event) or actions
            if session.done:
                break
        turns_log = session.result.turns
        after_hold = bool(turns_log) and turns_log[-1].get("intent") == "hold_on"
    assert session.done, f"{call['id']}: the call did not end within {MAX_STEPS} turns"
    run.said.extend(getattr(a, "text", "") for a in actions if hasattr(a, "text"))
    return run


def fever(result: ScreeningResult) -> Any:
    a = result.answers
    temp = a.get("temperature")
    sym = a.get("has_symptoms")
    if temp is not None and isinstance(temp.value, float) and temp.value >= 37.3:
        return True
    if sym is not None and "fever" in (sym.detail.get("symptoms") or ()):
        return True
    if sym is not None and sym.value is False:
        return False
    if temp is not None and isinstance(temp.value, float):
        return False
    if (temp is not None and temp.value is None) or (sym is not None and sym.value is None):
        return "unsure"
    return None


def escalated(result: ScreeningResult) -> bool:
    """Whether the campaign policy files an opt-out (no more calls or texts) for the resident's community."""
    start = dt.datetime(2026, 12, 1, 2, 0, tzinfo=dt.UTC)
    facts = AttemptFacts(
        outcome="hung_up_early" if result.outcome == "hung_up" else "answered", dialog_outcome=result.outcome,
        started_at=start, ended_at=start + dt.timedelta(minutes=1), attempts_total=1, attempts_today=1,
        scam_suspected=result.scam_suspected,
    )
    d = decide(facts, RetryPolicy(), CallingWindows.parse({"daily": ["09:00-12:00", "14:00-20:00"]}))
    return any(e.kind == "opted_out" for e in d.escalations) and d.do_not_call


def check_call(script: Script, call: dict[str, Any]) -> list[str]:
    """What differs from the scenario's expected outcome (empty = the call went right)."""
    run = run_call(script, call)
    r = run.result
    problems: list[str] = []
    want = call["outcome"]
    if r.outcome != OUTCOMES[want]:
        problems.append(f"outcome {r.outcome}, want {OUTCOMES[want]}")
    ident = r.answers.get("identity_confirmed")
    if want == "completed" and (ident is None or ident.value is not True):
        problems.append(f"identity {ident.value if ident else None}, want the resident")
    if want == "proxy_completed":
        if ident is None or ident.value != "family":
            problems.append(f"identity {ident.value if ident else None}, want family")
        elif call.get("relation") and ident.detail.get("relation") not in (call["relation"], None):
            problems.append(f"relation {ident.detail.get('relation')}, want {call['relation']}")
    for key, expected in (call.get("answers") or {}).items():
        if key == "fever":
            got: Any = fever(r)
        elif key == "temperature":
            a = r.answers.get("temperature")
            got = a.value if a is not None else None
        else:
            a = r.answers.get(FIELDS[key])
            got = None if a is None else ("unsure" if a.value is None else a.value)
        if isinstance(expected, float) and isinstance(got, float):
            ok = abs(expected - got) < 0.05
        else:
            ok = got == expected
        if not ok:
            problems.append(f"{key} = {got!r}, want {expected!r}")
    if "flagged" in call and (r.risk in ("flagged", "high")) != call["flagged"]:
        problems.append(f"risk {r.risk}, want flagged={call['flagged']}")
    if bool(call.get("human_review")) != r.escalate_human:
        problems.append(f"human review {r.escalate_human}, want {bool(call.get('human_review'))}")
    if bool(call.get("escalated")) != escalated(r):
        problems.append(f"refusal escalation {escalated(r)}, want {bool(call.get('escalated'))}")
    if call.get("callback_time"):
        hint = (r.callback_hint or {}).get("text") or ""
        if not hint or not (hint in call["callback_time"] or call["callback_time"] in hint):
            problems.append(f"callback time {hint!r}, want {call['callback_time']!r}")
    return problems
