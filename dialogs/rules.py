"""A small, safe expression language for a script's risk rules.

Rules are conditions over the fields a conversation recorded, e.g.::

    temperature >= 37.3 or has_symptoms == true
    contact_case and not uncertain(contact_case)
    travel_place in ["武汉", "北京"] or "武汉" in travel_place

Grammar (lowest precedence first)::

    expr       := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | comparison
    comparison := unary (("==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not" "in") unary)?
    unary      := "-" unary | primary
    primary    := NUMBER | STRING | "true" | "false" | "null" | "(" expr ")"
                | "[" (expr ("," expr)*)? "]" | NAME | NAME "(" (NAME ("," NAME)*)? ")"

Names are record fields; a field that was not answered is `null`. Ordering comparisons with `null`
or between a number and a string are false (never an error), so a rule over an unanswered question
simply does not fire. Functions take field names: `uncertain(f)` (the answer was hedged or had low
confidence), `answered(f)` (an answer was recorded), `unsure_risk()` (a risk question was answered
without a usable value: unsure, or a value too vague to set or clear a flag), and `uncertain_risk()` (any answer to a risk
question was uncertain).

This is parsed and evaluated here; nothing ever reaches Python's `eval`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# Functions a rule may call: name -> number of field-name arguments.
FUNCTIONS: dict[str, int] = {"uncertain": 1, "answered": 1, "uncertain_risk": 0, "unsure_risk": 0}
_KEYWORDS = {"and", "or", "not", "in", "true", "false", "null"}
_COMPARE_OPS = ("==", "!=", "<=", ">=", "<", ">")


class RuleError(ValueError):
    """A rule expression is malformed. `column` is 1-based within the expression text."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(f"column {column}: {message}")
        self.message = message
        self.column = column


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # num, str, name, op, end
    value: Any
    column: int  # 1-based


