"""Liquid templates compiled to Python functions for sending.

python-liquid walks its parse tree for every render, looking each variable up through a chain of
namespaces and checking the output limit at every write; a journey renders the same template for
thousands of people. This module turns a parsed template (python-liquid's own parse tree, so parsing
and whitespace control are python-liquid's) into Python source compiled once per template, with the
same semantics: the same filter functions, the same comparison and truthiness rules, the same
stringification and escaping, the same undefined values, blank blocks rendering nothing, and the
same sandbox limits (loop iterations, output size, local namespace size).

Only a common subset is compiled: text, output, ``if``/``elsif``/``else``, ``unless``, ``for`` (with
``limit``, ``offset``, ``reversed``, ``forloop`` counters, ``break``, ``continue``, ``else``),
``assign``, comments and raw text, and filters that need no render context. Anything else makes
``compile_template`` return ``None`` and the caller renders with python-liquid. A compiled render
that fails in any way (a limit, a filter refusing a value) is not an answer either: the caller
renders the same template with python-liquid, which raises the error with its position, so errors
are python-liquid's exactly.
"""

from __future__ import annotations

import html
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence, Sized
from functools import partial
from itertools import islice
from typing import Any, Final

from liquid import BoundTemplate, Environment, Markup, Mode, Undefined
from liquid.ast import BlockNode, Node
from liquid.builtin.content import ContentNode
from liquid.builtin.expressions.filtered import Filter, FilteredExpression
from liquid.builtin.expressions.logical import (
    BooleanExpression,
    ContainsExpression,
    EqExpression,
    GeExpression,
    GtExpression,
    LeExpression,
    LogicalAndExpression,
    LogicalNotExpression,
    LogicalOrExpression,
    LtExpression,
    NeExpression,
    _contains,
    _eq,
    _le,
    _lt,
    is_truthy,
)
from liquid.builtin.expressions.path import Path
from liquid.builtin.expressions.primitive import (
    Blank,
    Empty,
    FalseLiteral,
    FloatLiteral,
    IntegerLiteral,
    Nil,
    StringLiteral,
    TrueLiteral,
)
from liquid.builtin.filters import math as math_filters
from liquid.builtin.filters import misc as misc_filters
from liquid.builtin.filters import string as string_filters
from liquid.builtin.output import OutputNode
from liquid.builtin.tags.assign_tag import AssignNode
from liquid.builtin.tags.capture_tag import CaptureNode
from liquid.builtin.tags.comment_tag import CommentNode
from liquid.builtin.tags.for_tag import BreakNode, ContinueNode, ForNode
from liquid.builtin.tags.if_tag import IfNode
from liquid.builtin.tags.inline_comment_tag import InlineCommentNode
from liquid.builtin.tags.unless_tag import UnlessNode
from liquid.limits import to_int
from liquid.stringify import to_liquid_string

CompiledTemplate = Callable[[Mapping[str, object]], str]
"""Renders a template with its globals; raises on anything python-liquid should decide."""

_SCOPE_NAMES: Final = frozenset({"partial", "template", "now", "today", "forloop"})
"""Names python-liquid resolves from its own namespaces (render flags, built-ins): left to it."""
_FORLOOP_KEYS: Final = frozenset({"index", "index0", "rindex", "rindex0", "first", "last", "length"})
_SPECIAL_KEYS: Final = frozenset({"size", "first", "last"})
_BINARY: Final[dict[type, str]] = {
    EqExpression: "_eq({l}, {r})", NeExpression: "(not _eq({l}, {r}))", LeExpression: "_le({l}, {r})",
    GeExpression: "_ge({l}, {r})", LtExpression: "_lt(None, {l}, {r})", GtExpression: "_gt({l}, {r})",
    ContainsExpression: "_contains(None, {l}, {r})",
}
"""Comparisons, with python-liquid's own functions (``a > b`` is ``b < a`` there too)."""
_MAX_LOOP_NESTING: Final = 5
"""Deeper ``for`` nesting nears python-liquid's context depth limit: left to it."""


_BOOLEANS: Final = (LtExpression, GtExpression, ContainsExpression, LogicalAndExpression, LogicalOrExpression,
                    LogicalNotExpression, BooleanExpression, TrueLiteral, FalseLiteral)
