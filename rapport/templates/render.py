"""Liquid message templates: sandboxed parsing, rendering with limits, strict preview and static analysis.

Templates are written by workspace users and rendered with personal data, so the environment is a
sandbox: no ``include``/``render`` tags (there is no loader to reach files or other templates), unknown
filters are errors, and loops, output size, local variables and context nesting are bounded. HTML parts
render with autoescape, so a trait holding ``<script>`` arrives as text. Sending renders a template in
the common subset through Python compiled from it once (``rapport.templates.compiled``, same output,
same limits); anything else, and every error, goes through python-liquid.

Sending renders leniently: a missing value renders as nothing and ``default`` fills it in. Preview
renders strictly: a missing value that would be output, filtered or looped over is an error naming the
variable and where the template reads it, while ``default`` still works (the author chose a fallback)
and in a condition (``{% if traits.x %}``, ``computed.n > 0``) it is false, as the author tested for it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from io import StringIO
from typing import Final

from liquid import BoundTemplate, Environment, FalsyStrictUndefined, Undefined
from liquid.exceptions import LiquidError, OutputStreamLimitError, ResourceLimitError, UndefinedError
from liquid.output import LimitedStringIO

from rapport.errors import ValidationError
from rapport.templates.compiled import CompiledTemplate, compile_template
from rapport.types import Json

LOOP_ITERATION_LIMIT: Final = 1_000
OUTPUT_LIMIT: Final = 256 * 1024
"""Bytes one part may render to; a larger email is a runaway loop, not a message."""
CONTEXT_DEPTH_LIMIT: Final = 10
LOCAL_NAMESPACE_LIMIT: Final = 64 * 1024
BLOCK_NESTING_LIMIT: Final = 20
HTML_PARTS: Final = frozenset({"html"})
"""Parts rendered with HTML autoescape."""
BLOCKED_TAGS: Final = ("include", "render")
"""Tags that load other templates: a sandboxed template reaches nothing but its context."""

PartValue = str | Mapping[str, str]
"""A part's Liquid source; push ``data`` is a mapping of keys to Liquid sources."""
Parts = Mapping[str, PartValue]


class _Output(LimitedStringIO):
    """python-liquid's output limit in UTF-8 bytes, without encoding every write: ASCII text (nearly all
    of a message) counts its length. An email is written in a hundred or so pieces, and encoding each
    one cost about a tenth of rendering it."""

    def write(self, text: str, /) -> int:
        if text:
            self.size += len(text) if text.isascii() else len(text.encode("utf-8"))
            if self.size > self.limit:
                raise OutputStreamLimitError("output stream limit reached", token=None)
        return StringIO.write(self, text)


class _Template(BoundTemplate):
    """A parsed template that renders into ``_Output``."""

    def _get_buffer(self) -> StringIO:
        return _Output(limit=OUTPUT_LIMIT)


class _Sandbox(Environment):
    """The Liquid environment every template runs in (limits are class attributes in python-liquid)."""

    template_class = _Template
    loop_iteration_limit = LOOP_ITERATION_LIMIT
    output_stream_limit = OUTPUT_LIMIT
    context_depth_limit = CONTEXT_DEPTH_LIMIT
    local_namespace_limit = LOCAL_NAMESPACE_LIMIT
    block_nesting_limit = BLOCK_NESTING_LIMIT


class PreviewUndefined(FalsyStrictUndefined):
    """A missing value in preview: an error when output, filtered or looped over, but false in a condition
    (``{% if traits.nickname %}`` is how a template asks whether a value exists) and replaced by ``default``."""

    force_liquid_default = True


def _sandbox(*, html: bool, strict: bool) -> _Sandbox:
    env = _Sandbox(autoescape=html, undefined=PreviewUndefined if strict else Undefined, strict_filters=True)
    for tag in BLOCKED_TAGS:
        env.tags.pop(tag, None)
    return env


_ENVIRONMENTS: Final = {(html, strict): _sandbox(html=html, strict=strict) for html in (False, True)
                        for strict in (False, True)}


