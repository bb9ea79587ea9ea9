"""Resources as code: YAML documents with ``kind`` and ``name``, validated, planned and printed back.

Importing this package registers every built-in kind.
"""

from __future__ import annotations

from rapport.resources import builtin
from rapport.resources.fields import FieldErrors
from rapport.resources.kinds import KindSpec, get_kind, known_kinds, register
from rapport.resources.model import Change, Resource
from rapport.resources.parse import dump_document, dump_documents, parse_documents
from rapport.resources.plan import plan_changes

__all__ = [
    "Change",
    "FieldErrors",
    "KindSpec",
    "Resource",
    "builtin",
    "dump_document",
    "dump_documents",
    "get_kind",
    "known_kinds",
    "parse_documents",
    "plan_changes",
    "register",
]