def tokenize(text: str) -> list[Token]:
    """Split an expression into tokens; raises RuleError naming the column of a bad character."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        col = i + 1
        if c.isspace():
            i += 1
        elif c.isdigit() or (c == "." and i + 1 < n and text[i + 1].isdigit()):
            j = i
            seen_dot = False
            while j < n and (text[j].isdigit() or (text[j] == "." and not seen_dot)):
                seen_dot = seen_dot or text[j] == "."
                j += 1
            raw = text[i:j]
            tokens.append(Token("num", float(raw) if "." in raw else int(raw), col))
            i = j
        elif c in "\"'":
            j = i + 1
            buf: list[str] = []
            while j < n and text[j] != c:
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                buf.append(text[j])
                j += 1
            if j >= n:
                raise RuleError(f"unterminated string starting with {c}", col)
            tokens.append(Token("str", "".join(buf), col))
            i = j + 1
        elif c.isalpha() or c == "_":
            j = i
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            tokens.append(Token("name", text[i:j], col))
            i = j
        else:
            two = text[i : i + 2]
            if two in ("==", "!=", "<=", ">="):
                tokens.append(Token("op", two, col))
                i += 2
            elif c in "<>()[],-":
                tokens.append(Token("op", c, col))
                i += 1
            elif c == "=":
                raise RuleError("'=' is not an operator; use '==' to compare", col)
            elif c in "&|!":
                word = {"&": "and", "|": "or", "!": "not"}[c]
                raise RuleError(f"unexpected '{c}'; write '{word}'", col)
            else:
                raise RuleError(f"unexpected character {c!r}", col)
    tokens.append(Token("end", None, n + 1))
    return tokens


# ----------------------------------------------------------------------------- AST


@dataclass(frozen=True, slots=True)
class Literal:
    value: Any


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    column: int


@dataclass(frozen=True, slots=True)
class ListExpr:
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: tuple[Field, ...]
    column: int


@dataclass(frozen=True, slots=True)
class Unary:
    op: str  # not, -
    operand: Expr


@dataclass(frozen=True, slots=True)
class Binary:
    op: str  # and, or, ==, !=, <, <=, >, >=, in, not in
    left: Expr
    right: Expr


Expr = Literal | Field | ListExpr | Call | Unary | Binary


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.pos = 0

    def peek(self) -> Token:
        return self.tokens[self.pos]

    def take(self) -> Token:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def at(self, kind: str, value: Any = None) -> bool:
        tok = self.peek()
        return tok.kind == kind and (value is None or tok.value == value)

    def expect_op(self, value: str, what: str) -> Token:
        tok = self.peek()
        if not (tok.kind == "op" and tok.value == value):
            raise RuleError(f"expected '{value}' {what}, found {_describe(tok)}", tok.column)
        return self.take()

    def parse(self) -> Expr:
        if self.at("end"):
            raise RuleError("empty expression", 1)
        expr = self.or_expr()
        tok = self.peek()
        if tok.kind != "end":
            raise RuleError(f"unexpected {_describe(tok)} after a complete expression", tok.column)
        return expr

    def or_expr(self) -> Expr:
        left = self.and_expr()
        while self.at("name", "or"):
            self.take()
            left = Binary("or", left, self.and_expr())
        return left

    def and_expr(self) -> Expr:
        left = self.not_expr()
        while self.at("name", "and"):
            self.take()
            left = Binary("and", left, self.not_expr())
        return left

    def not_expr(self) -> Expr:
        if self.at("name", "not"):
            self.take()
            return Unary("not", self.not_expr())
        return self.comparison()

    def comparison(self) -> Expr:
        left = self.unary()
        tok = self.peek()
        if tok.kind == "op" and tok.value in _COMPARE_OPS:
            self.take()
            return Binary(tok.value, left, self.unary())
        if tok.kind == "name" and tok.value == "in":
            self.take()
            return Binary("in", left, self.unary())
        if tok.kind == "name" and tok.value == "not" and self.tokens[self.pos + 1].value == "in":
            self.pos += 2
            return Binary("not in", left, self.unary())
        return left

    def unary(self) -> Expr:
        if self.at("op", "-"):
            self.take()
            return Unary("-", self.unary())
        return self.primary()

    def primary(self) -> Expr:
        tok = self.take()
        if tok.kind in ("num", "str"):
            return Literal(tok.value)
        if tok.kind == "op" and tok.value == "(":
            inner = self.or_expr()
            self.expect_op(")", f"to close '(' at column {tok.column}")
            return inner
        if tok.kind == "op" and tok.value == "[":
            items: list[Expr] = []
            if not self.at("op", "]"):
                items.append(self.or_expr())
                while self.at("op", ","):
                    self.take()
                    items.append(self.or_expr())
            self.expect_op("]", f"to close '[' at column {tok.column}")
            return ListExpr(tuple(items))
        if tok.kind == "name":
            word = tok.value
            if word == "true":
                return Literal(True)
            if word == "false":
                return Literal(False)
            if word == "null":
                return Literal(None)
            if word in _KEYWORDS:
                raise RuleError(f"unexpected '{word}'", tok.column)
            if self.at("op", "("):
                return self.call(tok)
            return Field(word, tok.column)
        raise RuleError(f"unexpected {_describe(tok)}", tok.column)

    def call(self, name_tok: Token) -> Call:
        name = name_tok.value
        if name not in FUNCTIONS:
            known = ", ".join(f"{f}()" for f in FUNCTIONS)
            raise RuleError(f"unknown function '{name}'; known: {known}", name_tok.column)
        self.expect_op("(", "")
        args: list[Field] = []
        if not self.at("op", ")"):
            while True:
                tok = self.take()
                if tok.kind != "name" or tok.value in _KEYWORDS:
                    raise RuleError(f"{name}() takes field names, found {_describe(tok)}", tok.column)
                args.append(Field(tok.value, tok.column))
                if not self.at("op", ","):
                    break
                self.take()
        self.expect_op(")", f"to close {name}(")
        if len(args) != FUNCTIONS[name]:
            raise RuleError(f"{name}() takes {FUNCTIONS[name]} argument(s), got {len(args)}", name_tok.column)
        return Call(name, tuple(args), name_tok.column)


def _describe(tok: Token) -> str:
    if tok.kind == "end":
        return "end of expression"
    if tok.kind == "str":
        return f"string {tok.value!r}"
    return f"'{tok.value}'"


# ----------------------------------------------------------------------------- evaluation


@dataclass(frozen=True, slots=True)
class RuleContext:
    """What a rule sees: recorded values (unanswered = absent), uncertain fields, risk fields."""

    values: Mapping[str, Any]
    uncertain: frozenset[str] = frozenset()
    risk_fields: frozenset[str] = frozenset()


Evaluator = Callable[[RuleContext], Any]


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _order(op: str, a: Any, b: Any) -> bool:
    if _num(a) and _num(b) or isinstance(a, str) and isinstance(b, str):
        if op == "<":
            return bool(a < b)
        if op == "<=":
            return bool(a <= b)
        if op == ">":
            return bool(a > b)
        return bool(a >= b)
    return False  # null or mixed types never satisfy an ordering


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) != isinstance(b, bool):
        return False  # true is not 1
    return bool(a == b)


def _contains(item: Any, container: Any) -> bool:
    if isinstance(container, list):
        return any(_equal(item, c) for c in container)
    if isinstance(container, str) and isinstance(item, str):
        return item in container
    return False


def _compile(expr: Expr) -> Evaluator:
    if isinstance(expr, Literal):
        value = expr.value
        return lambda ctx: value
    if isinstance(expr, Field):
        name = expr.name
        return lambda ctx: ctx.values.get(name)
    if isinstance(expr, ListExpr):
        items = [_compile(i) for i in expr.items]
        return lambda ctx: [f(ctx) for f in items]
    if isinstance(expr, Call):
        if expr.name == "uncertain":
            fname = expr.args[0].name
            return lambda ctx: fname in ctx.uncertain
        if expr.name == "answered":
            fname = expr.args[0].name
            return lambda ctx: fname in ctx.values
        if expr.name == "unsure_risk":  # a risk question answered, but with no usable value (说不清, 三十七度多)
            return lambda ctx: any(f in ctx.values and ctx.values[f] is None for f in ctx.risk_fields)
        return lambda ctx: not ctx.uncertain.isdisjoint(ctx.risk_fields)
    if isinstance(expr, Unary):
        inner = _compile(expr.operand)
        if expr.op == "not":
            return lambda ctx: not inner(ctx)
        return lambda ctx: -v if _num(v := inner(ctx)) else None
    left, right = _compile(expr.left), _compile(expr.right)
    op = expr.op
    if op == "and":
        return lambda ctx: bool(left(ctx)) and bool(right(ctx))
    if op == "or":
        return lambda ctx: bool(left(ctx)) or bool(right(ctx))
    if op == "==":
        return lambda ctx: _equal(left(ctx), right(ctx))
    if op == "!=":
        return lambda ctx: not _equal(left(ctx), right(ctx))
    if op == "in":
        return lambda ctx: _contains(left(ctx), right(ctx))
    if op == "not in":
        return lambda ctx: not _contains(left(ctx), right(ctx))
    return lambda ctx: _order(op, left(ctx), right(ctx))


def _fields(expr: Expr) -> list[Field]:
    if isinstance(expr, Field):
        return [expr]
    if isinstance(expr, ListExpr):
        return [f for i in expr.items for f in _fields(i)]
    if isinstance(expr, Call):
        return list(expr.args)
    if isinstance(expr, Unary):
        return _fields(expr.operand)
    if isinstance(expr, Binary):
        return _fields(expr.left) + _fields(expr.right)
    return []


class Condition:
    """A parsed, compiled rule condition."""

    __slots__ = ("_eval", "ast", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.ast = _Parser(text).parse()
        self._eval = _compile(self.ast)

    def fields(self) -> list[Field]:
        """Every field the condition names (with its column), in order of appearance."""
        return _fields(self.ast)

    def __call__(self, ctx: RuleContext) -> bool:
        return bool(self._eval(ctx))

    def __repr__(self) -> str:
        return f"Condition({self.text!r})"


def parse_condition(text: str) -> Condition:
    """Parse and compile a condition; raises RuleError with the 1-based column of the problem."""
    return Condition(text)