@dataclass(frozen=True, slots=True)
class TemplateContext:
    """What a template may read: the person's traits and computed traits, the triggering event's
    properties, consent by purpose, segment memberships and the person's unsubscribe link."""

    traits: Mapping[str, Json] = field(default_factory=dict)
    computed: Mapping[str, Json] = field(default_factory=dict)
    event: Mapping[str, Json] = field(default_factory=dict)
    consent: Mapping[str, bool] = field(default_factory=dict)
    segments: Sequence[str] = ()
    unsubscribe_url: str = ""

    def variables(self) -> dict[str, object]:
        """The Liquid globals."""
        return {
            "traits": dict(self.traits),
            "computed": dict(self.computed),
            "event": dict(self.event),
            "consent": dict(self.consent),
            "segments": list(self.segments),
            "unsubscribe_url": self.unsubscribe_url,
        }


@dataclass(frozen=True, slots=True)
class SourceError:
    """A problem in a part's source: 1-based line and column inside the part, and what is wrong."""

    line: int
    col: int
    message: str


@lru_cache(maxsize=1024)
def check_source(source: str) -> SourceError | None:
    """The first syntax problem of ``source`` (or an unknown filter), or ``None`` when it parses."""
    env = _ENVIRONMENTS[(False, False)]
    try:
        template = env.from_string(source)
    except LiquidError as exc:
        return _explain(exc, source)
    filters = template.analyze(include_partials=False).filters
    for name in sorted(filters, key=lambda name: filters[name][0].index):
        if name not in env.filters:
            line, col = _line_col(source, filters[name][0].index)
            return SourceError(line, col, f"unknown filter {name!r}")
    return None


_UNCLOSED: Final = re.compile(r"expected tag end(\w+)")
_UNEXPECTED: Final = re.compile(r"unexpected tag '(\w+)'")


def _explain(exc: LiquidError, source: str) -> SourceError:
    """A syntax error in the author's terms: where an unclosed block opens, why a tag is unavailable."""
    message = str(exc.message)
    unclosed = _UNCLOSED.match(message)
    if unclosed is not None:
        tag = unclosed.group(1)
        opened: list[int] = []
        for match in _MARKUP.finditer(source):
            if match.group(1) == tag:
                opened.append(match.start())
            elif match.group(1) == f"end{tag}" and opened:
                opened.pop()
        if opened:
            line, col = _line_col(source, opened[-1])
            return SourceError(line, col, f"'{{% {tag} %}}' is never closed; expected '{{% end{tag} %}}' after it")
    unexpected = _UNEXPECTED.fullmatch(message)
    if unexpected is not None and unexpected.group(1) in BLOCKED_TAGS:
        line, col = _position(exc, source)
        return SourceError(line, col, f"tag {unexpected.group(1)!r} is not available: a message template cannot "
                                      "load other templates")
    line, col = _position(exc, source)
    return SourceError(line, col, message)


def _line_col(source: str, index: int) -> tuple[int, int]:
    before = source[:index]
    return before.count("\n") + 1, index - (before.rfind("\n") + 1) + 1


_MARKUP: Final = re.compile(r"\{\{.*?\}\}|\{%-?\s*(\w+).*?%\}", re.DOTALL)
_BLOCKS: Final = frozenset({"if", "unless", "for", "case", "capture", "tablerow", "comment", "raw", "ifchanged"})


def _position(exc: LiquidError, source: str) -> tuple[int, int]:
    """Where the syntax error ``exc`` happened. python-liquid gives no position for some errors (an
    unfinished expression): the first markup that fails alone with the same message is blamed, else the
    end of the template."""
    context = exc.context()
    if context is not None:
        return context[0], context[1] + 1
    env = _ENVIRONMENTS[(False, False)]
    for match in _MARKUP.finditer(source):
        tag = match.group(1)
        alone = match.group(0) + (f"{{% end{tag} %}}" if tag in _BLOCKS else "")
        if tag is not None and tag.startswith(("end", "else", "when")):
            continue
        try:
            env.from_string(alone)
        except LiquidError as again:
            if again.message == exc.message:
                return _line_col(source, match.start())
    return _line_col(source, len(source.rstrip()))


def _where(exc: LiquidError) -> tuple[int, int]:
    """Where a render error happened (python-liquid knows the node being rendered; 1:1 if not)."""
    context = exc.context()
    return (context[0], context[1] + 1) if context is not None else (1, 1)


