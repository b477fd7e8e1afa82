"""Screening scripts: the YAML format, its validation (with line numbers), and the loaded `Script`.

A script is data: nodes with prompts, what each question expects, where each kind of answer leads,
re-prompts, end nodes with an outcome, prompts for the global handlers, and risk rules. The format is
documented in docs/scripts.md. `check_script` reports every problem it finds; `load_script` refuses a
script with any problem (raising `ScriptError`) so a campaign never runs an unsound script.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from dialogs import safeyaml
from dialogs.nlu.types import EXPECT_TYPES, TOPICS
from dialogs.rules import Condition, RuleError, parse_condition
from dialogs.types import RISK_LEVELS, SCRIPT_OUTCOMES
from tts.names import register_name

if TYPE_CHECKING:
    from dialogs.nlu.types import Nlu
    from dialogs.types import DialogSession

# Template variables a contact has. The phone and ID numbers are deliberately absent: never spoken.
CONTACT_FIELDS = ("name", "community", "address", "arrival_date")
NEVER_SPOKEN = ("phone", "national_id")

# Ends reached through a global handler or exhausted re-prompts, and the prompt key saying goodbye.
GLOBAL_PROMPTS: dict[str, str] = {
    "repeat": "好的，我再说一遍。",
    "busy": "好的，不打扰您了，我们稍后再联系您。再见！",
    "human": "好的，稍后会有工作人员给您回电话。再见！",
    "wrong_number": "不好意思，打扰您了。再见！",
    "opt_out": "好的，以后不再给您打电话了。祝您健康，再见！",
    "no_input": "不好意思，我没有听到您的声音。",
    "no_match": "不好意思，我没有听清楚。",
    "no_response": "我们稍后再联系您，再见！",
    "not_understood": "抱歉没能听明白，稍后会有工作人员联系您。再见！",
    # the "not an answer" replies (dialogs.nlu.types.NOT_ANSWER_INTENTS)
    "hold_on": "好的，不着急，我等一下。",
    "reask": "不好意思，我再问一下。",
    "ask_bot": "我是智能语音助手，替工作人员做健康随访，几个问题就好。",
    "scam": "我们是当地卫生健康部门的随访电话，不会向您要钱或验证码。您也可以挂断后拨打官方电话核实。",
    "scam_end": "好的，不打扰您了。您可以拨打当地卫生健康部门的官方电话核实。再见！",
}
DEFAULT_DTMF_PROMPTS: dict[str, str] = {
    "yes_no": "请按键回答：是或有请按1，不是或没有请按2。",
    "temperature": "请按键输入体温，星号当小数点，井号结束。",
    "choice": "请按键选择。",
}
YES_NO_BRANCHES = ("yes", "no", "unsure")
YES_NO_DTMF = (("1", "yes"), ("2", "no"))
DTMF_KEYS = frozenset("0123456789*#")

_TOP_KEYS = ("name", "description", "version", "start", "vars", "settings", "globals", "keywords", "nodes", "rules")
_SETTINGS_KEYS = ("max_tries", "no_input_s", "max_repeats", "hold_wait_s", "proxy_when", "max_prompt_s")
DEFAULT_HOLD_WAIT_S = 20.0
DEFAULT_MAX_PROMPT_S = 8.0
_NODE_KEYS = (
    "say",
    "expect",
    "field",
    "options",
    "dtmf",
    "keywords",
    "values",
    "next",
    "reprompt",
    "risk",
    "hints",
    "end",
    "no_input_s",
    "max_tries",
    "topic",
    "say_proxy",
    "reprompt_proxy",
    "say_when",
)
_REPROMPT_KEYS = ("no_input", "no_match", "dtmf")
_SAY_WHEN_KEYS = ("when", "say")
_RULE_KEYS = ("when", "risk", "reason", "reminder", "escalate")


@dataclass(frozen=True, slots=True)
class ScriptIssue:
    """One problem in a script file, at a 1-based line (0 when the whole file is concerned)."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class ScriptError(ValueError):
    """A script cannot be used; `.issues` lists every problem found."""

    def __init__(self, issues: list[ScriptIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


@dataclass(frozen=True, slots=True)
class Node:
    """One step of the conversation: a question (expect set), a statement, or an end (end set)."""

    name: str
    line: int
    say: str | None = None
    expect: str | None = None
    field: str | None = None
    options: tuple[tuple[str, tuple[str, ...]], ...] = ()
    dtmf: tuple[tuple[str, str], ...] = ()  # key -> branch
    keywords: tuple[tuple[str, tuple[str, ...]], ...] = ()  # branch -> phrases checked before the NLU
    values: tuple[tuple[str, Any], ...] = ()  # branch -> value recorded instead of the default
    next: tuple[tuple[str, str], ...] = ()  # branch (or "default") -> target node
    reprompt_no_input: tuple[str, ...] = ()
    reprompt_no_match: tuple[str, ...] = ()
    dtmf_prompt: str | None = None
    risk: bool = False
    hints: tuple[str, ...] = ()
    end: str | None = None
    no_input_s: float = 5.0
    max_tries: int = 2
    topic: str = ""  # what the question is about (dialogs.nlu.types.TOPICS); the NLU reads replies with it
    # Said instead of `say` / the re-prompts once a relative answers for the resident (third person).
    say_proxy: str | None = None
    reprompt_proxy_no_input: tuple[str, ...] = ()
    reprompt_proxy_no_match: tuple[str, ...] = ()
    dtmf_prompt_proxy: str | None = None
    # End and statement nodes: (condition, prompt) pairs; the first that holds is said instead of `say`.
    say_when: tuple[tuple[Condition, str], ...] = ()

    @property
    def kind(self) -> str:
        if self.end is not None:
            return "end"
        return "question" if self.expect is not None else "statement"

    def target(self, branch: str) -> str | None:
        """The node a branch leads to: its own entry, else `default`; yes_no `unsure` falls back to `no`."""
        nxt = dict(self.next)
        if branch in nxt:
            return nxt[branch]
        if "default" in nxt:
            return nxt["default"]
        if branch == "unsure" and self.expect == "yes_no":
            return nxt.get("no")
        if branch == "resident" and self.topic == "identity":  # 是我 / 我就是: the person asked for
            return self.target("yes")
        return None

    def branches(self) -> list[str]:
        """Every branch an answer to this node can take."""
        out: list[str] = []
        if self.expect == "yes_no":
            out.extend(YES_NO_BRANCHES)
            if self.topic == "identity":
                out.append("resident")
        elif self.expect in ("temperature", "free_text"):
            out.extend(("value", "unsure") if self.expect == "temperature" else ("value",))
        elif self.expect == "choice":
            out.extend(v for v, _ in self.options)
        elif self.kind == "statement":
            out.append("default")
        out.extend(b for b, _ in self.keywords)
        return out

    def templates(self) -> list[str]:
        out = [t for t in (self.say, self.dtmf_prompt, self.say_proxy, self.dtmf_prompt_proxy) if t]
        out += [t for _, t in self.say_when]
        return (out + list(self.reprompt_no_input) + list(self.reprompt_no_match)
                + list(self.reprompt_proxy_no_input) + list(self.reprompt_proxy_no_match))


@dataclass(frozen=True, slots=True)
class Rule:
    """`when` holds, then: raise risk to `risk`, add `reason`, need an SMS reminder, escalate to a human."""

    when: Condition
    line: int
    risk: str | None = None
    reason: str | None = None
    reminder: bool = False
    escalate: bool = False


@dataclass(frozen=True)
class Script:
    """A loaded, validated screening script."""

    name: str
    path: str
    sha256: str
    start: str
    nodes: Mapping[str, Node]
    rules: tuple[Rule, ...]
    globals: Mapping[str, str]
    vars: Mapping[str, str]
    description: str = ""
    max_repeats: int = 3
    fields: tuple[str, ...] = field(default=())  # record fields, in node order
    risk_fields: tuple[str, ...] = field(default=())
    # Script-level keywords (branch -> phrases), shared by every `topic: identity` question: a relative
    # who says who they are is recognised at the greeting and at the family question alike.
    keywords: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())
    hold_wait_s: float = DEFAULT_HOLD_WAIT_S  # how long "稍等，我去叫他" is waited for
    proxy_when: Condition | None = None  # the record says a relative answers for the resident
    max_prompt_s: float = DEFAULT_MAX_PROMPT_S  # `dialog check` warns about longer prompts

    def with_vars(self, values: Mapping[str, str]) -> Script:
        """The same script with some `vars` set (e.g. the center's name and phone from the config)."""
        merged = dict(self.vars)
        merged.update({k: str(v) for k, v in values.items() if v is not None})
        return dataclasses.replace(self, vars=merged)

    def all_prompts(self) -> list[str]:
        """Every prompt template (node prompts, re-prompts, DTMF prompts, global prompts), deduplicated."""
        seen: dict[str, None] = {}
        for node in self.nodes.values():
            for t in node.templates():
                seen.setdefault(t, None)
        for t in self.globals.values():
            seen.setdefault(t, None)
        return list(seen)

    def render(self, template: str, contact: Mapping[str, Any]) -> str:
        """Fill a template with contact fields (script `vars` are defaults and constants). A contact's
        name is registered with the offline voice so its surname is read the surname way (曾 zēng)."""
        if "{name}" in template:
            register_name(contact.get("name"))
        return template.format_map(_Values(self.vars, contact))

    def render_prompts(self, contact: Mapping[str, Any]) -> list[str]:
        """Every text the engine can say to this contact, i.e. what the TTS cache must hold."""
        seen: dict[str, None] = {}
        for t in self.all_prompts():
            seen.setdefault(self.render(t, contact), None)
        return list(seen)

    def prompt_sources(self) -> list[tuple[str, int, str]]:
        """(where, line, template) of every prompt: node prompts, re-prompts, closings, global prompts."""
        out: list[tuple[str, int, str]] = []
        for node in self.nodes.values():
            for t in node.templates():
                out.append((f"node '{node.name}'", node.line, t))
        for key, t in self.globals.items():
            out.append((f"globals.{key}", 0, t))
        return out

    def long_prompts(
        self, contact: Mapping[str, Any], seconds: Mapping[str, float], limit_s: float | None = None
    ) -> list[ScriptIssue]:
        """Warnings for prompts whose rendered audio (`seconds`: rendered text -> duration) is longer
        than `limit_s` (default: settings.max_prompt_s): residents hang up on long prompts."""
        limit = self.max_prompt_s if limit_s is None else limit_s
        out: list[ScriptIssue] = []
        seen: set[str] = set()
        for where, line, template in self.prompt_sources():
            text = self.render(template, contact)
            took = seconds.get(text)
            if took is None or took <= limit or text in seen:
                continue
            seen.add(text)
            out.append(ScriptIssue(self.path, line, f"warning: {where}: the prompt takes {took:.1f} s to say "
                                                    f"(limit {limit:g} s): {text}"))
        return out

    def new_session(
        self, contact: Mapping[str, Any], nlu: Nlu, *, low_confidence: float = 0.6, defer_nlu: bool = False
    ) -> DialogSession:
        """A fresh conversation with one contact (`defer_nlu`: see dialogs.engine.Session)."""
        from dialogs.engine import Session

        return Session(self, contact, nlu, low_confidence=low_confidence, defer_nlu=defer_nlu)


class _Values(dict[str, str]):
    def __init__(self, defaults: Mapping[str, str], contact: Mapping[str, Any]) -> None:
        super().__init__(defaults)
        for key in CONTACT_FIELDS:
            value = contact.get(key)
            if value not in (None, ""):
                self[key] = _spoken(value)

    def __missing__(self, key: str) -> str:
        return ""


def _spoken(value: Any) -> str:
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, dt.date):
        return f"{value.month}月{value.day}日"
    return str(value)