"""Expressions python-liquid evaluates to a ``bool`` whatever the values."""
_LITERALS: Final = (StringLiteral, IntegerLiteral, FloatLiteral)
_STOCK_FILTERS: Final[dict[str, object]] = {
    "upcase": string_filters.upcase, "downcase": string_filters.downcase, "capitalize": string_filters.capitalize,
    "strip": string_filters.strip, "lstrip": string_filters.lstrip, "rstrip": string_filters.rstrip,
    "default": misc_filters.default, "truncate": string_filters.truncate, "round": math_filters.round_,
    "prepend": string_filters.prepend, "append": string_filters.append, "escape": string_filters.escape,
}
"""python-liquid's own filters that ``fast_filter`` may inline (a replaced filter is called as is)."""
_STR_METHODS: Final = {"upcase": "upper", "downcase": "lower", "capitalize": "capitalize", "strip": "strip",
                       "lstrip": "lstrip", "rstrip": "rstrip"}


def _esc(text: str) -> str:
    """markupsafe's escaping of a plain string, as text."""
    return (text.replace("&", "&amp;").replace(">", "&gt;").replace("<", "&lt;").replace("'", "&#39;")
            .replace('"', "&#34;"))


def _blen(text: str) -> int:
    """``text``'s length in UTF-8 bytes, as python-liquid's output limit counts."""
    return len(text) if text.isascii() else len(text.encode("utf-8"))


class Unsupported(Exception):
    """The template uses something outside the compiled subset."""


class LimitExceeded(Exception):
    """A sandbox limit was crossed; python-liquid re-renders to raise its own error."""


_MISSING: Final = object()


def _get_item(obj: Any, key: Any, string_first_and_last: bool) -> Any:
    """python-liquid's ``RenderContext.get_item`` for keys that are not plain mapping keys."""
    if hasattr(key, "__liquid__"):
        key = key.__liquid__()
    if key == "size":
        try:
            return obj["size"]
        except (KeyError, IndexError, TypeError):
            if isinstance(obj, Sized):
                return len(obj)
            raise
    if key == "first":
        try:
            return obj["first"]
        except (KeyError, IndexError, TypeError):
            if isinstance(obj, Mapping) and obj:
                return next(islice(obj.items(), 1))
            if isinstance(obj, str) and not string_first_and_last:
                raise TypeError("string object has no method 'first'") from None
            if isinstance(obj, Sequence):
                return obj[0]
            raise
    if key == "last":
        try:
            return obj["last"]
        except (KeyError, IndexError, TypeError):
            if isinstance(obj, str) and not string_first_and_last:
                raise TypeError("string object has no method 'last'") from None
            if isinstance(obj, Sequence):
                return obj[-1]
            raise
    if isinstance(key, int) and isinstance(obj, str):
        raise TypeError("string object is not subscriptable")
    return obj[key]


def _loop(obj: object, limit: object, offset: object, reverse: bool) -> tuple[Iterator[object], int]:
    """python-liquid's ``LoopExpression`` iterator and length (``offset: continue`` is not compiled)."""
    it: Iterator[object]
    if isinstance(obj, Mapping):
        it, length = iter(obj.items()), len(obj)
    elif isinstance(obj, range):
        it, length = iter(obj), len(obj)
    elif isinstance(obj, str):
        it, length = (iter([]), 0) if not obj else (iter([obj]), 1)
    elif isinstance(obj, Sequence):
        it, length = iter(obj), len(obj)
    else:
        it, length = iter([]), 0
    limit_ = None if limit is None else to_int(limit)
    start = int(to_int(offset) if offset is not None else 0)
    stop = None if limit_ is None else limit_ + start
    start_ = min(max(start, 0), length)
    stop_ = min(stop or length, length)
    sliced: Iterator[object] = islice(it, start_, stop_)
    if reverse:
        sliced = reversed(list(sliced))
    return sliced, max(stop_ - start_, 0)


