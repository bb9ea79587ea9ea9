"""Splits rule text into tokens: names, strings, numbers, durations, dates and punctuation."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from rapport.durations import parse_duration
from rapport.errors import ValidationError
from rapport.rules.dates import LITERAL_PATTERN, match_to_ms
from rapport.rules.errors import RuleSyntaxError

Kind = Literal["name", "string", "int", "float", "duration", "date", "op", "punct", "eof"]


@dataclass(frozen=True, slots=True)
class Token:
    """One token; ``value`` is the decoded string, number or milliseconds of a literal."""

    kind: Kind
    text: str
    value: object
    start: int
    end: int

    def describe(self) -> str:
        return "end of rule" if self.kind == "eof" else repr(self.text)


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_DATE_START = re.compile(r"[0-9]+-[0-9]")
_DATE_WORD = re.compile(r"[0-9A-Za-z_:.+-]*")
_IDENT_CHAR = re.compile(r"[A-Za-z0-9_]")
_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "r": "\r", "t": "\t"}
_ESCAPE_LIST = r"\\ \" \' \n \r \t \uXXXX"
_HEX4 = re.compile(r"[0-9A-Fa-f]{4}")
_TWO_CHAR_OPS = ("==", "!=", "<=", ">=")
_DIGITS = frozenset("0123456789")
_HINTS = {"&": "use 'and'", "|": "use 'or'", "!": "use 'not'"}


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.tokens: list[Token] = []

    def fail(self, problem: str, at: int) -> RuleSyntaxError:
        return RuleSyntaxError(problem, self.text, at)

    def add(self, kind: Kind, start: int, end: int, value: object = None) -> None:
        self.tokens.append(Token(kind, self.text[start:end], value, start, end))
        self.pos = end

    def run(self) -> list[Token]:
        text = self.text
        while self.pos < len(text):
            c = text[self.pos]
            if c in " \t\r\n":
                self.pos += 1
            elif c.isascii() and (c.isalpha() or c == "_"):
                m = _NAME.match(text, self.pos)
                assert m is not None
                self.add("name", m.start(), m.end(), m.group())
            elif c in _DIGITS or (c == "-" and text[self.pos + 1 : self.pos + 2] in _DIGITS):
                self.number()
            elif c in "\"'":
                self.string(c)
            elif text.startswith(_TWO_CHAR_OPS, self.pos):
                self.add("op", self.pos, self.pos + 2)
            elif c in "<>":
                self.add("op", self.pos, self.pos + 1)
            elif c in "()[],.=":
                self.add("punct", self.pos, self.pos + 1)
            else:
                hint = f"; {_HINTS[c]}" if c in _HINTS else ""
                raise self.fail(f"unexpected character {c!r}{hint}", self.pos)
        self.add("eof", self.pos, self.pos)
        return self.tokens

    def number(self) -> None:
        text, start = self.text, self.pos
        if _DATE_START.match(text, start):
            date = LITERAL_PATTERN.match(text, start)
            ms = None if date is None or self.glued(date.end()) else match_to_ms(date)
            if date is None or ms is None:
                word = _DATE_WORD.match(text, start)
                bad = word.group() if word else text[start]
                raise self.fail(
                    f"invalid date {bad!r}; expected a real date or instant "
                    "such as 2026-01-31, 2026-01-31T10:00:00Z or 2026-01-31T10:00:00+02:00",
                    start,
                )
            self.add("date", start, date.end(), ms)
            return
        m = _NUMBER.match(text, start)
        assert m is not None
        end = m.end()
        is_float = m.group(1) is not None or m.group(2) is not None
        if not is_float and text[end : end + 1] in tuple("smhdw") and not self.glued(end + 1):
            if text[start] == "-":
                raise self.fail(f"invalid duration {text[start : end + 1]!r}; durations are positive", start)
            try:
                ms = parse_duration(text[start : end + 1])
            except ValidationError as exc:
                raise self.fail(exc.message, start) from None
            self.add("duration", start, end + 1, ms)
            return
        if self.glued(end):
            word = _NAME.match(text, end)
            bad = text[start : word.end() if word else end + 1]
            raise self.fail(
                f"invalid number {bad!r}; a duration is a whole number and one of the units "
                "'s', 'm' (minutes), 'h', 'd', 'w', e.g. '30d'",
                start,
            )
        if is_float:
            value = float(m.group())
            if not math.isfinite(value):
                raise self.fail(f"number {m.group()!r} is out of range", start)
            self.add("float", start, end, value)
        else:
            self.add("int", start, end, int(m.group()))

    def glued(self, at: int) -> bool:
        """Whether a name character directly follows ``at``, so the literal there is malformed."""
        return _IDENT_CHAR.match(self.text, at) is not None

    def string(self, quote: str) -> None:
        text, start = self.text, self.pos
        out: list[str] = []
        i = start + 1
        while True:
            if i >= len(text) or text[i] == "\n":
                raise self.fail(f"unterminated string; close it with {quote}", start)
            c = text[i]
            if c == quote:
                break
            if c != "\\":
                out.append(c)
                i += 1
                continue
            esc = text[i + 1 : i + 2]
            if esc in _ESCAPES:
                out.append(_ESCAPES[esc])
                i += 2
            elif esc == "u" and _HEX4.fullmatch(text, i + 2, i + 6):
                code = int(text[i + 2 : i + 6], 16)
                if 0xD800 <= code <= 0xDFFF:
                    raise self.fail(f"invalid escape {text[i : i + 6]}; surrogates are not characters", i)
                out.append(chr(code))
                i += 6
            else:
                raise self.fail(f"invalid escape {text[i : i + 2]} in string; expected one of {_ESCAPE_LIST}", i)
        self.add("string", start, i + 1, "".join(out))


def tokenize(text: str) -> list[Token]:
    """The tokens of ``text``, ending with an ``eof`` token; raises ``RuleSyntaxError``."""
    return _Lexer(text).run()
