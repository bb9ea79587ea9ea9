"""Reading request bodies safely: size limits before and after gzip, no bombs, clear errors."""

from __future__ import annotations

import zlib

import orjson
from starlette.requests import Request

from rapport.errors import PayloadTooLarge, ValidationError
from rapport.types import Json


async def read_limited(request: Request, limit: int) -> bytes:
    """The (decompressed) body, refusing anything over ``limit`` bytes either way."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit * 4:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit} bytes", code="body_too_large")
    encoding = request.headers.get("content-encoding", "identity").lower().strip()
    if encoding not in ("identity", "gzip", ""):
        raise ValidationError(f"unsupported Content-Encoding {encoding!r}; expected gzip or none",
                              code="unsupported_encoding")
    gz = zlib.decompressobj(wbits=47) if encoding == "gzip" else None
    raw_limit = limit * 4 if gz else limit
    chunks: list[bytes] = []
    size = 0
    raw_size = 0
    async for chunk in request.stream():
        raw_size += len(chunk)
        if raw_size > raw_limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes", code="body_too_large")
        if gz is not None:
            try:
                chunk = gz.decompress(chunk, limit + 1 - size)
            except zlib.error:
                raise ValidationError("the body is not valid gzip", code="invalid_gzip") from None
            if gz.unconsumed_tail:
                raise PayloadTooLarge(f"decompressed body exceeds {limit} bytes", code="body_too_large")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes", code="body_too_large")
        chunks.append(chunk)
    if gz is not None:
        try:
            tail = gz.flush()
        except zlib.error:
            raise ValidationError("the body is not valid gzip", code="invalid_gzip") from None
        if not gz.eof:
            raise ValidationError("the gzip body is truncated", code="invalid_gzip")
        size += len(tail)
        if size > limit:
            raise PayloadTooLarge(f"decompressed body exceeds {limit} bytes", code="body_too_large")
        chunks.append(tail)
    return b"".join(chunks)


def parse_json(body: bytes) -> Json:
    if not body:
        raise ValidationError("the request body is empty; expected JSON", code="invalid_json")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"the body is not valid JSON: {exc}", code="invalid_json") from None