def template_variables(template: str) -> list[str]:
    """The `{variables}` a template uses; raises ValueError on broken braces."""
    names = []
    for _, fname, spec, conv in string.Formatter().parse(template):
        if fname is None:
            continue
        if fname == "" or not fname.isidentifier():
            raise ValueError(f"bad template variable {{{fname}}}; use a plain name like {{name}}")
        if spec or conv:
            raise ValueError(f"template variable {{{fname}}} may not carry a format spec or conversion")
        names.append(fname)
    return names


# ----------------------------------------------------------------------------- YAML with lines


def _compose(text: str) -> tuple[Any, dict[tuple[str, ...], int], list[tuple[int, str]]]:
    """Plain data, a map of key path -> 1-based line, and structural problems (line, message), read with
    the tool's safe YAML loader (size, depth and alias-expansion limits).

    Keys are always text (`yes:`, `1:` stay "yes", "1"); only true/false are booleans. A key given
    twice in one mapping is a problem (YAML would silently keep the last one, e.g. a node pasted
    twice replacing the first). Raises yaml.MarkedYAMLError or safeyaml.YamlError.
    """
    loaded = safeyaml.load(text, yaml12_bools=True)
    problems = [
        (d.line, f"duplicate key '{d.key}' in {' > '.join(d.path) or 'the top level'} (first at line {d.first_line})")
        for d in loaded.duplicates
    ]
    return loaded.data, loaded.lines, problems


