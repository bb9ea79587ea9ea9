"""The built-in resource kinds; importing this package registers each of them."""

from __future__ import annotations

from rapport.resources.builtin import computed_trait, consent_purpose, segment, tracking_plan

__all__ = ["computed_trait", "consent_purpose", "segment", "tracking_plan"]
