"""Message templates: Liquid parts rendered in a sandbox with a person's traits, event and consent."""

from __future__ import annotations

from rapport.templates.render import (
    Parts,
    PartValue,
    SourceError,
    TemplateContext,
    check_source,
    compile_part,
    fields_read,
    preview,
    render,
)

__all__ = [
    "PartValue",
    "Parts",
    "SourceError",
    "TemplateContext",
    "check_source",
    "compile_part",
    "fields_read",
    "preview",
    "render",
]
