"""Parses rule text into the AST, reporting errors at line:col with a caret and the valid options.

Grammar, loosest binding first::

    rule     := and ("or" and)*
    and      := not ("and" not)*
    not      := "not" not | atom
    atom     := "(" rule ")" | "exists" "(" path ")" | "in_segment" "(" STRING ")" | test
    test     := operand OP operand | operand "in" "[" literals "]" | operand "contains" operand
              | operand "starts_with" operand | path "is" ["not"] "null" | path | "true" | "false"
    operand  := path | literal | fn "(" STRING ["," STRING] ("," ("within=" DURATION | "where=" rule))* ")"
    path     := ROOT ("." (NAME | STRING))+

A bare path or boolean is a condition on its being ``true``: ``consent.marketing_sms`` parses as
``consent.marketing_sms == true``. Inside ``where=``, paths start with ``event.`` and name the
counted event's properties. ``parse(text, message=True)`` also accepts ``message.<property>`` paths, at the
top and inside ``where=``: a property of the message the send gate decides about (suppression rules only).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import cast

from rapport.rules.ast import (
    COMPARE_OPS,
    FUNCTIONS,
    MESSAGE_ROOT,
    PROPERTY_FUNCTIONS,
    ROOTS,
    And,
    Compare,
    Const,
    Contains,
    DateConst,
    DurationConst,
    EventFn,
    Exists,
    In,
    InSegment,
    IsNull,
    Literal_,
    Node,
    Not,
    Operand,
    Or,
    Path,
    Span,
    StartsWith,
)
from rapport.rules.errors import RuleSyntaxError
from rapport.rules.lexer import Token, tokenize

_TEST_WORDS = ("contains", "in", "is", "starts_with")
KEYWORDS = frozenset({*_TEST_WORDS, "and", "or", "not", "exists", "null", "true", "false"})
_AFTER_OPERAND = (*sorted(COMPARE_OPS), *_TEST_WORDS)
_CALLABLE = tuple(sorted((*FUNCTIONS, "exists", "in_segment")))
_FOLLOW = frozenset({"and", "or", ")", ",", ""})
_OPERAND = "a path such as traits.email, a literal or a function such as count(...)"
_CONSTANTS: dict[str, bool | None] = {"true": True, "false": False, "null": None}


def _options(names: Iterable[str]) -> str:
    return ", ".join(repr(n) for n in names)


def _suggest(word: str, names: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(names), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Parser:
    def __init__(self, text: str, message: bool = False) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.in_where = False
        self.message = message

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def word(self) -> str:
        """The current token as a keyword or punctuation mark; ``""`` at the end."""
        tok = self.tok
        return tok.text if tok.kind in ("name", "op", "punct") else ("" if tok.kind == "eof" else "\0")

    def advance(self) -> Token:
        tok = self.tok
        self.i += 1
        return tok

    def span(self, start: Token, end: int | None = None) -> Span:
        """The span from ``start`` to ``end``, by default the end of the last consumed token."""
        end = self.tokens[self.i - 1].end if end is None else end
        line = self.text.count("\n", 0, start.start) + 1
        col = start.start - (self.text.rfind("\n", 0, start.start) + 1) + 1
        return Span(start.start, end, line, col)

    def fail(self, expected: str, tok: Token | None = None, hint: str = "") -> RuleSyntaxError:
        tok = tok or self.tok
        if not hint and tok.kind == "name" and tok.text.lower() in KEYWORDS and tok.text not in KEYWORDS:
            hint = f" (keywords are lower-case: {tok.text.lower()!r})"
        return RuleSyntaxError(f"expected {expected}; got {tok.describe()}{hint}", self.text, tok.start)

    def expect(self, word: str) -> Token:
        if self.word() != word:
            raise self.fail(repr(word))
        return self.advance()

    def expect_string(self, what: str, example: str) -> str:
        if self.tok.kind != "string":
            raise self.fail(f"{what} as a quoted string, e.g. {example}")
        return cast(str, self.advance().value)

    def parse(self) -> Node:
        node = self.rule()
        if self.tok.kind != "eof":
            raise self.fail("'and', 'or' or end of rule")
        return node

    def rule(self) -> Node:
        start = self.tok
        items = [self.conjunction()]
        while self.word() == "or":
            self.advance()
            items.append(self.conjunction())
        return items[0] if len(items) == 1 else Or(tuple(items), span=self.span(start))

    def conjunction(self) -> Node:
        start = self.tok
        items = [self.negation()]
        while self.word() == "and":
            self.advance()
            items.append(self.negation())
        return items[0] if len(items) == 1 else And(tuple(items), span=self.span(start))

    def negation(self) -> Node:
        start = self.tok
        if self.word() == "not":
            self.advance()
            return Not(self.negation(), span=self.span(start))
        return self.atom()

    def atom(self) -> Node:
        start = self.tok
        word = self.word()
        if word == "(":
            self.advance()
            node = self.rule()
            self.expect(")")
            return node
        if word == "exists" and self.tokens[self.i + 1].text == "(":
            self.i += 2
            path = self.path()
            self.expect(")")
            return Exists(path, span=self.span(start))
        if word == "in_segment" and self.tokens[self.i + 1].text == "(":
            if self.in_where:
                raise self.fail("a condition on event properties such as event.total > 10")
            self.i += 2
            name = self.expect_string("a segment name", 'in_segment("vip")')
            self.expect(")")
            return InSegment(name, span=self.span(start))
        return self.test()

    def test(self) -> Node:
        start = self.tok
        left = self.operand()
        word = self.word()
        if word in COMPARE_OPS:
            self.advance()
            right = self.operand()
            return Compare(word, left, right, span=self.span(start))
        if word == "in":
            self.advance()
            return In(left, self.literal_list(), span=self.span(start))
        if word in ("contains", "starts_with"):
            self.advance()
            right = self.operand()
            kind = Contains if word == "contains" else StartsWith
            return kind(left, right, span=self.span(start))
        if word == "is" and isinstance(left, Path):
            self.advance()
            negated = self.word() == "not"
            if negated:
                self.advance()
            self.expect("null")
            return IsNull(left, negated, span=self.span(start))
        if word in _FOLLOW and (isinstance(left, Path) or (isinstance(left, Const) and isinstance(left.value, bool))):
            return Compare("==", left, Const(True, span=left.span), span=self.span(start))
        hint = " (did you mean '=='?)" if word == "=" else ""
        if isinstance(left, EventFn) and word in _FOLLOW:
            hint = f" ({left.fn}(...) is a value, not a condition: compare it, e.g. {left.fn}(...) > 0)"
        if word == "is":
            raise self.fail("a path before 'is null'", start)
        raise self.fail(f"one of {_options(_AFTER_OPERAND)}", hint=hint)

    def operand(self) -> Operand:
        tok = self.tok
        if tok.kind == "name" and tok.text not in _CONSTANTS:
            if tok.text in KEYWORDS or tok.text == "in_segment":
                raise self.fail(_OPERAND)
            if tok.text in FUNCTIONS or self.tokens[self.i + 1].text == "(":
                return self.event_fn()
            return self.path()
        literal = self.literal()
        if literal is None:
            raise self.fail(_OPERAND)
        return literal

    def literal(self) -> Literal_ | None:
        """The literal at the current token, or ``None`` when the token is not a literal."""
        tok = self.tok
        span = self.span(tok, tok.end)
        value: Literal_
        if tok.kind == "name" and tok.text in _CONSTANTS:
            value = Const(_CONSTANTS[tok.text], span=span)
        elif tok.kind in ("string", "int", "float"):
            value = Const(cast("str | int | float", tok.value), span=span)
        elif tok.kind == "duration":
            value = DurationConst(cast(int, tok.value), tok.text, span=span)
        elif tok.kind == "date":
            value = DateConst(cast(int, tok.value), tok.text, span=span)
        else:
            return None
        self.advance()
        return value

    def literal_list(self) -> tuple[Literal_, ...]:
        self.expect("[")
        values: list[Literal_] = []
        while self.word() != "]":
            if values:
                self.expect(",")
            literal = self.literal()
            if literal is None:
                raise self.fail("a literal: a string, number, true, false, null, duration or date")
            values.append(literal)
        self.advance()
        return tuple(values)

    def path(self) -> Path:
        start = self.tok
        roots = (*ROOTS, MESSAGE_ROOT) if self.message else ROOTS
        if start.kind == "name" and start.text == MESSAGE_ROOT and not self.message:
            raise self.fail(f"a path starting with one of {_options(sorted(ROOTS))}",
                            hint=" (message.<property> names the message being sent; only a SuppressionRule's "
                                 "rule can read it)")
        if start.kind != "name" or start.text not in roots:
            hint = _suggest(start.text, roots) if start.kind == "name" else ""
            raise self.fail(f"a path starting with one of {_options(sorted(roots))}", hint=hint)
        if self.in_where and start.text not in ("event", MESSAGE_ROOT):
            where = "'event.' or 'message.'" if self.message else "'event.'"
            raise self.fail(f"a path starting with {where} (inside where=, paths name the event's properties)")
        self.advance()
        parts: list[str] = []
        while self.word() == "." or not parts:
            self.expect(".")
            if self.tok.kind not in ("name", "string"):
                raise self.fail("a field name after '.'")
            parts.append(cast(str, self.advance().value))
        return Path(start.text, tuple(parts), span=self.span(start))

    def event_fn(self) -> EventFn:
        start = self.tok
        name = start.text
        if name not in FUNCTIONS:
            raise self.fail(f"one of {_options(_CALLABLE)}", hint=_suggest(name, _CALLABLE))
        if self.in_where:
            raise self.fail("a condition on event properties; event functions cannot be nested in where=")
        fn = name
        self.i += 1
        self.expect("(")
        event = self.expect_string("an event name", f'{fn}("Order Completed")')
        prop: str | None = None
        if fn in PROPERTY_FUNCTIONS:
            self.expect(",")
            prop = self.expect_string("the property to aggregate", f'{fn}("Order Completed", "revenue")')
        within: int | None = None
        where: Node | None = None
        while self.word() == ",":
            self.advance()
            key = self.tok
            if key.kind != "name" or key.text not in ("within", "where"):
                hint = _suggest(key.text, ("within", "where"))
                if key.kind == "string":
                    hint = f" ({fn} takes no property; only avg, max, min and sum do)"
                raise self.fail("'within=' or 'where='", hint=hint)
            if (within if key.text == "within" else where) is not None:
                raise RuleSyntaxError(f"{key.text}= is given twice", self.text, key.start)
            self.advance()
            self.expect("=")
            if key.text == "within":
                if self.tok.kind != "duration":
                    raise self.fail("a duration such as 30d (units 's', 'm', 'h', 'd', 'w')")
                within = cast(int, self.advance().value)
            else:
                self.in_where = True
                where = self.rule()
                self.in_where = False
        if self.word() != ")":
            raise self.fail("',' or ')'")
        self.advance()
        return EventFn(fn, event, prop, within, where, span=self.span(start))


def parse(text: str, *, message: bool = False) -> Node:
    """The AST of a rule; raises ``RuleSyntaxError`` (a ``ValidationError``) pointing at the problem.

    With ``message`` the rule may read ``message.<property>`` (a send-gate suppression rule); without it such
    a path is an error, so no segment, journey or content rule can depend on a message."""
    return _Parser(text, message).parse()