@lru_cache(maxsize=1024)
def _compiled(source: str, html: bool, strict: bool) -> BoundTemplate:
    return _ENVIRONMENTS[(html, strict)].from_string(source)


@lru_cache(maxsize=1024)
def _fast(source: str, html: bool) -> CompiledTemplate | None:
    """The send-path (lenient) template compiled to Python, or ``None`` outside the compiled subset."""
    return compile_template(_compiled(source, html, False), output_limit=OUTPUT_LIMIT,
                            loop_limit=LOOP_ITERATION_LIMIT, locals_limit=LOCAL_NAMESPACE_LIMIT)


def compile_part(name: str, source: str, *, strict: bool = False) -> BoundTemplate:
    """The parsed template of part ``name``; a syntax error is a ``ValidationError`` naming part, line and column."""
    problem = check_source(source)
    if problem is not None:
        raise _error("template_syntax", name, f"line {problem.line}, col {problem.col}: {problem.message}",
                     source, problem.line, problem.col)
    return _compiled(source, name in HTML_PARTS, strict)


def render(parts: Parts, context: TemplateContext, *, strict: bool) -> dict[str, PartValue]:
    """Every part rendered with ``context``: leniently for sending, strictly (``strict``) for preview.

    Raises ``ValidationError`` with code ``template_syntax``, ``template_undefined`` (strict only; names
    the variable), ``template_limit`` (a sandbox limit) or ``template_error`` (e.g. a filter given a
    value it cannot take); each names the part and the line.
    """
    variables = context.variables()
    out: dict[str, PartValue] = {}
    for name, value in parts.items():
        if isinstance(value, str):
            out[name] = _render_one(name, value, variables, strict)
        else:
            out[name] = {key: _render_one(f"{name}.{key}", item, variables, strict) for key, item in value.items()}
    return out


def preview(parts: Parts, context: TemplateContext) -> dict[str, PartValue]:
    """``render`` as an author previews a message for a given profile: strict about missing values."""
    return render(parts, context, strict=True)


def _render_one(name: str, source: str, variables: Mapping[str, object], strict: bool) -> str:
    template = compile_part(name, source, strict=strict)
    fast = None if strict else _fast(source, name in HTML_PARTS)
    if fast is not None:
        try:
            return fast(variables)
        except Exception:  # a failed compiled render is re-run below for python-liquid's own error
            pass
    try:
        return template.render(**variables)
    except UndefinedError as exc:
        variable = str(exc.message).removesuffix(" is undefined").strip("'")
        line, col = _where(exc)
        raise _error("template_undefined", name,
                     f"line {line}, col {col}: {variable!r} is undefined for this profile; "
                     f"give it a fallback with '| default: ...' or preview a profile that has it",
                     source, line, col, variable=variable) from exc
    except ResourceLimitError as exc:
        line, col = _where(exc)
        raise _error("template_limit", name, f"line {line}, col {col}: {exc.message}", source, line, col) from exc
    except LiquidError as exc:
        line, col = _where(exc)
        raise _error("template_error", name, f"line {line}, col {col}: {exc.message}", source, line, col) from exc


def _error(code: str, part: str, what: str, source: str, line: int, col: int, **extra: str) -> ValidationError:
    lines = source.split("\n")
    text = lines[line - 1] if line <= len(lines) else ""
    snippet = f"  {line} | {text}\n  {' ' * len(str(line))} | {' ' * (col - 1)}^"
    detail: dict[str, Json] = {"field": part, "line": line, "col": col, "message": what, **extra}
    return ValidationError(f"template part {part!r}, {what}\n{snippet}", code=code, details=[detail])


def fields_read(parts: Parts) -> set[str]:
    """The context paths the template reads, e.g. ``{"traits.first_name", "event.product_name"}``.

    Static: every path in every branch counts, whether or not a render reaches it; variables the template
    assigns itself and loop variables are left out (a loop over ``event.items`` reads ``event.items``).
    Parts that do not parse are skipped: validation reports them.
    """
    found: set[str] = set()
    for value in parts.values():
        for source in [value] if isinstance(value, str) else value.values():
            if check_source(source) is not None:
                continue
            analysis = _compiled(source, False, False).analyze(include_partials=False)
            found.update(str(variable) for variables in analysis.globals.values() for variable in variables)
    return found