class _Checker:
    """Collects issues while building nodes and rules from parsed YAML."""

    def __init__(self, file: str, lines: dict[tuple[str, ...], int]) -> None:
        self.file = file
        self.lines = lines
        self.issues: list[ScriptIssue] = []

    def line(self, *path: str) -> int:
        p: tuple[str, ...] = tuple(path)
        while p and p not in self.lines:
            p = p[:-1]
        return self.lines.get(p, 0)

    def add(self, path: tuple[str, ...], message: str) -> None:
        self.issues.append(ScriptIssue(self.file, self.line(*path), message))

    def mapping(self, value: Any, path: tuple[str, ...], what: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.add(path, f"{what} must be a mapping, got {_type(value)}")
            return {}
        return value

    def keys(self, data: Mapping[str, Any], allowed: Iterable[str], path: tuple[str, ...], what: str) -> None:
        allowed = tuple(allowed)
        for key in data:
            if key not in allowed:
                self.add((*path, key), f"unknown key '{key}' in {what}; valid keys: {', '.join(allowed)}")

    def text(self, value: Any, path: tuple[str, ...], what: str) -> str | None:
        if value is None:
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str) or not value.strip():
            self.add(path, f"{what} must be non-empty text, got {_type(value)}")
            return None
        return value.strip()

    def texts(self, value: Any, path: tuple[str, ...], what: str) -> tuple[str, ...]:
        if value is None:
            return ()
        items = value if isinstance(value, list) else [value]
        out = []
        for i, item in enumerate(items):
            t = self.text(item, (*path, str(i)) if isinstance(value, list) else path, what)
            if t is not None:
                out.append(t)
        return tuple(out)

    def number(self, value: Any, path: tuple[str, ...], what: str, lo: float, hi: float) -> float | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            self.add(path, f"{what} must be a number from {lo:g} to {hi:g}, got {value!r}")
            return None
        return float(value)


def _type(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "text", bool: "true/false"}.get(type(value), type(value).__name__)


def _parse(text: str, file: str) -> tuple[dict[str, Any] | None, _Checker]:
    try:
        data, lines, problems = _compose(text)
    except safeyaml.YamlError as exc:
        checker = _Checker(file, {})
        message = exc.message
        if "refers to itself" in message:
            message = "YAML alias refers to itself (a recursive '*' alias)"
        checker.issues.append(ScriptIssue(file, exc.line, message))
        return None, checker
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        col = f" (column {mark.column + 1})" if mark else ""
        checker = _Checker(file, {})
        checker.issues.append(ScriptIssue(file, line, f"YAML syntax error{col}: {exc.problem or exc}"))
        return None, checker
    checker = _Checker(file, lines)
    checker.issues.extend(ScriptIssue(file, line, message) for line, message in problems)
    if not isinstance(data, dict):
        checker.issues.append(ScriptIssue(file, 1 if data is not None else 0, "a script must be a YAML mapping with 'nodes'"))
        return None, checker
    return data, checker


