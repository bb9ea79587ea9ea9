"""Fixtures for resource tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from rapport.errors import ValidationError
from rapport.resources import parse_documents


@pytest.fixture
def errors_of() -> Callable[[str], list[dict[str, Any]]]:
    """Parse a text that must be invalid and return its error details."""

    def run(text: str) -> list[dict[str, Any]]:
        with pytest.raises(ValidationError) as caught:
            parse_documents(text)
        assert caught.value.code == "invalid_resource"
        documents = {detail["document"] for detail in caught.value.details}
        assert caught.value.message == f"{len(documents)} invalid resource document(s)"
        return caught.value.details

    return run
