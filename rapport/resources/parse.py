"""Resource documents as multi-document YAML: read with every error located, and printed back."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import yaml

from rapport.errors import ValidationError
from rapport.resources.fields import NAME_HELP, NAME_PATTERN, FieldErrors, Path, show
from rapport.resources.kinds import KindSpec, get_kind, known_kinds
from rapport.resources.model import Resource
from rapport.types import Json, JsonObject

MAX_VALUES: Final = 100_000
"""Values one document may hold once aliases are expanded; more is an alias bomb, not a resource."""

_STR: Final = "tag:yaml.org,2002:str"
_BOOL: Final = "tag:yaml.org,2002:bool"
_MERGE: Final = "tag:yaml.org,2002:merge"
_DROPPED: Final = {_BOOL, "tag:yaml.org,2002:timestamp"}


class _Loader(yaml.SafeLoader):
    """Safe YAML where only ``true``/``false`` are booleans and dates stay strings: YAML 1.1 reads
    ``channel: no`` as ``False`` (a silent surprise) and ``2026-01-01`` as a date (not JSON)."""

    yaml_implicit_resolvers = {  # noqa: RUF012 (PyYAML reads it from the class)
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in _DROPPED]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


@dataclass(slots=True)
class _Document:
    index: int
    data: Json
    lines: dict[Path, int]
    duplicates: list[tuple[Path, int, str]] = field(default_factory=list)


def parse_documents(text: str) -> list[Resource]:
    """The resources of a YAML text, one per non-empty document.

    Raises ``ValidationError`` with code ``invalid_yaml`` (with line and column) when the text is not
    YAML, or ``invalid_resource`` listing every problem of every document, each detail being
    ``{"document", "line", "kind", "name", "field", "message", "expected"}``.
    """
    resources: list[Resource] = []
    details: list[JsonObject] = []
    seen: dict[tuple[str, str], tuple[int, int]] = {}
    for doc in _read(text):
        if doc.data is None:
            continue
        ctx = FieldErrors(document=doc.index, lines=doc.lines)
        resource = _resource(doc, ctx, seen)
        if resource is not None and not ctx.details:
            resources.append(resource)
        details.extend(ctx.details)
    if details:
        count = len({detail["document"] for detail in details})
        details.sort(key=lambda detail: (detail["document"], detail["line"]))
        message = f"{count} invalid resource document(s)"
        raise ValidationError(message, code="invalid_resource", details=details)
    return resources


def _resource(
    doc: _Document, ctx: FieldErrors, seen: dict[tuple[str, str], tuple[int, int]]
) -> Resource | None:
    data = doc.data
    if not isinstance(data, dict):
        expected = "a mapping with 'kind' and 'name'"
        ctx.add(f"a resource document must be a mapping, got {show(data)}; expected {expected}", expected)
        return None
    kind, name = data.get("kind"), data.get("name")
    ctx.kind = kind if isinstance(kind, str) else None
    ctx.name = name if isinstance(name, str) else None
    for path, line, message in doc.duplicates:
        ctx.add(message, "each key at most once in a mapping", *path, line=line)
    clean = _check_json(data, ctx)
    spec = _check_kind(kind, ctx)
    named = _check_name(name, ctx)
    if spec is not None and isinstance(name, str) and named:
        key = (spec.name, name)
        if key in seen:
            first, line = seen[key]
            expected = "each kind and name at most once per text"
            message = f"duplicate {spec.name} {name!r}; first defined in document {first} (line {line})"
            ctx.add(message, expected, "name")
        else:
            seen[key] = (doc.index, ctx.line_of(("name",)))
    if spec is None or not clean:
        return None
    validated = spec.validate(data, ctx)
    return Resource(spec.name, name, validated) if isinstance(name, str) and named else None


def _check_kind(kind: Json, ctx: FieldErrors) -> KindSpec | None:
    expected = f"one of {', '.join(repr(k) for k in known_kinds())}"
    if kind is None:
        ctx.add(f"missing required field 'kind'; expected {expected}", expected, "kind")
    elif not isinstance(kind, str):
        ctx.at("kind").reject(kind, expected)
    else:
        try:
            return get_kind(kind)
        except ValidationError as exc:
            detail = exc.details[0]
            ctx.add(detail["message"], detail["expected"], "kind")
    return None


def _check_name(name: Json, ctx: FieldErrors) -> bool:
    expected = f"a name of {NAME_HELP}, e.g. 'orders_90d'"
    if name is None:
        ctx.add(f"missing required field 'name'; expected {expected}", expected, "name")
        return False
    if isinstance(name, str) and NAME_PATTERN.fullmatch(name):
        return True
    ctx.at("name").reject(name, expected)
    return False


def _check_json(value: Json, ctx: FieldErrors) -> bool:
    """Whether ``value`` is plain JSON; reports mapping keys that are not strings and other values."""
    if isinstance(value, dict):
        ok = True
        for key, item in value.items():
            if not isinstance(key, str):
                ctx.add(f"invalid key {show(key)} in {ctx.label}; expected a string", "a string key")
                ok = False
            elif not _check_json(item, ctx.at(key)):
                ok = False
        return ok
    if isinstance(value, list):
        return all([_check_json(item, ctx.at(index)) for index, item in enumerate(value)])
    if isinstance(value, float) and not math.isfinite(value):
        ctx.reject(value, "a finite number")
        return False
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        ctx.reject(value, "an integer within 64 bits")
        return False
    if value is None or isinstance(value, str | int | float | bool):
        return True
    ctx.reject(value, "a string, number, boolean, null, list or mapping")
    return False


def _read(text: str) -> list[_Document]:
    """Every document of ``text``, empty ones included so that indexes count them."""
    docs: list[_Document] = []
    try:
        loader = _Loader(text)
        try:
            while loader.check_node():
                node = loader.get_node()
                if node is None:
                    break
                doc = _Document(index=len(docs), data=None, lines={})
                _walk(node, doc)
                doc.data = loader.construct_document(node)
                docs.append(doc)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        _yaml_error(text, len(docs), line, col, str(exc.problem or exc.context))
    except yaml.reader.ReaderError as exc:
        before = text[: exc.position]
        line, col = before.count("\n") + 1, exc.position - (before.rfind("\n") + 1) + 1
        _yaml_error(text, len(docs), line, col, f"unacceptable character #x{exc.character:04x}: {exc.reason}")
    except yaml.YAMLError as exc:
        _yaml_error(text, len(docs), 1, 1, str(exc))
    except RecursionError:
        _yaml_error(text, len(docs), 1, 1, "values are nested too deeply")
    return docs


def _yaml_error(text: str, document: int, line: int, col: int, problem: str) -> None:
    lines = text.split("\n")
    source = lines[line - 1] if line <= len(lines) else ""
    start = max(0, col - 1 - 60)  # a long line is shown around the error only
    source, caret = source[start : start + 100], col - 1 - start
    snippet = f"  {line} | {source}\n  {' ' * len(str(line))} | {' ' * caret}^"
    raise ValidationError(
        f"invalid YAML at line {line}, col {col}: {problem}\n{snippet}",
        code="invalid_yaml",
        details=[{"document": document, "line": line, "col": col, "message": problem}],
    )


def _walk(root: yaml.Node, doc: _Document) -> None:
    """Record the line of every field and find duplicate keys, before construction merges ``<<``."""
    doc.lines[()] = root.start_mark.line + 1
    stack: list[tuple[Path, yaml.Node]] = [((), root)]
    visited = 0
    while stack:
        path, node = stack.pop()
        visited += 1
        if visited > MAX_VALUES:
            line = root.start_mark.line + 1
            problem = f"more than {MAX_VALUES} values once aliases are expanded"
            raise ValidationError(
                f"invalid YAML in the document at line {line}: {problem}",
                code="invalid_yaml",
                details=[{"document": doc.index, "line": line, "col": 1, "message": problem}],
            )
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE:
                    stack.append((path, value_node))
                    continue
                if not (isinstance(key_node, yaml.ScalarNode) and key_node.tag == _STR):
                    continue
                key, line = key_node.value, key_node.start_mark.line + 1
                child: Path = (*path, key)
                if key in first:
                    doc.duplicates.append((child, line, f"duplicate key {key!r}; first at line {first[key]}"))
                else:
                    first[key] = line
                doc.lines.setdefault(child, line)
                stack.append((child, value_node))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                doc.lines.setdefault((*path, index), item.start_mark.line + 1)
                stack.append(((*path, index), item))


class _Dumper(yaml.SafeDumper):
    """Block style, list items indented under their key, multi-line strings as ``|`` literals, no
    anchors for repeated values."""

    def ignore_aliases(self, data: Any) -> bool:
        return True

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar(_STR, value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _represent_str)


def dump_document(resource: Resource) -> str:
    """One resource as YAML: ``kind``, ``name``, then the kind's fields in their declared order."""
    try:
        order = get_kind(resource.kind).fields
    except ValidationError:
        order = ()
    ranked = {key: rank for rank, key in enumerate(("kind", "name", *order))}
    keys = sorted(resource.spec, key=lambda key: ranked.get(key, len(ranked)))
    ordered = {key: resource.spec[key] for key in keys}
    return yaml.dump(ordered, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1_000_000)


def dump_documents(resources: Iterable[Resource]) -> str:
    """Resources as one YAML text, documents separated by ``---``; ``parse_documents`` reads it back."""
    return "---\n".join(dump_document(resource) for resource in resources)