def _build(data: dict[str, Any], c: _Checker, file: str, sha: str) -> Script | None:
    c.keys(data, _TOP_KEYS, (), "the script")
    name = c.text(data.get("name"), ("name",), "'name'") or Path(file).stem

    vars_raw = c.mapping(data.get("vars"), ("vars",), "'vars'")
    script_vars: dict[str, str] = {}
    for key, value in vars_raw.items():
        if key in NEVER_SPOKEN:
            c.add(("vars", key), f"'{key}' must never be spoken; remove it from 'vars'")
        elif not str(key).isidentifier():
            c.add(("vars", key), f"variable name '{key}' is not a plain name")
        else:
            script_vars[key] = _spoken(value) if value is not None else ""
    known_vars = set(CONTACT_FIELDS) | set(script_vars)

    settings = c.mapping(data.get("settings"), ("settings",), "'settings'")
    c.keys(settings, _SETTINGS_KEYS, ("settings",), "'settings'")
    max_tries = 2
    if "max_tries" in settings:
        v = c.number(settings["max_tries"], ("settings", "max_tries"), "'settings.max_tries'", 0, 10)
        max_tries = int(v) if v is not None else max_tries
    no_input_s = 5.0
    if "no_input_s" in settings:
        v = c.number(settings["no_input_s"], ("settings", "no_input_s"), "'settings.no_input_s'", 1, 60)
        no_input_s = v if v is not None else no_input_s
    max_repeats = 3
    if "max_repeats" in settings:
        v = c.number(settings["max_repeats"], ("settings", "max_repeats"), "'settings.max_repeats'", 0, 10)
        max_repeats = int(v) if v is not None else max_repeats
    hold_wait_s = DEFAULT_HOLD_WAIT_S
    if "hold_wait_s" in settings:
        v = c.number(settings["hold_wait_s"], ("settings", "hold_wait_s"), "'settings.hold_wait_s'", 1, 120)
        hold_wait_s = v if v is not None else hold_wait_s
    max_prompt_s = DEFAULT_MAX_PROMPT_S
    if "max_prompt_s" in settings:
        v = c.number(settings["max_prompt_s"], ("settings", "max_prompt_s"), "'settings.max_prompt_s'", 1, 120)
        max_prompt_s = v if v is not None else max_prompt_s
    proxy_when: Condition | None = None
    proxy_raw = settings.get("proxy_when")
    if proxy_raw is not None:
        if not isinstance(proxy_raw, str) or not proxy_raw.strip():
            c.add(("settings", "proxy_when"), "'settings.proxy_when' must be a condition, e.g. identity_confirmed == \"family\"")
        else:
            try:
                proxy_when = parse_condition(proxy_raw)
            except RuleError as exc:
                c.add(("settings", "proxy_when"), f"'settings.proxy_when': bad condition at column {exc.column}: {exc.message}")

    script_keywords: list[tuple[str, tuple[str, ...]]] = []
    for branch, phrases in c.mapping(data.get("keywords"), ("keywords",), "'keywords'").items():
        ph = c.texts(phrases, ("keywords", branch), f"keywords of '{branch}'")
        if not ph:
            c.add(("keywords", branch), f"script keyword branch '{branch}' has no phrases")
        script_keywords.append((str(branch), tuple("".join(p.split()) for p in ph)))

    globals_raw = c.mapping(data.get("globals"), ("globals",), "'globals'")
    c.keys(globals_raw, GLOBAL_PROMPTS, ("globals",), "'globals'")
    prompts = dict(GLOBAL_PROMPTS)
    for key, value in globals_raw.items():
        t = c.text(value, ("globals", key), f"'globals.{key}'")
        if t is not None and key in prompts:
            prompts[key] = t

    nodes_raw = data.get("nodes")
    if nodes_raw is None:
        c.add((), "the script has no 'nodes'")
        nodes_raw = {}
    nodes_raw = c.mapping(nodes_raw, ("nodes",), "'nodes'")
    if not nodes_raw and "nodes" in data:
        c.add(("nodes",), "'nodes' is empty")
    nodes: dict[str, Node] = {}
    for node_name, raw in nodes_raw.items():
        node = _build_node(str(node_name), raw, c, max_tries, no_input_s, tuple(script_keywords))
        if node is not None:
            nodes[node.name] = node

    start = data.get("start")
    if start is None:
        start = next(iter(nodes_raw), "")
    elif not isinstance(start, str) or start not in nodes_raw:
        c.add(("start",), f"'start' names unknown node '{start}'" + _known(nodes_raw))
        start = ""

    _check_graph(nodes, nodes_raw, str(start), c)
    _check_templates(nodes, prompts, known_vars, c)

    fields: dict[str, None] = {}
    risk_fields: dict[str, None] = {}
    for node in nodes.values():
        if node.field:
            fields.setdefault(node.field, None)
            if node.risk:
                risk_fields.setdefault(node.field, None)
    rules = _build_rules(data.get("rules"), c, set(fields))
    _check_conditions(nodes_raw, c, set(fields))
    if proxy_when is not None:
        for f in proxy_when.fields():
            if f.name not in fields:
                c.add(("settings", "proxy_when"), f"'settings.proxy_when': unknown field '{f.name}'; recorded fields: {', '.join(sorted(fields)) or 'none'}")

    if c.issues:
        return None
    return Script(
        name=name,
        path=file,
        sha256=sha,
        start=str(start),
        nodes=nodes,
        rules=tuple(rules),
        globals=prompts,
        vars=script_vars,
        description=str(data.get("description") or ""),
        max_repeats=max_repeats,
        fields=tuple(fields),
        risk_fields=tuple(risk_fields),
        keywords=tuple(script_keywords),
        hold_wait_s=hold_wait_s,
        proxy_when=proxy_when,
        max_prompt_s=max_prompt_s,
    )