class _Compiler:
    """Python source for one template, built from python-liquid's parse tree."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.autoescape = bool(env.autoescape)
        self.lines: list[str] = []
        self.consts: dict[str, object] = {}
        self.counter = 0
        self.loops: list[tuple[str, str, str]] = []
        """Enclosing loops, outermost first: (loop variable, index variable, length variable)."""
        self.assigned: set[str] = set()
        self.sink = "_w"
        """The function appending to the buffer being written (the output or a capture)."""
        self.chain: list[str] = ["_out"]
        """The buffers whose sizes count against the output limit of the one being written, outermost
        first (python-liquid gives a capture the room its enclosing buffers leave; a capture inside a
        blank block, whose output is dropped, starts afresh)."""

    def const(self, value: object) -> str:
        name = f"_k{len(self.consts)}"
        self.consts[name] = value
        return name

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    # Expressions -------------------------------------------------------------------------------------

    def expr(self, node: object) -> str:
        kind = type(node)
        if kind is FilteredExpression:
            assert isinstance(node, FilteredExpression)
            code = self.expr(node.left)
            for filt in node.filters or ():
                code = self.filter(filt, code)
            return code
        if kind is Path:
            assert isinstance(node, Path)
            return self.path(node)
        if kind is StringLiteral:
            assert isinstance(node, StringLiteral)
            return self.const(Markup(node.value) if self.autoescape else node.value)
        if kind in (IntegerLiteral, FloatLiteral):
            return self.const(node.value)  # type: ignore[attr-defined]
        if kind is TrueLiteral:
            return "True"
        if kind is FalseLiteral:
            return "False"
        if kind is Nil:
            return "None"
        if kind in (Empty, Blank):
            return self.const(node)
        if kind is BooleanExpression:
            return self.truthy(node.expression)  # type: ignore[attr-defined]
        if kind is LogicalNotExpression:
            return f"(not {self.truthy(node.right)})"  # type: ignore[attr-defined]
        if kind in (LogicalAndExpression, LogicalOrExpression):
            op = "and" if kind is LogicalAndExpression else "or"
            left, right = self.truthy(node.left), self.truthy(node.right)  # type: ignore[attr-defined]
            return f"({left} {op} {right})"
        if kind in (LtExpression, GtExpression):
            a, b = self.fresh("_a"), self.fresh("_b")
            left, right = self.expr(node.left), self.expr(node.right)  # type: ignore[attr-defined]
            op, slow = ("<", f"_lt(None, {a}, {b})") if kind is LtExpression else (">", f"_lt(None, {b}, {a})")
            return f"({a} {op} {b} if (type({a} := {left}) in _num) & (type({b} := {right}) in _num) else {slow})"
        binary = _BINARY.get(kind)
        if binary is not None:
            left, right = self.expr(node.left), self.expr(node.right)  # type: ignore[attr-defined]
            return binary.format(l=left, r=right)
        raise Unsupported(kind.__name__)

    def truthy(self, node: object) -> str:
        """``node`` as a Python bool by Liquid's truthiness (expressions that are bools already stay as they are)."""
        code = self.expr(node)
        return code if type(node) in _BOOLEANS else f"_truthy({code})"

    def filter(self, filt: Filter, left: str) -> str:
        try:
            func = self.env.filters[filt.name]
        except KeyError as err:
            raise Unsupported(f"filter {filt.name}") from err
        if getattr(func, "with_context", False):
            raise Unsupported(f"filter {filt.name} needs the render context")
        stock = func
        if getattr(func, "with_environment", False):
            func = partial(func, environment=self.env)
        args: list[str] = []
        kwargs: list[str] = []
        for arg in filt.args:
            value = self.expr(arg.value)
            name = getattr(arg, "name", None)
            if name:
                kwargs.append(f"{name!r}: {value}")
            else:
                args.append(value)
        call = ", ".join([left, *args])
        if kwargs:
            call += ", **{" + ", ".join(kwargs) + "}"
        literals = [arg.value for arg in filt.args]
        if not kwargs and all(type(arg) in _LITERALS for arg in literals):
            fast = self.fast_filter(filt.name, stock, func, left, [arg.value for arg in literals])  # type: ignore[attr-defined]
            if fast is not None:
                return fast
        return f"{self.const(func)}({call})"

    def fast_filter(self, name: str, stock: object, func: object, left: str,
                    args: list[object]) -> str | None:
        """A stock filter inlined for the value types that need none of its conversions; any other value
        goes to the filter itself. Each shortcut returns exactly what the filter returns."""
        if _STOCK_FILTERS.get(name) is not stock:
            return None
        t = self.fresh("_t")
        call = ", ".join([t, *(self.const(self.literal(arg)) for arg in args)])
        slow = f"{self.const(func)}({call})"
        if name in _STR_METHODS and not args:
            return f"({t}.{_STR_METHODS[name]}() if type({t} := {left}) is str else {slow})"
        if name == "default" and len(args) == 1:
            return f"({t} if type({t} := {left}) is str and {t} else {slow})"
        if name == "truncate" and len(args) == 1 and type(args[0]) is int:
            cut = f"({t} if len({t}) < {args[0]!r} else {t}[:{args[0] - 3!r}] + '...')"
            return f"({cut} if type({t} := {left}) is str else {slow})"
        if name == "escape" and not args:
            escaped = f"_Markup(_esc({t}))" if self.autoescape else f"_html_escape({t})"
            return f"({escaped} if type({t} := {left}) is str else {slow})"
        if name == "round" and len(args) == 1 and type(args[0]) is int and args[0] > 0:
            return f"(round({t}, {args[0]!r}) if type({t} := {left}) is float or type({t}) is int else {slow})"
        if name in ("prepend", "append") and len(args) == 1 and isinstance(args[0], str):
            text = f"({t} if type({t}) is str else str({t}))"
            if self.autoescape:
                text = f"_esc{text}"
            const = self.const(str(args[0]))
            joined = f"{const} + {text}" if name == "prepend" else f"{text} + {const}"
            plain = f"type({t} := {left}) is str or type({t}) is int or type({t}) is float"
            if self.autoescape:
                return f"(_Markup({joined}) if {plain} else {slow})"
            return f"({joined} if {plain} else {slow})"
        return None

    def literal(self, value: object) -> object:
        """A literal argument's value as python-liquid evaluates it."""
        return Markup(value) if self.autoescape and isinstance(value, str) else value

    def path(self, node: Path) -> str:
        segments = node.path
        root = segments[0]
        if not isinstance(root, str) or isinstance(root, Path):
            raise Unsupported("computed path root")
        rest = segments[1:]
        for loop_var, index, length in reversed(self.loops):
            if root == loop_var:
                return self.walk(_item_var(index), rest)
            if root == "forloop":
                if len(rest) != 1 or rest[0] not in _FORLOOP_KEYS:
                    raise Unsupported("forloop use")
                return {"index": f"({index} + 1)", "index0": index, "rindex": f"({length} - {index})",
                        "rindex0": f"({length} - {index} - 1)", "first": f"({index} == 0)",
                        "last": f"({index} == {length} - 1)", "length": length}[str(rest[0])]
        if root in _SCOPE_NAMES:
            raise Unsupported(f"root {root}")
        key = self.const(root)
        base = f"_L.get({key}, _G.get({key}, _MISS))" if root in self.assigned else f"_G.get({key}, _MISS)"
        return self.walk(base, rest, check_root=True)

    def walk(self, base: str, rest: Sequence[object], *, check_root: bool = False) -> str:
        keys: list[str] = []
        for segment in rest:
            if isinstance(segment, Path):
                keys.append(self.path(segment))
            elif isinstance(segment, (str, int)):
                keys.append(self.const(segment))
            else:
                raise Unsupported("path segment")
        if not keys and not check_root:
            return base
        if len(rest) == 1 and type(rest[0]) is str and rest[0] not in _SPECIAL_KEYS:
            d = self.fresh("_d")
            return f"({d}.get({keys[0]}, _U) if type({d} := {base}) is dict else _walk1({d}, {keys[0]}))"
        return f"_walk({base}, ({', '.join(keys)}{',' if len(keys) == 1 else ''}))"

    # Nodes -------------------------------------------------------------------------------------------

    def nodes(self, nodes: Sequence[Node], depth: int, *, write: bool) -> None:
        wrote = False
        for node in nodes:
            self.node(node, depth, write=write)
            wrote = True
        if not wrote:
            self.emit(depth, "pass")

    def block(self, block: BlockNode | None, depth: int, *, write: bool) -> None:
        if block is None:
            self.emit(depth, "pass")
            return
        if not block.blank:
            self.nodes(block.nodes, depth, write=write)
            return
        saved, self.chain = self.chain, []
        self.nodes(block.nodes, depth, write=False)
        self.chain = saved

    def node(self, node: Node, depth: int, *, write: bool) -> None:
        kind = type(node)
        if kind is ContentNode:
            assert isinstance(node, ContentNode)
            if write and node.text:
                self.emit(depth, f"{self.sink}({self.const(node.text)}); _n += {len(node.text)}")
            else:
                self.emit(depth, "pass")
        elif kind is OutputNode:
            assert isinstance(node, OutputNode)
            value = self.expr(node.expression)
            self.emit(depth, f"_v = {value}")
            if write:
                if self.autoescape:
                    self.emit(depth, "_s = (_v.replace('&', '&amp;').replace('>', '&gt;').replace('<', '&lt;')"
                                     ".replace(\"'\", '&#39;').replace('\"', '&#34;')) if type(_v) is str "
                                     "else _v if type(_v) is _Markup else str(_v) if type(_v) in _num "
                                     "else _tostr(_v, True)")
                else:
                    self.emit(depth, "_s = _v if type(_v) is str or type(_v) is _Markup else str(_v) "
                                     "if type(_v) in _num else _tostr(_v, False)")
                self.emit(depth, f"{self.sink}(_s); _n += len(_s)")
            else:
                self.emit(depth, f"_tostr(_v, {self.autoescape})")
        elif kind in (CommentNode, InlineCommentNode):
            self.emit(depth, "pass")
        elif kind is AssignNode:
            assert isinstance(node, AssignNode)
            self.emit(depth, f"_L[{str(node.name)!r}] = {self.expr(node.expression)}")
            self.emit(depth, "_check_locals(_L)")
        elif kind in (IfNode, UnlessNode):
            assert isinstance(node, (IfNode, UnlessNode))
            test = self.expr(node.condition)
            self.emit(depth, f"if {'not ' if kind is UnlessNode else ''}{test}:")
            self.block(node.consequence, depth + 1, write=write)
            for alternative in node.alternatives:
                self.emit(depth, f"elif {self.expr(alternative.expression)}:")
                self.block(alternative.block, depth + 1, write=write)
            if node.default is not None:
                self.emit(depth, "else:")
                self.block(node.default, depth + 1, write=write)
        elif kind is CaptureNode:
            assert isinstance(node, CaptureNode)
            self.capture(node, depth)
        elif kind is ForNode:
            assert isinstance(node, ForNode)
            self.for_node(node, depth, write=write)
        elif kind in (BreakNode, ContinueNode):
            if not self.loops:
                raise Unsupported("break or continue outside a loop")
            self.emit(depth, "break" if kind is BreakNode else "continue")
        else:
            raise Unsupported(kind.__name__)

    def capture(self, node: CaptureNode, depth: int) -> None:
        buf = self.fresh("_c")
        self.emit(depth, f"{buf} = []")
        saved = (self.sink, self.chain)
        self.sink, self.chain = f"{buf}.append", [*self.chain, buf]
        self.block(node.block, depth, write=True)
        self.sink, self.chain = saved
        self.emit(depth, f"_t = ''.join({buf})")
        room = " - ".join(["_OUTPUT_LIMIT", *(f"_blen(''.join({outer}))" for outer in self.chain)])
        self.emit(depth, f"if _blen(_t) > {room}: raise _LimitExceeded('output')")
        self.emit(depth, f"_L[{str(node.name)!r}] = {'_Markup(_t)' if self.autoescape else '_t'}")
        self.emit(depth, "_check_locals(_L)")

    def for_node(self, node: ForNode, depth: int, *, write: bool) -> None:
        loop = node.expression
        if loop.cols is not None or len(self.loops) >= _MAX_LOOP_NESTING:
            raise Unsupported("loop")
        name = str(loop.identifier)
        if name in _SCOPE_NAMES:
            raise Unsupported("loop variable name")
        if isinstance(loop.offset, StringLiteral):
            if loop.offset.value == "continue":
                raise Unsupported("offset: continue")
            offset = self.const(loop.offset.value)
        else:
            offset = "None" if loop.offset is None else self.expr(loop.offset)
        limit = "None" if loop.limit is None else self.expr(loop.limit)
        iterable = self.expr(loop.iterable)
        index, length, it = self.fresh("_i"), self.fresh("_len"), self.fresh("_it")
        self.emit(depth, f"{it}, {length} = _loop({iterable}, {limit}, {offset}, {bool(loop.reversed)})")
        self.emit(depth, f"if {length}:")
        lengths = " * ".join([*(outer[2] for outer in self.loops), length])
        self.emit(depth + 1, f"if {lengths} > _LOOP_LIMIT: raise _LimitExceeded('loop')")
        self.emit(depth + 1, f"{index} = -1")
        self.loops.append((name, index, length))
        self.emit(depth + 1, f"for {_item_var(index)} in {it}:")
        self.emit(depth + 2, f"{index} += 1")
        self.emit(depth + 2, "if _n > _OUTPUT_LIMIT: raise _LimitExceeded('output')")
        self.block(node.block, depth + 2, write=write)
        self.loops.pop()
        if node.default is not None:
            self.emit(depth, "else:")
            self.block(node.default, depth + 1, write=write)


