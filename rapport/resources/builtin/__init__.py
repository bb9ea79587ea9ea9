"""The built-in resource kinds; importing this package registers each of them."""

from __future__ import annotations

from rapport.resources.builtin import (
    channel,
    computed_trait,
    consent_purpose,
    journey,
    segment,
    template,
    tracking_plan,
)

__all__ = ["channel", "computed_trait", "consent_purpose", "journey", "segment", "template", "tracking_plan"]