def _check_conditions(nodes_raw: Mapping[str, Any], c: _Checker, fields: set[str]) -> None:
    """Field names in the nodes' `say_when` conditions must be recorded fields."""
    for name, raw in nodes_raw.items():
        if not isinstance(raw, dict) or not isinstance(raw.get("say_when"), list):
            continue
        for i, item in enumerate(raw["say_when"]):
            when = item.get("when") if isinstance(item, dict) else None
            if not isinstance(when, str):
                continue
            try:
                cond = parse_condition(when)
            except RuleError:
                continue  # reported by _build_node
            for f in cond.fields():
                if f.name not in fields:
                    c.add(("nodes", str(name), "say_when", str(i), "when"),
                          f"node '{name}': say_when {i + 1}: unknown field '{f.name}'; recorded fields: {', '.join(sorted(fields)) or 'none'}")


def _build_say_when(raw: Any, path: tuple[str, ...], name: str, c: _Checker) -> tuple[tuple[Condition, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        c.add(path, f"node '{name}': 'say_when' must be a list of {{when: condition, say: prompt}}")
        return ()
    out: list[tuple[Condition, str]] = []
    for i, item in enumerate(raw):
        ipath = (*path, str(i))
        if not isinstance(item, dict):
            c.add(ipath, f"node '{name}': say_when {i + 1} must be a mapping with 'when' and 'say'")
            continue
        c.keys(item, _SAY_WHEN_KEYS, ipath, f"say_when {i + 1} of node '{name}'")
        say = c.text(item.get("say"), (*ipath, "say"), f"'say' of say_when {i + 1}")
        when = item.get("when")
        if not isinstance(when, str) or not when.strip():
            c.add(ipath, f"node '{name}': say_when {i + 1} needs 'when': a condition over recorded fields")
            continue
        try:
            cond = parse_condition(when)
        except RuleError as exc:
            c.add((*ipath, "when"), f"node '{name}': say_when {i + 1}: bad condition at column {exc.column}: {exc.message}")
            continue
        if say is not None:
            out.append((cond, say))
    return tuple(out)


def _known(names: Iterable[str]) -> str:
    names = list(names)
    return f" (nodes: {', '.join(names)})" if names else ""


def _build_node(
    name: str, raw: Any, c: _Checker, max_tries: int, no_input_s: float,
    script_keywords: tuple[tuple[str, tuple[str, ...]], ...] = (),
) -> Node | None:
    path = ("nodes", name)
    if not isinstance(raw, dict):
        c.add(path, f"node '{name}' must be a mapping, got {_type(raw)}")
        return None
    c.keys(raw, _NODE_KEYS, path, f"node '{name}'")
    say = c.text(raw.get("say"), (*path, "say"), f"'say' of node '{name}'")
    expect = raw.get("expect")
    end = raw.get("end")
    kw: dict[str, Any] = {}

    say_when = _build_say_when(raw.get("say_when"), (*path, "say_when"), name, c)
    topic = raw.get("topic")
    if topic is not None and topic not in TOPICS:
        c.add((*path, "topic"), f"node '{name}': unknown topic '{topic}'; topics: {', '.join(TOPICS)}")
        topic = None
    if end is not None:
        if end not in SCRIPT_OUTCOMES:
            c.add((*path, "end"), f"node '{name}': unknown outcome '{end}'; outcomes: {', '.join(SCRIPT_OUTCOMES)}")
        for key in ("expect", "next", "field", "options", "dtmf", "keywords", "reprompt", "say_proxy", "reprompt_proxy"):
            if key in raw:
                c.add((*path, key), f"end node '{name}' cannot have '{key}'")
        return Node(name=name, line=c.line(*path), say=say, end=str(end), say_when=say_when)

    if expect is not None and expect not in EXPECT_TYPES:
        c.add((*path, "expect"), f"node '{name}': unknown expect type '{expect}'; expected one of: {', '.join(EXPECT_TYPES)}")
        expect = "free_text"  # keep checking the rest of the node
    if say is None and "say" not in raw:
        what = "question" if expect else "statement"
        c.add(path, f"{what} node '{name}' has no prompt ('say')")

    if expect is None:
        for key in ("field", "options", "dtmf", "keywords", "values", "reprompt", "hints", "topic", "reprompt_proxy"):
            if key in raw:
                c.add((*path, key), f"node '{name}' has '{key}' but no 'expect'")
        kw["say_when"] = say_when
        kw["say_proxy"] = c.text(raw.get("say_proxy"), (*path, "say_proxy"), f"'say_proxy' of node '{name}'")
        nxt = raw.get("next")
        if nxt is None:
            c.add(path, f"statement node '{name}' needs 'next' (or 'expect' for a question, 'end' for an end)")
        elif not isinstance(nxt, str):
            c.add((*path, "next"), f"statement node '{name}': 'next' must be one node name")
        else:
            kw["next"] = (("default", nxt),)
        return Node(name=name, line=c.line(*path), say=say, **kw)

    fld = raw.get("field")
    if fld is not None:
        if not isinstance(fld, str) or not fld.isidentifier():
            c.add((*path, "field"), f"node '{name}': field name '{fld}' must be a plain name (letters, digits, _)")
        else:
            kw["field"] = fld

    options: list[tuple[str, tuple[str, ...]]] = []
    if expect == "choice":
        opts = raw.get("options")
        if not isinstance(opts, dict) or not opts:
            c.add((*path, "options") if "options" in raw else (*path, "expect"), f"choice node '{name}' needs 'options': a mapping of value -> phrases")
        else:
            for value, phrases in opts.items():
                ph = c.texts(phrases, (*path, "options", value), f"phrases of option '{value}'")
                if not ph:
                    c.add((*path, "options", value), f"option '{value}' of node '{name}' has no phrases")
                options.append((str(value), ph))
    elif "options" in raw:
        c.add((*path, "options"), f"node '{name}': 'options' only applies to expect: choice")
    kw["options"] = tuple(options)

    if say_when:
        c.add((*path, "say_when"), f"node '{name}': 'say_when' is for end and statement nodes")
    keywords: list[tuple[str, tuple[str, ...]]] = []
    for branch, phrases in c.mapping(raw.get("keywords"), (*path, "keywords"), "'keywords'").items():
        ph = c.texts(phrases, (*path, "keywords", branch), f"keywords of '{branch}'")
        if not ph:
            c.add((*path, "keywords", branch), f"keyword branch '{branch}' of node '{name}' has no phrases")
        keywords.append((str(branch), tuple("".join(p.split()) for p in ph)))
    if topic == "identity":  # the script's shared keywords (relatives) hold at every identity question
        own = {b for b, _ in keywords}
        for branch, ph in script_keywords:
            if branch in own:
                keywords = [(b, tuple(dict.fromkeys((*p, *ph)))) if b == branch else (b, p) for b, p in keywords]
            else:
                keywords.append((branch, ph))
    kw["keywords"] = tuple(keywords)
    kw["topic"] = topic or ""

    node_for_branches = Node(name=name, line=0, expect=expect, options=kw["options"], keywords=kw["keywords"],
                             topic=kw["topic"])
    branches = node_for_branches.branches()

    if "dtmf" in raw:
        dtmf: list[tuple[str, str]] = []
        mapping = c.mapping(raw.get("dtmf"), (*path, "dtmf"), "'dtmf'")
        for key, branch in mapping.items():
            skey = str(key)
            if skey not in DTMF_KEYS:
                c.add((*path, "dtmf", key), f"node '{name}': '{skey}' is not a phone key (0-9, *, #)")
            elif str(branch) not in branches:
                c.add((*path, "dtmf", key), f"node '{name}': key {skey} maps to '{branch}', which is not an answer here ({', '.join(branches)})")
            else:
                dtmf.append((skey, str(branch)))
        if expect == "temperature":
            c.add((*path, "dtmf"), f"node '{name}': temperature questions take digits with * and #; no 'dtmf' mapping")
        kw["dtmf"] = tuple(dtmf)
    elif expect == "yes_no":
        kw["dtmf"] = YES_NO_DTMF

    values = c.mapping(raw.get("values"), (*path, "values"), "'values'")
    for branch in values:
        if branch not in branches:
            c.add((*path, "values", branch), f"node '{name}': 'values' names '{branch}', which is not an answer here ({', '.join(branches)})")
    kw["values"] = tuple((str(k), v) for k, v in values.items())

    nxt = raw.get("next")
    targets: list[tuple[str, str]] = []
    if nxt is None:
        c.add(path, f"question node '{name}' needs 'next'")
    elif isinstance(nxt, str):
        targets.append(("default", nxt))
    elif isinstance(nxt, dict):
        for branch, target in nxt.items():
            if branch != "default" and branch not in branches:
                c.add((*path, "next", branch), f"node '{name}': 'next' has '{branch}', which is not an answer here (answers: {', '.join(branches)}, default)")
            elif not isinstance(target, str):
                c.add((*path, "next", branch), f"node '{name}': target of '{branch}' must be a node name")
            else:
                targets.append((str(branch), target))
    else:
        c.add((*path, "next"), f"node '{name}': 'next' must be a node name or a mapping answer -> node")
    kw["next"] = tuple(targets)

    rp = c.mapping(raw.get("reprompt"), (*path, "reprompt"), "'reprompt'")
    c.keys(rp, _REPROMPT_KEYS, (*path, "reprompt"), f"'reprompt' of node '{name}'")
    kw["reprompt_no_input"] = c.texts(rp.get("no_input"), (*path, "reprompt", "no_input"), "a re-prompt")
    kw["reprompt_no_match"] = c.texts(rp.get("no_match"), (*path, "reprompt", "no_match"), "a re-prompt")
    kw["dtmf_prompt"] = c.text(rp.get("dtmf"), (*path, "reprompt", "dtmf"), "the DTMF prompt")
    if kw["dtmf_prompt"] is None and (expect in ("yes_no", "temperature") or kw.get("dtmf")):
        kw["dtmf_prompt"] = DEFAULT_DTMF_PROMPTS.get(expect or "", DEFAULT_DTMF_PROMPTS["choice"])
    kw["say_proxy"] = c.text(raw.get("say_proxy"), (*path, "say_proxy"), f"'say_proxy' of node '{name}'")
    rpp = c.mapping(raw.get("reprompt_proxy"), (*path, "reprompt_proxy"), "'reprompt_proxy'")
    c.keys(rpp, _REPROMPT_KEYS, (*path, "reprompt_proxy"), f"'reprompt_proxy' of node '{name}'")
    kw["reprompt_proxy_no_input"] = c.texts(rpp.get("no_input"), (*path, "reprompt_proxy", "no_input"), "a re-prompt")
    kw["reprompt_proxy_no_match"] = c.texts(rpp.get("no_match"), (*path, "reprompt_proxy", "no_match"), "a re-prompt")
    kw["dtmf_prompt_proxy"] = c.text(rpp.get("dtmf"), (*path, "reprompt_proxy", "dtmf"), "the DTMF prompt")

    risk = raw.get("risk", False)
    if not isinstance(risk, bool):
        c.add((*path, "risk"), f"node '{name}': 'risk' must be true or false")
        risk = False
    kw["risk"] = risk
    kw["hints"] = c.texts(raw.get("hints"), (*path, "hints"), "a hint")
    kw["no_input_s"] = no_input_s
    if "no_input_s" in raw:
        v = c.number(raw["no_input_s"], (*path, "no_input_s"), f"'no_input_s' of node '{name}'", 1, 60)
        kw["no_input_s"] = v if v is not None else no_input_s
    kw["max_tries"] = max_tries
    if "max_tries" in raw:
        v = c.number(raw["max_tries"], (*path, "max_tries"), f"'max_tries' of node '{name}'", 0, 10)
        kw["max_tries"] = int(v) if v is not None else max_tries

    node = Node(name=name, line=c.line(*path), say=say, expect=expect, **kw)
    for branch in branches:
        if node.target(branch) is None and kw["next"]:
            c.add((*path, "next"), f"node '{name}': no target for answer '{branch}' (add it or 'default' under 'next')")
    return node


def _check_graph(nodes: Mapping[str, Node], raw: Mapping[str, Any], start: str, c: _Checker) -> None:
    edges: dict[str, list[str]] = {n: [] for n in nodes}
    unknown_targets: set[str] = set()  # already reported; not also reported as dead ends
    for node in nodes.values():
        for branch, target in node.next:
            if target not in raw:
                what = "'next'" if branch == "default" and len(node.next) == 1 else f"'{branch}'"
                c.add(("nodes", node.name, "next", branch), f"node '{node.name}': {what} goes to unknown node '{target}'")
                unknown_targets.add(node.name)
            elif target in nodes:
                edges[node.name].append(target)
    if not start or start not in nodes:
        return
    seen = {start}
    todo = [start]
    while todo:
        for t in edges[todo.pop()]:
            if t not in seen:
                seen.add(t)
                todo.append(t)
    for name in nodes:
        if name not in seen:
            c.add(("nodes", name), f"node '{name}' is unreachable from the start node '{start}'")
    # Nodes with a way to an end: backwards from every end node.
    reverse: dict[str, list[str]] = {n: [] for n in nodes}
    for src, targets in edges.items():
        for t in targets:
            reverse[t].append(src)
    can_end = {n for n, node in nodes.items() if node.kind == "end"} | unknown_targets
    todo = list(can_end)
    while todo:
        for src in reverse[todo.pop()]:
            if src not in can_end:
                can_end.add(src)
                todo.append(src)
    if not any(node.kind == "end" for node in nodes.values()) and nodes:
        c.add(("nodes",), "the script has no end node (a node with 'end: <outcome>')")
        return
    for name in nodes:
        if name in seen and name not in can_end:
            c.add(("nodes", name), f"node '{name}' has no way to an end node (it loops forever)")


def _check_templates(nodes: Mapping[str, Node], prompts: Mapping[str, str], known: set[str], c: _Checker) -> None:
    def check(template: str, path: tuple[str, ...]) -> None:
        if len(template) > PROMPT_MAX:
            c.add(path, f"prompt {'.'.join(path[1:]) or path[0]} is {len(template):,} characters long; at most "
                  f"{PROMPT_MAX} (a prompt on the phone takes seconds, not minutes)")
            return
        try:
            names = template_variables(template)
        except ValueError as exc:
            c.add(path, str(exc))
            return
        for var in names:
            if var in NEVER_SPOKEN:
                c.add(path, f"template variable {{{var}}}: the {var.replace('_', ' ')} must never be spoken")
            elif var not in known:
                c.add(path, f"unknown template variable {{{var}}}; contacts have: {', '.join(CONTACT_FIELDS)}"
                      + (f"; script vars: {', '.join(sorted(known - set(CONTACT_FIELDS)))}" if known - set(CONTACT_FIELDS) else ""))

    for node in nodes.values():
        base = ("nodes", node.name)
        if node.say:
            check(node.say, (*base, "say"))
        if node.dtmf_prompt:
            check(node.dtmf_prompt, (*base, "reprompt", "dtmf"))
        for i, t in enumerate(node.reprompt_no_input):
            check(t, (*base, "reprompt", "no_input", str(i)))
        for i, t in enumerate(node.reprompt_no_match):
            check(t, (*base, "reprompt", "no_match", str(i)))
        if node.say_proxy:
            check(node.say_proxy, (*base, "say_proxy"))
        for proxy_text in (*node.reprompt_proxy_no_input, *node.reprompt_proxy_no_match, node.dtmf_prompt_proxy):
            if proxy_text:
                check(proxy_text, (*base, "reprompt_proxy"))
        for i, (_, when_text) in enumerate(node.say_when):
            check(when_text, (*base, "say_when", str(i), "say"))
    for key, t in prompts.items():
        check(t, ("globals", key))


def _build_rules(raw: Any, c: _Checker, fields: set[str]) -> list[Rule]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        c.add(("rules",), f"'rules' must be a list, got {_type(raw)}")
        return []
    rules = []
    for i, item in enumerate(raw):
        path = ("rules", str(i))
        if not isinstance(item, dict):
            c.add(path, f"rule {i + 1} must be a mapping with 'when', got {_type(item)}")
            continue
        c.keys(item, _RULE_KEYS, path, f"rule {i + 1}")
        when = item.get("when")
        if not isinstance(when, str) or not when.strip():
            c.add(path, f"rule {i + 1} needs 'when': a condition over recorded fields")
            continue
        try:
            cond = parse_condition(when)
        except RuleError as exc:
            c.add((*path, "when"), f"rule {i + 1}: bad condition at column {exc.column}: {exc.message}")
            continue
        for f in cond.fields():
            if f.name not in fields:
                c.add((*path, "when"), f"rule {i + 1}: unknown field '{f.name}' (column {f.column}); recorded fields: {', '.join(sorted(fields)) or 'none'}")
        risk = item.get("risk")
        if risk is not None and risk not in RISK_LEVELS:
            c.add((*path, "risk"), f"rule {i + 1}: unknown risk level '{risk}'; levels: {', '.join(RISK_LEVELS)}")
            risk = None
        flags = {}
        for key in ("reminder", "escalate"):
            v = item.get(key, False)
            if not isinstance(v, bool):
                c.add((*path, key), f"rule {i + 1}: '{key}' must be true or false")
                v = False
            flags[key] = v
        if risk is None and not flags["reminder"] and not flags["escalate"] and "reason" not in item:
            c.add(path, f"rule {i + 1} does nothing: give it 'risk', 'reminder', 'escalate' or 'reason'")
        reason = c.text(item.get("reason"), (*path, "reason"), f"'reason' of rule {i + 1}")
        rules.append(Rule(when=cond, line=c.line(*path), risk=risk, reason=reason, **flags))
    return rules


# ----------------------------------------------------------------------------- entry points


SCRIPT_MAX_BYTES = 1 << 20
#: The longest prompt text: about a minute of speech.
PROMPT_MAX = 500


def _read(path: str | Path) -> tuple[bytes | None, str, list[ScriptIssue]]:
    try:
        raw, text = safeyaml.read_text(path, max_bytes=SCRIPT_MAX_BYTES, what="script")
    except safeyaml.YamlError as exc:
        message = "script file not found" if exc.message == "script not found" else exc.message
        return None, "", [ScriptIssue(str(path), exc.line, message)]
    return raw, text, []


def _load(path: str | Path) -> tuple[Script | None, list[ScriptIssue]]:
    raw, text, issues = _read(path)
    if raw is None:
        return None, issues
    file = str(path)
    data, checker = _parse(text, file)
    if data is None:
        return None, checker.issues
    script = _build(data, checker, file, hashlib.sha256(raw).hexdigest())
    return script, sorted(checker.issues, key=lambda i: i.line)


def check_script(path: str | Path) -> list[ScriptIssue]:
    """Every problem in a script file, sorted by line; an empty list means the script is sound."""
    return _load(path)[1]


def load_script_text(text: str, source: str) -> Script:
    """Load and validate a script from its text (a campaign's stored snapshot); `source` names it in
    messages. Raises ScriptError listing every problem."""
    data, checker = _parse(text, source)
    if data is None:
        raise ScriptError(checker.issues or [ScriptIssue(source, 0, "the script could not be loaded")])
    script = _build(data, checker, source, hashlib.sha256(text.encode("utf-8")).hexdigest())
    if checker.issues or script is None:
        raise ScriptError(sorted(checker.issues, key=lambda i: i.line) or [ScriptIssue(source, 0, "the script could not be loaded")])
    return script


def load_script(path: str | Path) -> Script:
    """Load and validate a script. Raises ScriptError listing every problem."""
    script, issues = _load(path)
    if issues or script is None:
        raise ScriptError(issues or [ScriptIssue(str(path), 0, "the script could not be loaded")])
    return script