def _item_var(index: str) -> str:
    """The Python local holding the current item of the loop counted by ``index``."""
    return f"_item{index}"


def _assigned_names(nodes: Sequence[Node]) -> set[str]:
    names: set[str] = set()
    stack: list[object] = list(nodes)
    while stack:
        node = stack.pop()
        if isinstance(node, (AssignNode, CaptureNode)):
            names.add(str(node.name))
        for attr in ("nodes", "consequence", "alternatives", "default", "block"):
            child = getattr(node, attr, None)
            if isinstance(child, list):
                stack.extend(child)
            elif child is not None and not isinstance(child, (str, bool)):
                stack.append(child)
    return names


def compile_template(template: BoundTemplate, *, output_limit: int, loop_limit: int,
                     locals_limit: int) -> CompiledTemplate | None:
    """``template`` as a Python function, or ``None`` when it uses something outside the compiled subset.

    The function takes the render globals and returns the rendered text; it raises ``LimitExceeded``
    at a sandbox limit (checked at each loop iteration and at the end, so output stops within one
    iteration of the limit) and whatever a filter raises: either way the caller renders with
    python-liquid for the authoritative result.
    """
    env = template.env
    if (env.string_sequences or env.mode is not Mode.STRICT or env.undefined is not Undefined or env.globals
            or template.matter or not env.suppress_blank_control_flow_blocks):
        return None  # configurations the compiled code does not reproduce
    string_first_and_last = bool(template.env.string_first_and_last)
    compiler = _Compiler(template.env)
    compiler.assigned = _assigned_names(template.nodes)
    try:
        compiler.nodes(template.nodes, 1, write=True)
    except Unsupported:
        return None
    undefined = Undefined("undefined")

    def walk(obj: object, keys: tuple[object, ...]) -> object:
        if obj is _MISSING:
            return undefined
        for key in keys:
            try:
                if type(obj) is dict and type(key) is str and key not in _SPECIAL_KEYS:
                    obj = obj[key]
                else:
                    obj = _get_item(obj, key, string_first_and_last)
            except (KeyError, TypeError, IndexError):
                return undefined
        return obj

    def walk1(obj: object, key: str) -> object:
        if type(obj) is dict:
            try:
                return obj[key]
            except KeyError:
                return undefined
        return walk(obj, (key,))

    def check_locals(local: Mapping[str, object]) -> None:
        if sum(sys.getsizeof(obj, 1) for obj in local.values()) > locals_limit:
            raise LimitExceeded("locals")

    namespace: dict[str, Any] = {
        **compiler.consts, "_walk": walk, "_walk1": walk1, "_check_locals": check_locals, "_blen": _blen,
        "_loop": _loop, "_MISS": _MISSING, "_U": undefined,
        "_truthy": is_truthy, "_eq": _eq, "_lt": _lt, "_contains": _contains, "_le": _le,
        "_ge": lambda left, right: _le(right, left), "_gt": lambda left, right: _lt(None, right, left),  # type: ignore[arg-type]
        "_tostr": to_liquid_string, "_esc": _esc, "_html_escape": html.escape, "_Markup": Markup, "_num": (int, float),
        "_LimitExceeded": LimitExceeded,
        "_LOOP_LIMIT": loop_limit, "_OUTPUT_LIMIT": output_limit,
    }
    source = "\n".join(["def _render(_G):", "    _L = {}", "    _out = []", "    _w = _out.append", "    _n = 0",
                        *compiler.lines, "    return _out"])
    # Nothing the author wrote becomes code: text, names and literals reach the source only as
    # constants in ``namespace`` or as ``repr`` of names python-liquid's parser accepted.
    exec(compile(source, "<liquid>", "exec"), namespace)
    body: Callable[[Mapping[str, object]], list[str]] = namespace["_render"]

    def render(variables: Mapping[str, object]) -> str:
        text = "".join(body(variables))
        if len(text) > output_limit or (not text.isascii() and len(text.encode("utf-8")) > output_limit):
            raise LimitExceeded("output")
        return text

    return render
