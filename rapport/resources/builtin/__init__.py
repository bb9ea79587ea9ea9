"""The built-in resource kinds; importing this package registers each of them."""

from __future__ import annotations

from rapport.resources.builtin import (
    channel,
    computed_trait,
    consent_purpose,
    content_block,
    experiment,
    journey,
    metric,
    model,
    placement,
    segment,
    subscription_group,
    suppression_rule,
    template,
    tracking_plan,
)

__all__ = ["channel", "computed_trait", "consent_purpose", "content_block", "experiment", "journey", "metric",
           "model", "placement", "segment", "subscription_group", "suppression_rule", "template", "tracking_plan"]
